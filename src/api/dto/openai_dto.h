// OpenAI-compatible request and response shapes <-> statim jobs. Each OpenAI request becomes a
// normal job (visible in GET /job); responses are rendered from the finished job.
#pragma once

#include "api/dto/media.h"
#include <string>

#include <nlohmann/json.hpp>

#include "statim/error.h"
#include "statim/job.h"

namespace statim::api {

struct OpenAiRequest {
  NewJob job;
  MediaParts media;  // chat: the images and audio of its messages, to store as the job's inputs
  bool stream = false;
  bool include_usage = false;             // stream_options.include_usage
  std::string encoding_format = "float";  // embeddings: float | base64
};

Result<OpenAiRequest> parseCompletionRequest(const nlohmann::json& body);
Result<OpenAiRequest> parseChatRequest(const nlohmann::json& body);
// A chat message's content parts (text, image_url, input_audio): one string when all are text,
// else the parts as stored ({"type": "text" | "image" | "audio", ...}), the media added to `media`.
Result<nlohmann::json> chatContentParts(const nlohmann::json& content, const std::string& where, MediaParts& media);
Result<OpenAiRequest> parseEmbeddingRequest(const nlohmann::json& body);

// A job of several choices (params.n > 1: result.choices) as one job per choice, each with that
// choice's text, finish_reason, tool_calls and logprobs in its result; else the job itself.
std::vector<Job> choiceViews(const Job& job);
std::string finishReason(const Job& job);
// The tool calls a chat job made (OpenAI's shape), or null.
nlohmann::json toolCalls(const Job& job);
nlohmann::json usage(const Job& job);
nlohmann::json completionResponse(const Job& job);
nlohmann::json chatResponse(const Job& job);
nlohmann::json embeddingResponse(const Job& job, const std::string& encoding_format);

// A job's logprobs entries (result.logprobs, or a token event's) in OpenAI's shapes: chat's
// {"content": [...], "refusal": null}, completions' {"tokens", "token_logprobs", "top_logprobs",
// "text_offset"} (offsets from `text_offset`, where the first entry's text starts). null for null.
nlohmann::json chatLogprobs(const nlohmann::json& entries);
nlohmann::json completionLogprobs(const nlohmann::json& entries, size_t text_offset);

// Streaming chunks. `delta` is new text; finish_reason null until the last chunk; `logprobs`
// already in the route's shape (null without).
// `index`: the choice.
nlohmann::json completionChunk(const Job& job, const std::string& text, const nlohmann::json& finish_reason,
                               const nlohmann::json& logprobs = nullptr, int index = 0);
nlohmann::json chatChunk(const Job& job, const nlohmann::json& delta, const nlohmann::json& finish_reason,
                         const nlohmann::json& logprobs = nullptr, int index = 0);

}  // namespace statim::api
