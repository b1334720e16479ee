// The Anthropic Messages API's shapes <-> statim chat jobs. A request becomes a normal durable
// chat job (its messages, tools and tool results in the job's params in the form the llama backend
// reads: OpenAI's); the answer is rendered from the ended job. Errors on these routes are in
// Anthropic's shape ({"type": "error", "error": {"type", "message"}}).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "api/dto/media.h"
#include "statim/error.h"
#include "statim/job.h"

namespace statim::api {

struct AnthropicRequest {
  NewJob job;
  bool stream = false;
  MediaParts media;  // the messages' image blocks, to store as the job's inputs
};

// POST /v1/messages: {model, max_tokens, messages, system?, stop_sequences?, temperature?, top_p?,
// top_k?, tools?, tool_choice?, stream?, metadata?}. Errors name the field as the client wrote it
// ("messages.1.content.0.type").
Result<AnthropicRequest> parseMessagesRequest(const nlohmann::json& body);

// The Message object of an ended chat job: content blocks (text, tool_use), stop_reason, usage.
nlohmann::json messageResponse(const Job& job);
// end_turn | max_tokens | tool_use
std::string stopReason(const Job& job);
// The message as it starts (message_start): no content yet.
nlohmann::json messageStart(const Job& job);
// The tool_use blocks of an ended job (input parsed from the call's arguments).
nlohmann::json toolUseBlocks(const Job& job);

// Whether `path` is one of the Anthropic routes (their errors are in Anthropic's shape).
bool isAnthropicRoute(std::string_view path);
// statim's error body {"error": {"code", "type", "message", "param"}} as Anthropic's, for `status`.
nlohmann::json anthropicError(int status, const nlohmann::json& statim_error);

}  // namespace statim::api
