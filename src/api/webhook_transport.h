// WebhookTransport over Drogon's asynchronous HTTP client, on an event loop of its own.
#pragma once

#include <memory>

#include "webhooks/dispatcher.h"

namespace trantor {
class EventLoopThread;
}

namespace statim::api {

class DrogonWebhookTransport final : public WebhookTransport {
 public:
  DrogonWebhookTransport();
  ~DrogonWebhookTransport() override;
  void post(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers, std::string body,
            double timeout_seconds, Done done) override;

 private:
  std::unique_ptr<trantor::EventLoopThread> loop_;
};

}  // namespace statim::api
