// Server-Sent Events over a Drogon async stream, shared by the job events route and the OpenAI
// streaming routes. send() may be called from any thread: the write itself always happens on the
// connection's I/O loop (trantor's streams are not safe to touch from other threads).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include <drogon/HttpResponse.h>
#include <trantor/net/EventLoop.h>

namespace statim::api {

class SseStream : public std::enable_shared_from_this<SseStream> {
 public:
  // `on_gone` runs once, on the I/O loop, when a write finds the client gone. It must not be
  // called from event listeners: they run under the event hub's lock, and what a client's
  // departure triggers (cancelling its job) writes to the store.
  SseStream(drogon::ResponseStreamPtr stream, trantor::EventLoop* loop, std::function<void()> on_gone)
      : stream_(std::move(stream)), loop_(loop), on_gone_(std::move(on_gone)) {}
  // One event: "event: NAME\ndata: DATA\n\n" (no event line when name is empty). Returns false
  // once the stream is closed or its client is known to be gone.
  bool send(const std::string& name, const std::string& data);
  // Raw SSE text (comments, [DONE] lines).
  bool sendRaw(const std::string& text);
  void close();
  bool closed() const { return closing_ || gone_; }
  // The client went away (a write failed), as opposed to us closing the stream.
  bool gone() const { return gone_; }

 private:
  drogon::ResponseStreamPtr stream_;  // used on loop_ only
  trantor::EventLoop* loop_;
  std::function<void()> on_gone_;  // used on loop_ only
  std::atomic<bool> closing_{false};
  std::atomic<bool> gone_{false};
};

// A text/event-stream response whose stream is handed to `start` once the headers are out.
// Every few seconds an SSE comment goes out while the stream is open: it keeps proxies from
// timing out, and it is how a client that left is noticed while its job produces nothing
// (queued): `on_gone` then runs once.
drogon::HttpResponsePtr sseResponse(std::function<void(std::shared_ptr<SseStream>)> start,
                                    std::function<void()> on_gone = {});

}  // namespace statim::api
