#include "api/sse.h"

namespace statim::api {

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

void SseStream::close() {
  std::lock_guard lock(mu_);
  if (stream_) stream_->close();
  stream_.reset();
}

drogon::HttpResponsePtr sseResponse(std::function<void(std::shared_ptr<SseStream>)> start) {
  auto resp = drogon::HttpResponse::newAsyncStreamResponse(
      [start = std::move(start)](drogon::ResponseStreamPtr stream) {
        start(std::make_shared<SseStream>(std::move(stream)));
      },
      true);  // no kick-off timeout: a queued job may wait long before its first event
  resp->setContentTypeString("text/event-stream");
  resp->addHeader("Cache-Control", "no-cache");
  resp->addHeader("X-Accel-Buffering", "no");
  return resp;
}

}  // namespace statim::api
