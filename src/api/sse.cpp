#include "api/sse.h"

#include <algorithm>
#include <atomic>
#include <cctype>

#include <drogon/HttpAppFramework.h>
#include <drogon/utils/Utilities.h>

namespace statim::api {

namespace {

constexpr double kKeepAliveSeconds = 2.0;
constexpr const char* kRawStreamAttr = "statim.sse_raw_stream";

// HTTP/1.0 has no chunked encoding: a 1.0 client is answered as one that closes, whatever its
// Connection header says. An HTTP/1.1 client closes when its Connection header has "close".
bool closesAfterResponse(const drogon::HttpRequest& req) {
  if (req.isHead()) return false;  // headers only: Drogon's own path sends them and stops
  if (req.version() != drogon::Version::kHttp11) return true;
  std::string tokens = req.getHeader("connection");
  std::ranges::transform(tokens, tokens.begin(), [](unsigned char c) { return std::tolower(c); });
  for (size_t at = 0; (at = tokens.find("close", at)) != std::string::npos; at += 5) {
    auto boundary = [&](size_t i) {
      return i >= tokens.size() || tokens[i] == ',' || tokens[i] == ' ' || tokens[i] == '\t';
    };
    if ((at == 0 || boundary(at - 1)) && boundary(at + 5)) return true;
  }
  return false;
}

// Starts the stream, then a comment every few seconds while it stays open.
void begin(const std::function<void(std::shared_ptr<SseStream>)>& start, const std::shared_ptr<SseStream>& stream) {
  start(stream);
  if (stream->closed()) return;
  auto* loop = stream->loop();
  auto timer = std::make_shared<trantor::TimerId>(0);
  *timer = loop->runEvery(kKeepAliveSeconds, [stream, timer, loop] {
    // A failed write here calls on_gone (the client left while nothing else was sent).
    if (stream->closed() || !stream->sendRaw(": keep-alive\n\n") || stream->closed()) {
      loop->invalidateTimer(*timer);
    }
  });
}

}  // namespace

bool SseStream::writeInLoop(const std::string& text) {
  if (stream_) return stream_->send(text);
  if (!conn_ || !conn_->connected()) return false;
  conn_->send(text);
  return true;
}

void SseStream::closeInLoop() {
  if (stream_) stream_->close();
  stream_.reset();
  if (conn_) conn_->shutdown();  // after what is buffered has been written
  conn_.reset();
}

bool SseStream::sendRaw(const std::string& text) {
  if (closed()) return false;
  loop_->runInLoop([self = shared_from_this(), text] {
    if (!self->stream_ && !self->conn_) return;
    if (!self->writeInLoop(text)) {
      self->gone_ = true;
      self->stream_.reset();
      self->conn_.reset();
      // Queued, not run here: this may be inside an event listener, under the event hub's lock,
      // and what it triggers (cancelling the job) writes to the store and publishes.
      if (auto on_gone = std::move(self->on_gone_)) self->loop_->queueInLoop(std::move(on_gone));
    }
  });
  return true;
}

bool SseStream::send(const std::string& name, const std::string& data) {
  std::string text;
  if (!name.empty()) text += "event: " + name + "\n";
  text += "data: " + data + "\n\n";
  return sendRaw(text);
}

void SseStream::close() {
  if (closing_.exchange(true)) return;
  loop_->runInLoop([self = shared_from_this()] { self->closeInLoop(); });
}

namespace {

// The response respondSse hands over: a chunked stream, or pass-through headers for a closing
// connection whose stream the advice below starts.
drogon::HttpResponsePtr sseResponse(const drogon::HttpRequestPtr& req,
                                    std::function<void(std::shared_ptr<SseStream>)> start,
                                    std::function<void()> on_gone) {
  if (!closesAfterResponse(*req)) {
    auto resp = drogon::HttpResponse::newAsyncStreamResponse(
        [start = std::move(start), on_gone = std::move(on_gone)](drogon::ResponseStreamPtr raw) {
          // Drogon starts the stream on its connection's I/O loop: writes and the keep-alive
          // timer stay there.
          auto* loop = trantor::EventLoop::getEventLoopOfCurrentThread();
          begin(start, std::make_shared<SseStream>(std::move(raw), loop, on_gone));
        },
        true);  // no kick-off timeout: a queued job may wait long before its first event
    resp->setContentTypeString("text/event-stream");
    resp->addHeader("Cache-Control", "no-cache");
    resp->addHeader("X-Accel-Buffering", "no");
    return resp;
  }
  // Pass-through: Drogon writes exactly these headers, with no content-length and no chunking,
  // then pulls the body from the connection's write queue: that first pull comes once the
  // headers (and every response the client pipelined before) are queued, and starts the stream,
  // whose events then go straight onto the connection. If the response is dropped unsent (the
  // client left first), on_gone runs when the last copy of the pull goes.
  struct Starter {
    std::weak_ptr<trantor::TcpConnection> conn;
    std::function<void(std::shared_ptr<SseStream>)> start;
    std::function<void()> on_gone;
    bool started = false;
    ~Starter() {
      if (!started && on_gone) drogon::app().getLoop()->queueInLoop(std::move(on_gone));
    }
  };
  auto starter = std::make_shared<Starter>(req->getConnectionPtr(), std::move(start), std::move(on_gone));
  auto resp = drogon::HttpResponse::newStreamResponse([starter](char* buffer, std::size_t) -> std::size_t {
    auto conn = starter->conn.lock();
    // A null buffer is a cleanup call (the response or the queue dropping its copy).
    if (!buffer || starter->started || !conn || !conn->connected()) return 0;
    starter->started = true;
    // Not from inside the write: queued, so the events follow what is queued now.
    conn->getLoop()->queueInLoop([conn, start = std::move(starter->start), on_gone = starter->on_gone] {
      if (!conn->connected()) {
        if (on_gone) on_gone();
        return;
      }
      begin(start, std::make_shared<SseStream>(conn, on_gone));
    });
    return 0;  // nothing more through Drogon
  });
  resp->setPassThrough(true);
  resp->addHeader("Content-Type", "text/event-stream");
  resp->addHeader("Cache-Control", "no-cache");
  resp->addHeader("X-Accel-Buffering", "no");
  resp->addHeader("Connection", "close");
  resp->addHeader("Server", "statim/" STATIM_VERSION);
  resp->addHeader("Date", drogon::utils::getHttpFullDateStr());
  req->attributes()->insert(kRawStreamAttr, std::shared_ptr<const drogon::HttpResponse>(resp));
  return resp;
}

}  // namespace

void respondSse(const drogon::HttpRequestPtr& req, Callback cb, std::function<void(std::shared_ptr<SseStream>)> start,
                std::function<void()> on_gone, const std::vector<std::pair<std::string, std::string>>& headers) {
  if (on_gone) {
    // Several paths may find the client gone (before the hand-over, an unsent response, a failed
    // write): it is told once.
    on_gone = [once = std::make_shared<std::atomic<bool>>(false), fn = std::move(on_gone)] {
      if (!once->exchange(true)) fn();
    };
  }
  auto resp = sseResponse(req, std::move(start), on_gone);
  for (auto& [name, value] : headers) resp->addHeader(name, value);
  // The response is handed over on the connection's loop, where a client that left before then
  // is seen gone: Drogon would drop the answer without a word, so on_gone runs here.
  auto conn = req->getConnectionPtr().lock();
  if (!conn) {
    // Not here: this may be the store's thread, and cancelling a job writes to the store.
    if (on_gone) drogon::app().getLoop()->queueInLoop(std::move(on_gone));
    return;
  }
  conn->getLoop()->runInLoop([cb = std::move(cb), resp, conn, on_gone = std::move(on_gone)] {
    if (!conn->connected()) {
      if (on_gone) on_gone();
      return;
    }
    cb(resp);
  });
}

void registerSseAdvice(drogon::HttpAppFramework& app) {
  app.registerPreSendingAdvice([](const drogon::HttpRequestPtr& req, const drogon::HttpResponsePtr& resp) {
    auto attrs = req->attributes();
    if (!attrs->find(kRawStreamAttr)) return;
    auto raw = attrs->get<std::shared_ptr<const drogon::HttpResponse>>(kRawStreamAttr);
    attrs->erase(kRawStreamAttr);
    if (raw != resp) return;  // the handler answered with something else
    // Drogon closes a closing connection right after the response; this stream closes it itself,
    // after its last event.
    resp->setCloseConnection(false);
  });
}

}  // namespace statim::api
