// Small helpers shared by controllers: JSON responses and request bodies.
#pragma once

#include <drogon/HttpRequest.h>
#include <drogon/HttpResponse.h>
#include <nlohmann/json.hpp>

#include "statim/error.h"
#include "statim/job.h"

namespace statim::api {

using Callback = std::function<void(const drogon::HttpResponsePtr&)>;

drogon::HttpResponsePtr jsonResponse(const nlohmann::json& body, int status = 200);
// Keeps the fields in the order written (job objects read like the original API's).
drogon::HttpResponsePtr orderedJsonResponse(const nlohmann::ordered_json& body, int status = 200);
// Parses the body as a JSON object (whatever the Content-Type: curl -d sends form encoding).
Result<nlohmann::json> parseJsonObject(const drogon::HttpRequest& req);
// The same for a body's text (a JSON object; nesting, duplicate keys and number ranges checked).
Result<nlohmann::json> parseJsonText(std::string_view body);
// Parses a query parameter as an integer in [min, max]; absent -> fallback.
Result<std::int64_t> queryInt(const drogon::HttpRequest& req, const std::string& name, std::int64_t fallback,
                              std::int64_t min, std::int64_t max);
// Parses a query parameter as a boolean ("true"/"false", "1"/"0"); absent -> false.
Result<bool> queryBool(const drogon::HttpRequest& req, const std::string& name);
// The `wait` query parameter of the job routes, in seconds: absent, "false" or 0 -> 0 (answer at
// once); "true" -> `max`; a number of seconds from 0 to `max`.
Result<double> queryWait(const drogon::HttpRequest& req, double max);
// A time query parameter: ISO-8601 UTC ("2026-11-25T10:00:00Z", fraction and Z optional) or Unix
// seconds; absent -> nullopt.
Result<std::optional<Micros>> queryTime(const drogon::HttpRequest& req, const std::string& name);
// Rejects query parameters not in `known`, naming them.
Result<void> onlyKnownQuery(const drogon::HttpRequest& req, std::initializer_list<std::string_view> known);

// The request's Idempotency-Key ("" when absent); 400 when present but empty, over 255
// characters or not printable ASCII.
Result<std::string> idempotencyKey(const drogon::HttpRequest& req);
// What an Idempotency-Key is bound to: the route and the exact body.
std::string requestHash(const drogon::HttpRequest& req);
// Notes the job a request created or acted on, and its model (for the audit row and the log).
void noteJob(const drogon::HttpRequest& req, JobId id, const std::string& model = {});

}  // namespace statim::api
