// OpenAI's Responses API shapes <-> statim chat jobs. A response is a normal durable chat job: its
// conversation (instructions, the previous response's turns, this request's input items) in the
// job's params.messages as the llama backend reads them, and what the API echoes back (the input
// items as given, instructions, tools in the Responses shape, text format, metadata, ...) in
// params.response. Everything a client sees - the response object, its input items, its stream
// events - is rendered from the job, so it survives restarts and reads the same on every node.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/dto/media.h"
#include "statim/error.h"
#include "statim/job.h"

namespace statim::api {

struct ResponsesRequest {
  NewJob job;
  bool stream = false;
  bool background = false;
  MediaParts media;  // the input's images, to store as the job's inputs (after those it continues)
};

// "resp_12" <-> job 12. `field` names the id in errors.
std::string responseId(JobId id);
Result<JobId> parseResponseId(std::string_view text, const std::string& field);
// Whether the job was made by POST /v1/responses (a chat job with params.response).
bool isResponseJob(const Job& job);

// The previous_response_id of a create request, when it has one (checked: a string naming a response).
Result<std::optional<JobId>> previousResponseId(const nlohmann::json& body);
// POST /v1/responses: {model, input, instructions?, tools?, tool_choice?, parallel_tool_calls?,
// text?, max_output_tokens?, temperature?, top_p?, stream?, store?, background?, metadata?, user?,
// previous_response_id?, ...}. `previous`: the completed response previous_response_id names (read
// and checked by the caller), whose conversation this one continues. Errors name the field as the
// client wrote it ("input[2].call_id").
Result<ResponsesRequest> parseResponsesRequest(const nlohmann::json& body, const Job* previous);
// A backend error about the chat job's params, named as the Responses request wrote it
// (params.max_tokens -> max_output_tokens, tools[0].function.parameters -> tools[0].parameters).
Error responsesNames(Error e);

// The Response object of a job as it is now (queued, in_progress, completed, incomplete, failed,
// cancelled), its output rendered from the job's result.
nlohmann::json responseObject(const Job& job);
// GET /v1/responses/{id}/input_items: this response's input items (with ids), in the order given.
nlohmann::json inputItems(const Job& job);

// A response's stream events, numbered (sequence_number) the same way however and whenever they
// are made: they are a function of the job and of the text it has produced, never of how the
// tokens arrived. Text goes out in deltas that end where a word ends (before a space or a newline,
// or after kDeltaMaxBytes), so a stream resumed later - another connection, another node, after a
// restart - numbers every event as the first stream did. Feed it what a follower sees, in order.
class ResponseEvents {
 public:
  static constexpr size_t kDeltaMaxBytes = 64;
  explicit ResponseEvents(Job job) : job_(std::move(job)) {}
  // response.created, and response.in_progress when the job has started.
  std::vector<nlohmann::json> begin(const Job& now);
  // response.in_progress (once, after response.created).
  std::vector<nlohmann::json> started();
  // The deltas `text_so_far` (all the text produced until now) completes.
  std::vector<nlohmann::json> text(const std::string& text_so_far);
  // The rest of the text, the items' done events, the function calls, and the terminal event
  // (response.completed | response.incomplete | response.failed).
  std::vector<nlohmann::json> end(const Job& done);

 private:
  nlohmann::json event(const char* type, nlohmann::json fields);
  std::vector<nlohmann::json> deltas(const std::string& text, bool final);
  // The message item and its text part, once: before the first delta, or empty at the end.
  void openMessage(std::vector<nlohmann::json>& out);

  Job job_;
  int next_ = 0;
  bool created_ = false, in_progress_ = false, message_open_ = false;
  std::string sent_;  // the text the deltas made so far carry
  std::vector<nlohmann::json> out_;
};

}  // namespace statim::api
