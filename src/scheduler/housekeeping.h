// Retention: a background thread that deletes ended jobs older than jobs.retention_days (and
// what belongs to them, their files included) and audit rows older than audit.retention_days,
// and removes files no job refers to (inputs of refused requests, writes cut short by a crash)
// once they are `orphan_grace` old. It runs once at start, then every `interval`.
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
#include "store/blob_store.h"
#include "store/job_store.h"

namespace statim {

struct RetentionOptions {
  double jobs_days = 0;   // 0: keep jobs forever
  double audit_days = 0;  // 0: keep audit rows forever
  std::chrono::milliseconds interval{600000};
  BlobStore* blobs = nullptr;  // the job files; null: no file is removed
  std::chrono::milliseconds orphan_grace{3600 * 1000};
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
  void expireJobs();
  void sweepOrphanedFiles();

  JobStore& jobs_;
  AuditStore& audit_;
  RetentionOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace statim
