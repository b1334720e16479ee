// OpenAI-compatible request and response shapes <-> statim jobs. Each OpenAI request becomes a
// normal job (visible in GET /job); responses are rendered from the finished job.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "statim/error.h"
#include "statim/job.h"

namespace statim::api {

struct OpenAiRequest {
  NewJob job;
  bool stream = false;
  bool include_usage = false;             // stream_options.include_usage
  std::string encoding_format = "float";  // embeddings: float | base64
};

Result<OpenAiRequest> parseCompletionRequest(const nlohmann::json& body);
Result<OpenAiRequest> parseChatRequest(const nlohmann::json& body);
Result<OpenAiRequest> parseEmbeddingRequest(const nlohmann::json& body);

std::string finishReason(const Job& job);
// The tool calls a chat job made (OpenAI's shape), or null.
nlohmann::json toolCalls(const Job& job);
nlohmann::json usage(const Job& job);
nlohmann::json completionResponse(const Job& job);
nlohmann::json chatResponse(const Job& job);
nlohmann::json embeddingResponse(const Job& job, const std::string& encoding_format);

// Streaming chunks. `delta` is new text; finish_reason null until the last chunk.
nlohmann::json completionChunk(const Job& job, const std::string& text, const nlohmann::json& finish_reason);
nlohmann::json chatChunk(const Job& job, const nlohmann::json& delta, const nlohmann::json& finish_reason);

}  // namespace statim::api
