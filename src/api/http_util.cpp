#include "api/http_util.h"
#include "core/strings.h"

#include <charconv>
#include <format>

namespace statim::api {

namespace {

drogon::HttpResponsePtr jsonText(std::string text, int status) {
  auto resp = drogon::HttpResponse::newHttpResponse();
  resp->setStatusCode(static_cast<drogon::HttpStatusCode>(status));
  resp->setContentTypeCode(drogon::CT_APPLICATION_JSON);
  resp->setBody(std::move(text));
  return resp;
}

}  // namespace

drogon::HttpResponsePtr jsonResponse(const nlohmann::json& body, int status) {
  return jsonText(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), status);
}

drogon::HttpResponsePtr orderedJsonResponse(const nlohmann::ordered_json& body, int status) {
  return jsonText(body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace), status);
}

Result<nlohmann::json> parseJsonObject(const drogon::HttpRequest& req) {
  std::string_view body = req.body();
  if (body.empty()) return fail(Error::invalid("the request body is empty; send a JSON object"));
  try {
    auto j = nlohmann::json::parse(body);
    if (!j.is_object())
      return fail(Error::invalid(std::format("the request body must be a JSON object, not {}", j.type_name())));
    return j;
  } catch (const nlohmann::json::parse_error& e) {
    return fail(Error::invalid(std::format("malformed JSON at byte {}: {}", e.byte, e.what())));
  }
}

Result<std::int64_t> queryInt(const drogon::HttpRequest& req, const std::string& name, std::int64_t fallback,
                              std::int64_t min, std::int64_t max) {
  const auto& params = req.parameters();
  auto it = params.find(name);
  if (it == params.end()) return fallback;
  const std::string& s = it->second;
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size() || v < min || v > max) {
    return fail(Error::invalid(
        std::format("query parameter '{}' must be an integer between {} and {} (got '{}')", name, min, max, s), name));
  }
  return v;
}

Result<void> onlyKnownQuery(const drogon::HttpRequest& req, std::initializer_list<std::string_view> known) {
  for (auto& [k, v] : req.parameters()) {
    bool found = false;
    for (auto kn : known) found = found || kn == k;
    if (!found) {
      return fail(Error::invalid(std::format("unknown query parameter '{}' (allowed: {})", k, joinNames(known)), k));
    }
  }
  return ok();
}

}  // namespace statim::api
