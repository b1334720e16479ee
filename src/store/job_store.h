// The durable job store: the single source of truth for jobs, and the queue itself.
//
// Thread-safety: every method may be called from any thread, concurrently.
// Durability: a method that returns (or calls back) success has committed its change to disk.
//
// Claim/lease semantics (kept independent of the engine so a PostgreSQL store with
// `FOR UPDATE SKIP LOCKED` fits the same contract):
//   claimNext     atomically moves the best QUEUED job of a model (highest priority, then oldest)
//                 to PROCESSING, owned by `owner` until now+lease; attempts += 1.
//   heartbeat     extends the lease of a job the owner still holds; answers whether someone asked
//                 to cancel it (so the node running it learns of a cancel made on another node).
//   requestCancel QUEUED -> CANCELLED at once; PROCESSING -> cancel_requested, for the owner to
//                 stop it and call finishCancelled; a finished job is returned unchanged.
//   complete/fail/finishCancelled only succeed for the current owner of a PROCESSING job
//                 (kConflict otherwise), so a worker whose lease expired cannot overwrite the
//                 outcome of the worker that took the job over.
//   create        with an idempotency key the owner used before: returns that job (replayed =
//                 true) when the request hash matches, kConflict when it does not. With an owner
//                 whose max_queued is set, fails with kRateLimited when the owner already has that
//                 many QUEUED jobs (checked in the insert's transaction, so it is exact).
//   requeueAbandoned returns PROCESSING jobs whose lease expired before `expired_before` to
//                 QUEUED, or FAILs them once they have been started `max_attempts` times.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "statim/error.h"
#include "statim/job.h"

namespace statim {

struct JobFilter {
  std::optional<JobStatus> status;
  std::optional<std::string> model;
  std::optional<std::int64_t> owner_key_id;  // only this key's jobs
  int limit = 50;
  int offset = 0;
};

struct JobPage {
  std::vector<Job> jobs;   // newest first
  std::int64_t total = 0;  // matching jobs, ignoring limit/offset
};

struct CancelOutcome {
  Job job;           // after the change
  JobStatus before;  // the status the cancel found
};

struct DeletedJobs {
  std::vector<JobId> ids;
  std::vector<std::string> orphaned_files;  // sha256 of blobs no remaining job refers to
  // The latest finished_at of the deleted jobs: an orphaned blob written (or re-uploaded) after
  // this moment belongs to a job being created now and must stay (BlobStore::removeReleased).
  Micros released_at = 0;
};

struct RequeueReport {
  std::vector<JobId> requeued;
  std::vector<JobId> failed;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  using CreateCallback = std::function<void(Result<Job>)>;
  // Stores a new QUEUED job. `done` runs after the commit, on a store thread: it must not block.
  // Concurrent creates share one commit (group commit).
  virtual void createAsync(NewJob job, CreateCallback done) = 0;
  Result<Job> create(NewJob job);  // blocking convenience over createAsync

  virtual Result<Job> get(JobId id) = 0;
  // The job an owner (0: none) created with this idempotency key, and the request hash it was
  // created with; nullopt when there is none.
  virtual Result<std::optional<std::pair<Job, std::string>>> findIdempotent(std::int64_t owner,
                                                                            const std::string& key) = 0;
  virtual Result<JobPage> list(const JobFilter& filter) = 0;

  virtual Result<std::optional<Job>> claimNext(const std::string& model, const std::string& owner, Micros lease) = 0;
  // Returns true when a cancel has been requested for the job.
  virtual Result<bool> heartbeat(JobId id, const std::string& owner, Micros lease) = 0;
  // `artifacts` (already in the blob store) are recorded with the job and listed in
  // result.artifacts.
  virtual Result<void> complete(JobId id, const std::string& owner, const nlohmann::json& result,
                                const std::vector<JobFile>& artifacts) = 0;
  Result<void> complete(JobId id, const std::string& owner, const nlohmann::json& result) {
    return complete(id, owner, result, {});
  }
  virtual Result<void> fail(JobId id, const std::string& owner, const std::string& error) = 0;
  // Ends a PROCESSING job as CANCELLED, keeping what it produced so far (may be null).
  virtual Result<void> finishCancelled(JobId id, const std::string& owner, const nlohmann::json& partial) = 0;
  // See requestCancel above. kNotFound for an unknown id.
  virtual Result<CancelOutcome> requestCancel(JobId id) = 0;
  virtual Result<RequeueReport> requeueAbandoned(Micros expired_before, int max_attempts) = 0;

  // QUEUED jobs per model (the scheduler seeds its admission counters with this).
  virtual Result<std::map<std::string, std::int64_t>> queuedByModel() = 0;

  // Deletes jobs that ended before `before` (with their webhook and file rows); returns their
  // ids and the blobs nothing refers to any more (for the caller to remove).
  virtual Result<DeletedJobs> deleteFinishedBefore(Micros before) = 0;
  // Deletes one ended job and what belongs to it. kNotFound for an unknown id; kConflict (naming
  // the status) while it is QUEUED or PROCESSING: cancel it first.
  virtual Result<DeletedJobs> deleteJob(JobId id) = 0;
  // Those of `sha256s` that no job's inputs or artifacts refer to (for sweeping the blob store).
  virtual Result<std::vector<std::string>> unreferencedFiles(const std::vector<std::string>& sha256s) = 0;
};

}  // namespace statim
