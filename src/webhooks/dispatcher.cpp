#include "webhooks/dispatcher.h"

#include <cmath>
#include <format>

#include "core/clock.h"
#include "core/crypto.h"
#include "core/logging.h"
#include "core/thread_name.h"

namespace statim {
namespace {

Micros fromSeconds(double s) { return static_cast<Micros>(s * 1e6); }

}  // namespace

WebhookDispatcher::WebhookDispatcher(WebhookStore& outbox, JobStore& jobs, WebhookTransport& transport,
                                     RenderJob render, WebhookOptions options)
    : outbox_(outbox), jobs_(jobs), transport_(transport), render_(std::move(render)), options_(std::move(options)) {
  thread_ = std::thread([this] { loop(); });
}

WebhookDispatcher::~WebhookDispatcher() {
  {
    std::lock_guard lock(inbox_->mu);
    inbox_->stopping = true;
  }
  inbox_->cv.notify_all();
  thread_.join();
}

double WebhookDispatcher::backoffSeconds(const WebhookOptions& o, int attempt) {
  return std::min(o.retry_max_seconds, o.retry_base_seconds * std::pow(2.0, attempt - 1));
}

void WebhookDispatcher::loop() {
  nameThisThread("webhook-queue");
  std::string outbox_error;  // the last error claiming from the outbox, until a claim succeeds
  std::unique_lock lock(inbox_->mu);
  while (!inbox_->stopping) {
    while (!inbox_->outcomes.empty()) {
      Outcome o = std::move(inbox_->outcomes.front());
      inbox_->outcomes.pop_front();
      lock.unlock();
      record(o);
      lock.lock();
    }
    int room = options_.max_in_flight - inbox_->in_flight;
    if (room > 0) {
      lock.unlock();
      // The lease covers the request's timeout, so no other node takes the row meanwhile.
      auto due = outbox_.claimDueDeliveries(nowMicros(), fromSeconds(options_.timeout_seconds + 30), room);
      // Said once per distinct error (a read-only or full disk fails every poll the same way).
      if (!due && due.error().message != outbox_error) {
        log::error("webhooks: cannot read the outbox", {{"error", due.error().message}});
        outbox_error = due.error().message;
      }
      if (due && !outbox_error.empty()) {
        log::info("webhooks: the outbox can be read again");
        outbox_error.clear();
      }
      if (due) {
        for (auto& d : *due) send(d);
      }
      lock.lock();
    }
    inbox_->cv.wait_for(lock, options_.poll, [this] { return inbox_->stopping || !inbox_->outcomes.empty(); });
  }
}

void WebhookDispatcher::send(const WebhookDelivery& d) {
  auto job = jobs_.get(d.job_id);
  if (!job) {
    record({d, {nowMicros(), std::nullopt, "the job no longer exists: " + job.error().message, 0}, false});
    return;
  }
  std::string body =
      std::format(R"({{"event":"{}","delivery_id":{},"job":{}}})", d.event, d.id, render_(*job));
  std::string timestamp = std::to_string(nowMicros() / 1000000);
  std::vector<std::pair<std::string, std::string>> headers = {
      {"Content-Type", "application/json"},
      {"User-Agent", "statim-webhooks/" STATIM_VERSION},
      {"X-Statim-Event", d.event},
      {"X-Statim-Delivery", std::to_string(d.id)},
      {"X-Statim-Timestamp", timestamp},
      {"X-Statim-Signature", "sha256=" + crypto::hmacSha256Hex(options_.secret, timestamp + "." + body)},
  };
  {
    std::lock_guard lock(inbox_->mu);
    ++inbox_->in_flight;
  }
  Micros started = nowMicros();
  transport_.post(d.url, headers, std::move(body), options_.timeout_seconds,
                  [inbox = inbox_, d, started](std::optional<int> status, std::string error) {
                    Micros now = nowMicros();
                    bool ok = status && *status >= 200 && *status < 300;
                    if (status && !ok && error.empty()) error = std::format("the receiver answered HTTP {}", *status);
                    {
                      std::lock_guard lock(inbox->mu);
                      --inbox->in_flight;
                      if (inbox->stopping) return;
                      inbox->outcomes.push_back(
                          {d, {now, status, std::move(error), static_cast<double>(now - started) / 1000.0}, ok});
                    }
                    inbox->cv.notify_all();
                  });
}

void WebhookDispatcher::record(const Outcome& o) {
  int attempt = o.delivery.attempts + 1;
  std::optional<Micros> retry_at;
  if (!o.delivered && attempt < options_.max_attempts && o.attempt.error.rfind("the job no longer exists", 0) != 0) {
    retry_at = o.attempt.at + fromSeconds(backoffSeconds(options_, attempt));
  }
  nlohmann::json fields = {{"delivery_id", o.delivery.id}, {"job_id", o.delivery.job_id},
                           {"event", o.delivery.event},    {"attempt", attempt},
                           {"duration_ms", o.attempt.duration_ms}};
  if (o.attempt.status_code) fields["status_code"] = *o.attempt.status_code;
  if (o.delivered) {
    log::info("webhooks: delivered", fields);
  } else {
    fields["error"] = o.attempt.error;
    if (retry_at) fields["retry_in_s"] = static_cast<double>(*retry_at - o.attempt.at) / 1e6;
    log::warn(retry_at ? "webhooks: attempt failed, will retry" : "webhooks: giving up", fields);
  }
  if (auto r = outbox_.recordAttempt(o.delivery.id, o.attempt, o.delivered, retry_at); !r) {
    log::error("webhooks: cannot record an attempt", {{"delivery_id", o.delivery.id}, {"error", r.error().message}});
  }
}

}  // namespace statim
