#include "api/sse.h"

#include <trantor/net/EventLoop.h>

namespace statim::api {

constexpr double kKeepAliveSeconds = 2.0;

bool SseStream::sendRaw(const std::string& text) {
  std::lock_guard lock(mu_);
  if (!stream_) return false;
  if (!stream_->send(text)) {
    stream_->close();
    stream_.reset();
    return false;
  }
  return true;
}

bool SseStream::send(const std::string& name, const std::string& data) {
  std::string text;
  if (!name.empty()) text += "event: " + name + "\n";
  text += "data: " + data + "\n\n";
  return sendRaw(text);
}

bool SseStream::closed() {
  std::lock_guard lock(mu_);
  return !stream_;
}

void SseStream::close() {
  std::lock_guard lock(mu_);
  if (stream_) stream_->close();
  stream_.reset();
}

drogon::HttpResponsePtr sseResponse(std::function<void(std::shared_ptr<SseStream>)> start,
                                    std::function<void()> on_gone) {
  auto resp = drogon::HttpResponse::newAsyncStreamResponse(
      [start = std::move(start), on_gone = std::move(on_gone)](drogon::ResponseStreamPtr raw) {
        auto stream = std::make_shared<SseStream>(std::move(raw));
        start(stream);
        // The stream is started on its connection's I/O loop: the keep-alive timer lives there.
        auto* loop = trantor::EventLoop::getEventLoopOfCurrentThread();
        if (!loop || stream->closed()) return;
        auto timer = std::make_shared<trantor::TimerId>(0);
        *timer = loop->runEvery(kKeepAliveSeconds, [stream, timer, loop, on_gone] {
          if (stream->closed()) return loop->invalidateTimer(*timer);  // ended normally
          if (!stream->sendRaw(": keep-alive\n\n")) {
            loop->invalidateTimer(*timer);
            if (on_gone) on_gone();
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
