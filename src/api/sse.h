// Server-Sent Events over a Drogon async stream, shared by the job events route and the OpenAI
// streaming routes. send() may be called from any thread; it reports false once the client is gone.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include <drogon/HttpResponse.h>

namespace statim::api {

class SseStream {
 public:
  explicit SseStream(drogon::ResponseStreamPtr stream) : stream_(std::move(stream)) {}
  // One event: "event: NAME\ndata: DATA\n\n" (no event line when name is empty).
  bool send(const std::string& name, const std::string& data);
  // Raw SSE text (comments, [DONE] lines).
  bool sendRaw(const std::string& text);
  void close();

 private:
  std::mutex mu_;
  drogon::ResponseStreamPtr stream_;  // guarded by mu_; null once closed
};

// A text/event-stream response whose stream is handed to `start` once the headers are out.
drogon::HttpResponsePtr sseResponse(std::function<void(std::shared_ptr<SseStream>)> start);

}  // namespace statim::api
