// JSON <-> job domain types for the job API.
#pragma once

#include <nlohmann/json.hpp>

#include "statim/error.h"
#include "statim/job.h"
#include "store/job_store.h"

namespace statim::api {

// The job as clients see it; `timestamp` keeps the original API's format.
nlohmann::ordered_json jobToJson(const Job& job);

// A request's "keep_alive" (Ollama's): seconds as a number, or a duration string ("30s", "5m",
// "1h", "0", "-1"); negative: keep the model loaded; 0: unload it once idle. `field` names it in errors.
Result<double> parseKeepAlive(const nlohmann::json& v, const std::string& field = "keep_alive");

// Validates a POST /job body: {"model", "prompt" | "messages" | "input", "params"?, "priority"?}.
// "messages" makes a chat job, "input" an embedding job; both travel in params.
// has_inputs: the request carries files, which may stand in for a prompt.
Result<NewJob> parseNewJob(const nlohmann::json& body, bool has_inputs = false);

// Parses a job id path segment: a positive decimal integer, nothing else.
Result<JobId> parseJobId(std::string_view text);
// POST /job takes `messages` and `input` at the top level but stores them in params: errors about
// params.messages / params.input are renamed to what the client wrote.
Error topLevelNames(Error e);
// Routes whose requests give job params as top-level fields (OpenAI's, Anthropic's): an error
// about "params.x" names "x", as the client wrote it.
Error paramsAsTopLevel(Error e);

}  // namespace statim::api
