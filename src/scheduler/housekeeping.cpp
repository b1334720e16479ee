#include "scheduler/housekeeping.h"

#include <algorithm>

#include "core/clock.h"
#include "core/logging.h"

namespace statim {
namespace {

Micros daysAgo(double days) { return nowMicros() - static_cast<Micros>(days * 86400.0 * 1e6); }

}  // namespace

Housekeeping::Housekeeping(JobStore& jobs, AuditStore& audit, RetentionOptions options)
    : jobs_(jobs), audit_(audit), options_(std::move(options)) {
  if (options_.jobs_days <= 0 && options_.audit_days <= 0) return;  // nothing to expire
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      sweep();
      lock.lock();
      cv_.wait_for(lock, options_.interval, [this] { return stopping_; });
    }
  });
}

Housekeeping::~Housekeeping() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Housekeeping::sweep() {
  if (options_.jobs_days > 0) {
    auto deleted = jobs_.deleteFinishedBefore(daysAgo(options_.jobs_days));
    if (!deleted) {
      log::error("retention: could not delete expired jobs", {{"error", deleted.error().message}});
    } else if (!deleted->ids.empty()) {
      if (options_.on_files_orphaned && !deleted->orphaned_files.empty()) {
        options_.on_files_orphaned(deleted->orphaned_files);
      }
      auto& ids = deleted->ids;
      std::vector<JobId> shown(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 20));
      log::info("retention: deleted expired jobs", {{"count", ids.size()},
                                                    {"job_ids", shown},
                                                    {"files_removed", deleted->orphaned_files.size()},
                                                    {"retention_days", options_.jobs_days}});
    }
  }
  if (options_.audit_days > 0) {
    auto n = audit_.deleteAuditBefore(daysAgo(options_.audit_days));
    if (!n) {
      log::error("retention: could not delete old audit rows", {{"error", n.error().message}});
    } else if (*n > 0) {
      log::info("retention: deleted old audit rows", {{"count", *n}, {"retention_days", options_.audit_days}});
    }
  }
}

}  // namespace statim
