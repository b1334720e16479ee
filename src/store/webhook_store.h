// The webhook outbox. Rows are added by the job store itself, in the transaction that moves a job
// to a state its webhook asked for (queued, started, completed, failed, cancelled), so an event is
// never lost between the job's change and its delivery. A dispatcher claims due rows, sends them
// and records each attempt.
//
// Thread-safety: every method may be called from any thread. Several nodes may dispatch from
// one store: a claim leases the row (pushes next_attempt_at forward), so one node sends it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "statim/error.h"
#include "statim/job.h"

namespace statim {

struct WebhookAttempt {
  Micros at = 0;
  std::optional<int> status_code;  // none: no HTTP answer (refused, timeout)
  std::string error;               // empty on a 2xx
  double duration_ms = 0;
};

struct WebhookDelivery {
  std::int64_t id = 0;
  JobId job_id = 0;
  std::string event;
  std::string url;
  std::string status;  // pending | delivered | failed
  int attempts = 0;
  std::optional<Micros> next_attempt_at;
  std::optional<int> last_status_code;
  std::string last_error;
  Micros created_at = 0;
  std::optional<Micros> delivered_at;
  std::vector<WebhookAttempt> history;  // filled by listDeliveries only
};

class WebhookStore {
 public:
  virtual ~WebhookStore() = default;
  // Up to `limit` pending deliveries due at `now`, each leased until now + lease.
  virtual Result<std::vector<WebhookDelivery>> claimDueDeliveries(Micros now, Micros lease, int limit) = 0;
  // Records an attempt. `retry_at` set: still pending, next try then; unset: delivered (2xx) or,
  // after a failure, given up for good.
  virtual Result<void> recordAttempt(std::int64_t delivery_id, const WebhookAttempt& attempt, bool delivered,
                                     std::optional<Micros> retry_at) = 0;
  // A job's deliveries, oldest first, with their attempts.
  virtual Result<std::vector<WebhookDelivery>> listDeliveries(JobId job_id) = 0;
};

}  // namespace statim
