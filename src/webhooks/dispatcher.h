// Webhook delivery: takes due rows from the outbox (WebhookStore), POSTs each as
// {"event", "delivery_id", "job"} signed with HMAC-SHA256, and records every attempt; failures are
// retried with exponential backoff until webhooks.max_attempts.
//
// Signature: X-Statim-Signature: sha256=<hex HMAC-SHA256(secret, "<X-Statim-Timestamp>.<body>")>.
// A job's events are sent in order, each after the previous one was answered (or given up).
// The body carries the job as it is when the delivery is sent. Delivery is at least once: a node that stops after sending but before recording sends the
// row again once its lease passes. Receivers de-duplicate by X-Statim-Delivery.
//
// Threads: one dispatcher thread claims rows and records results; the transport sends
// asynchronously, so a slow receiver holds a connection, never a worker or an API thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "store/job_store.h"
#include "store/webhook_store.h"

namespace statim {

// Sends one HTTP POST. `done` gets the status code, or an error text when there was no answer;
// it may run on any thread and must not block. Implementations must be thread-safe.
class WebhookTransport {
 public:
  using Done = std::function<void(std::optional<int> status, std::string error)>;
  virtual ~WebhookTransport() = default;
  virtual void post(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
                    std::string body, double timeout_seconds, Done done) = 0;
};

struct WebhookOptions {
  std::string secret;
  int max_attempts = 8;
  double retry_base_seconds = 2;
  double retry_max_seconds = 3600;
  double timeout_seconds = 10;
  std::chrono::milliseconds poll{200};
  int max_in_flight = 64;
};

class WebhookDispatcher {
 public:
  // `render` turns a job into its JSON object text (the API's job shape).
  using RenderJob = std::function<std::string(const Job&)>;
  WebhookDispatcher(WebhookStore& outbox, JobStore& jobs, WebhookTransport& transport, RenderJob render,
                    WebhookOptions options);
  ~WebhookDispatcher();  // stops; answers still in flight are dropped (their rows are re-sent later)
  WebhookDispatcher(const WebhookDispatcher&) = delete;
  WebhookDispatcher& operator=(const WebhookDispatcher&) = delete;

  // The delay before retry number `attempt` (1 = after the first failure).
  static double backoffSeconds(const WebhookOptions& options, int attempt);

 private:
  struct Outcome {
    WebhookDelivery delivery;
    WebhookAttempt attempt;
    bool delivered = false;
  };
  // What transport callbacks reach, even after the dispatcher is gone.
  struct Inbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Outcome> outcomes;  // guarded by mu
    int in_flight = 0;             // guarded by mu
    bool stopping = false;         // guarded by mu
  };

  void loop();
  void send(const WebhookDelivery& d);
  void record(const Outcome& o);

  WebhookStore& outbox_;
  JobStore& jobs_;
  WebhookTransport& transport_;
  RenderJob render_;
  WebhookOptions options_;
  std::shared_ptr<Inbox> inbox_ = std::make_shared<Inbox>();
  std::thread thread_;
};

}  // namespace statim
