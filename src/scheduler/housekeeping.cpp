#include "scheduler/housekeeping.h"

#include <algorithm>

#include "core/clock.h"
#include "core/logging.h"
#include "core/thread_name.h"

namespace statim {
namespace {

Micros daysAgo(double days) { return nowMicros() - static_cast<Micros>(days * 86400.0 * 1e6); }

}  // namespace

Housekeeping::Housekeeping(JobStore& jobs, AuditStore& audit, RetentionOptions options)
    : jobs_(jobs), audit_(audit), options_(std::move(options)) {
  if (options_.jobs_days <= 0 && options_.audit_days <= 0 && !options_.blobs) return;  // nothing to do
  thread_ = std::thread([this] {
    nameThisThread("housekeeping");
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
  if (options_.jobs_days > 0) expireJobs();
  if (options_.blobs) sweepOrphanedFiles();
  if (options_.audit_days > 0) {
    auto n = audit_.deleteAuditBefore(daysAgo(options_.audit_days));
    if (!n) {
      log::error("retention: could not delete old audit rows", {{"error", n.error().message}});
    } else if (*n > 0) {
      log::info("retention: deleted old audit rows", {{"count", *n}, {"retention_days", options_.audit_days}});
    }
  }
}

void Housekeeping::expireJobs() {
  auto deleted = jobs_.deleteFinishedBefore(daysAgo(options_.jobs_days));
  if (!deleted) {
    log::error("retention: could not delete expired jobs", {{"error", deleted.error().message}});
    return;
  }
  if (deleted->ids.empty()) return;
  size_t removed = options_.blobs ? options_.blobs->removeReleased(deleted->orphaned_files, deleted->released_at) : 0;
  auto& ids = deleted->ids;
  std::vector<JobId> shown(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 20));
  log::info("retention: deleted expired jobs", {{"count", ids.size()},
                                                {"job_ids", shown},
                                                {"files_removed", removed},
                                                {"retention_days", options_.jobs_days}});
}

void Housekeeping::sweepOrphanedFiles() {
  Micros before = nowMicros() - std::chrono::duration_cast<std::chrono::microseconds>(options_.orphan_grace).count();
  auto candidates = options_.blobs->filesWrittenBefore(before);
  if (candidates.empty()) return;
  auto orphans = jobs_.unreferencedFiles(candidates);
  if (!orphans) {
    log::error("retention: could not check files against the jobs", {{"error", orphans.error().message}});
    return;
  }
  size_t removed = options_.blobs->removeReleased(*orphans, before);
  if (removed > 0) log::info("retention: removed files no job refers to", {{"count", removed}});
}

}  // namespace statim
