// Retention: a background thread that deletes ended jobs older than jobs.retention_days (and
// what belongs to them) and audit rows older than audit.retention_days. It runs once at start,
// then every `interval`.
//
// Thread-safety: construct and destroy from one thread; the sweep runs on its own thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "store/audit_store.h"
#include "store/job_store.h"

namespace statim {

struct RetentionOptions {
  double jobs_days = 0;   // 0: keep jobs forever
  double audit_days = 0;  // 0: keep audit rows forever
  std::chrono::milliseconds interval{600000};
  // Called with the blobs the deleted jobs left unreferenced (to remove the bytes); may be empty.
  std::function<void(const std::vector<std::string>&)> on_files_orphaned;
};

class Housekeeping {
 public:
  Housekeeping(JobStore& jobs, AuditStore& audit, RetentionOptions options);
  ~Housekeeping();  // stops the thread
  Housekeeping(const Housekeeping&) = delete;
  Housekeeping& operator=(const Housekeeping&) = delete;

  // One sweep now, on the caller's thread (the thread calls this too).
  void sweep();

 private:
  JobStore& jobs_;
  AuditStore& audit_;
  RetentionOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace statim
