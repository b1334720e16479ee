// Server-Sent Events, shared by the job events route and the OpenAI streaming routes. send() may
// be called from any thread: the write itself always happens on the connection's I/O loop
// (trantor's connections and Drogon's streams are not safe to touch from other threads).
//
// Two ways to the client, chosen by the request:
// - a connection kept alive (HTTP/1.1 without "Connection: close"): Drogon's chunked stream;
// - a connection that ends with this response (HTTP/1.0, or "Connection: close", as sent by
//   urllib, `curl --http1.0` and nginx's default proxy_pass): the events are written as they are,
//   without chunked encoding, and the connection is closed after the last one. Drogon 1.9 cannot
//   stream to such a client (it closes the connection after the headers), so the headers go out
//   as a pass-through response and the events straight onto the TCP connection.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <drogon/HttpAppFramework.h>
#include <drogon/HttpRequest.h>
#include <drogon/HttpResponse.h>
#include <trantor/net/EventLoop.h>
#include <trantor/net/TcpConnection.h>

#include "api/http_util.h"

namespace statim::api {

class SseStream : public std::enable_shared_from_this<SseStream> {
 public:
  // `on_gone` runs once, on the I/O loop, when a write finds the client gone. It must not be
  // called from event listeners: they run under the event hub's lock, and what a client's
  // departure triggers (cancelling its job) writes to the store.
  SseStream(drogon::ResponseStreamPtr stream, trantor::EventLoop* loop, std::function<void()> on_gone)
      : stream_(std::move(stream)), loop_(loop), on_gone_(std::move(on_gone)) {}
  SseStream(trantor::TcpConnectionPtr conn, std::function<void()> on_gone)
      : conn_(std::move(conn)), loop_(conn_->getLoop()), on_gone_(std::move(on_gone)) {}
  // One event: "event: NAME\ndata: DATA\n\n" (no event line when name is empty). Returns false
  // once the stream is closed or its client is known to be gone.
  bool send(const std::string& name, const std::string& data);
  // Raw SSE text (comments, [DONE] lines).
  bool sendRaw(const std::string& text);
  void close();
  bool closed() const { return closing_ || gone_; }
  // The client went away (a write failed), as opposed to us closing the stream.
  bool gone() const { return gone_; }
  trantor::EventLoop* loop() const { return loop_; }
  // Runs tasks on this stream's loop, in order: where its event subscriptions deliver.
  std::function<void(std::function<void()>)> executor() const {
    return [loop = loop_](std::function<void()> task) { loop->queueInLoop(std::move(task)); };
  }

 private:
  bool writeInLoop(const std::string& text);  // false: the client is gone
  void closeInLoop();

  drogon::ResponseStreamPtr stream_;  // kept-alive connection; used on loop_ only
  trantor::TcpConnectionPtr conn_;    // connection closed after the stream; used on loop_ only
  trantor::EventLoop* loop_;
  std::function<void()> on_gone_;  // used on loop_ only
  std::atomic<bool> closing_{false};
  std::atomic<bool> gone_{false};
};

// Answers `req` with a text/event-stream response (plus `headers`); the stream is handed to
// `start` once the headers are out. Every few seconds an SSE comment goes out while the stream is
// open: it keeps proxies from timing out, and it is how a client that left is noticed while its
// job produces nothing (queued): `on_gone` then runs once. `cb` may be called from any thread.
void respondSse(const drogon::HttpRequestPtr& req, Callback cb, std::function<void(std::shared_ptr<SseStream>)> start,
                std::function<void()> on_gone = {},
                const std::vector<std::pair<std::string, std::string>>& headers = {});

// Registers the pre-sending advice that keeps Drogon from closing a connection-closing stream's
// connection right after its headers. Call once, before the server runs.
void registerSseAdvice(drogon::HttpAppFramework& app);

}  // namespace statim::api
