#include "api/webhook_transport.h"

#include <drogon/HttpClient.h>
#include <trantor/net/EventLoopThread.h>

#include "core/url.h"

namespace statim::api {

DrogonWebhookTransport::DrogonWebhookTransport() : loop_(std::make_unique<trantor::EventLoopThread>("webhooks")) {
  loop_->run();
}

DrogonWebhookTransport::~DrogonWebhookTransport() = default;

void DrogonWebhookTransport::post(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
                                  std::string body, double timeout_seconds, Done done) {
  auto parsed = parseHttpUrl(url, "webhook");
  if (!parsed) return done(std::nullopt, parsed.error().message);
  auto request = drogon::HttpRequest::newHttpRequest();
  request->setMethod(drogon::Post);
  request->setPathEncode(false);  // the target is sent as the client wrote it (query included)
  request->setPath(parsed->target);
  std::string user_agent;
  for (auto& [name, value] : headers) {
    if (name == "Content-Type") continue;
    if (name == "User-Agent") {
      user_agent = value;
      continue;
    }
    request->addHeader(name, value);
  }
  request->setContentTypeString("application/json");
  request->setBody(std::move(body));
  auto client = drogon::HttpClient::newHttpClient(parsed->origin(), loop_->getLoop());
  client->setUserAgent(user_agent);
  // The client must outlive the request: the callback holds it.
  client->sendRequest(
      request,
      [client, done = std::move(done)](drogon::ReqResult result, const drogon::HttpResponsePtr& resp) {
        if (result != drogon::ReqResult::Ok || !resp) return done(std::nullopt, drogon::to_string(result));
        done(static_cast<int>(resp->statusCode()), "");
      },
      timeout_seconds);
}

}  // namespace statim::api
