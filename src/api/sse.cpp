#include "api/sse.h"

namespace statim::api {

constexpr double kKeepAliveSeconds = 2.0;

bool SseStream::sendRaw(const std::string& text) {
  if (closed()) return false;
  loop_->runInLoop([self = shared_from_this(), text] {
    if (!self->stream_) return;
    if (!self->stream_->send(text)) {
      self->gone_ = true;
      self->stream_.reset();
      if (auto on_gone = std::move(self->on_gone_)) on_gone();
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
  loop_->runInLoop([self = shared_from_this()] {
    if (self->stream_) self->stream_->close();
    self->stream_.reset();
  });
}

drogon::HttpResponsePtr sseResponse(std::function<void(std::shared_ptr<SseStream>)> start,
                                    std::function<void()> on_gone) {
  auto resp = drogon::HttpResponse::newAsyncStreamResponse(
      [start = std::move(start), on_gone = std::move(on_gone)](drogon::ResponseStreamPtr raw) {
        // Drogon starts the stream on its connection's I/O loop: writes and the keep-alive timer
        // stay there.
        auto* loop = trantor::EventLoop::getEventLoopOfCurrentThread();
        auto stream = std::make_shared<SseStream>(std::move(raw), loop, on_gone);
        start(stream);
        if (stream->closed()) return;
        auto timer = std::make_shared<trantor::TimerId>(0);
        *timer = loop->runEvery(kKeepAliveSeconds, [stream, timer, loop] {
          // A failed write here calls on_gone (the client left while nothing else was sent).
          if (stream->closed() || !stream->sendRaw(": keep-alive\n\n") || stream->closed()) {
            loop->invalidateTimer(*timer);
          }
        });
      },
      true);  // no kick-off timeout: a queued job may wait long before its first event
  resp->setContentTypeString("text/event-stream");
  resp->addHeader("Cache-Control", "no-cache");
  resp->addHeader("X-Accel-Buffering", "no");
  return resp;
}

}  // namespace statim::api
