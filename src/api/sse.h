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
  bool closed();

 private:
  std::mutex mu_;
  drogon::ResponseStreamPtr stream_;  // guarded by mu_; null once closed
};

// A text/event-stream response whose stream is handed to `start` once the headers are out.
// Every few seconds an SSE comment goes out while the stream is open: it keeps proxies from
// timing out, and it is how a client that left is noticed while its job produces nothing
// (queued): `on_gone` then runs once.
drogon::HttpResponsePtr sseResponse(std::function<void(std::shared_ptr<SseStream>)> start,
                                    std::function<void()> on_gone = {});

}  // namespace statim::api
