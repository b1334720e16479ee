// The durable job store: the single source of truth for jobs, and the queue itself.
//
// Thread-safety: every method may be called from any thread, concurrently.
// Durability: a method that returns (or calls back) success has committed its change to disk.
//
// Claim/lease semantics (kept independent of the engine so a PostgreSQL store with
// `FOR UPDATE SKIP LOCKED` fits the same contract):
//   claim         atomically moves the best QUEUED jobs of a model (highest priority, then oldest;
//                 at most `max`) to PROCESSING, owned by `lease.owner` until now+lease.duration;
//                 attempts += 1. claimNext is the one-job form.
//   heartbeat     extends the lease of a job the owner still holds; answers whether someone asked
//                 to cancel it (so the node running it learns of a cancel made on another node).
//   requestCancel QUEUED -> CANCELLED at once; PROCESSING -> cancel_requested, for the owner to
//                 stop it and call finishCancelled; a finished job is returned unchanged.
//   finishAsync (and its blocking forms complete/fail/finishCancelled) only succeeds for the
//                 current owner of a PROCESSING job
//                 (kConflict otherwise), so a worker whose lease expired cannot overwrite the
//                 outcome of the worker that took the job over.
//   create        with an idempotency key the owner used before: returns that job (replayed =
//                 true) when the request hash matches, kConflict when it does not. With an owner
//                 whose max_queued is set, fails with kRateLimited when the owner already has that
//                 many QUEUED jobs (checked in the insert's transaction, so it is exact). With a
//                 `start` lease the job is stored already claimed (PROCESSING, attempts 1): the
//                 scheduler's way to start a job on a free slot without a second commit.
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
  std::optional<std::string> type;           // "completion", "chat", "detection", ...
  std::optional<std::int64_t> owner_key_id;  // only this key's jobs
  std::optional<Micros> created_from;        // created at or after
  std::optional<Micros> created_before;      // created before
  std::optional<std::string> text;           // the prompt contains it (ASCII letters in any case)
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

// Who holds a claimed job, and for how long from now.
struct LeaseRequest {
  std::string owner;
  Micros duration = 0;
};

// How a PROCESSING job ended (finishAsync).
struct JobOutcome {
  JobStatus status = JobStatus::kCompleted;  // kCompleted, kFailed or kCancelled
  nlohmann::json result;                     // kCompleted: the result; kCancelled: the partial one (may be null)
  std::string error;                         // kFailed: why
  std::vector<JobFile> artifacts;            // kCompleted: files already in the blob store
  // When the job ended on its worker, before its slot was freed. The SQLite store records it as
  // finished_at, so a job that takes the freed slot (at submission, or claimed then) never seems
  // to start before this one ended: the end's commit may come after the next job's. (A job
  // claimed ahead has the claim's time as started_at.) 0: the commit's time. PostgreSQL records
  // the database's time at the commit, as for every other timestamp.
  Micros ended_at = 0;
};

// The QUEUED job a store creates from `request`: the job's own fields are moved out of it; what
// the store's checks need (owner, idempotency key and hash, inputs) is left in it.
Job queuedJob(NewJob& request);

// What a create answers for an idempotency key already used (`earlier`: that job and the hash of
// its request, as findIdempotent gives them): the earlier job, marked replayed, or kConflict when
// `request` differs from it; nullopt when the key is new.
// A LIKE pattern matching text that contains `text` ('\\' escapes; '%' and '_' in it match themselves).
std::string likeContaining(const std::string& text);
Result<std::optional<Job>> replayOf(std::optional<std::pair<Job, std::string>> earlier, const NewJob& request);

// `job` (PROCESSING) as finishAsync stores it with `outcome` applied: status, status_message,
// result, error, artifacts, the lease dropped, and finished_at when the outcome has ended_at
// (else the commit sets it).
Job endedJob(Job job, JobOutcome outcome);

// Text stored in a database must be valid UTF-8 JSON; invalid bytes become U+FFFD.
std::string dumpJson(const nlohmann::json& j);
// A webhook's events as the stores keep them (column webhook_events): ",completed,failed,", so
// that SQL finds one with a search for ",event,".
std::string eventList(const std::vector<std::string>& events);
std::vector<std::string> parseEventList(std::string_view text);

struct RequeueReport {
  std::vector<JobId> requeued;
  std::vector<JobId> failed;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  using CreateCallback = std::function<void(Result<Job>)>;
  // Stores a new QUEUED job, or with `start` a PROCESSING one held under that lease. `done` runs
  // after the commit, on a store thread: it must not block. Concurrent writes share one commit
  // (group commit). The commit is on disk when `done` runs, unless job.answered_at_end: then it
  // is committed (visible, and kept if statim crashes) and its flush to disk follows at once,
  // before the store's next write; syncAsync waits for it.
  virtual void createAsync(NewJob job, std::optional<LeaseRequest> start, CreateCallback done) = 0;
  void createAsync(NewJob job, CreateCallback done) { createAsync(std::move(job), std::nullopt, std::move(done)); }
  Result<Job> create(NewJob job);  // blocking convenience over createAsync

  virtual Result<Job> get(JobId id) = 0;
  // The job an owner (0: none) created with this idempotency key, and the request hash it was
  // created with; nullopt when there is none.
  virtual Result<std::optional<std::pair<Job, std::string>>> findIdempotent(std::int64_t owner,
                                                                            const std::string& key) = 0;
  virtual Result<JobPage> list(const JobFilter& filter) = 0;
  // How many QUEUED jobs of the job's model run before it (higher priority, or the same and
  // older); nullopt when the job is not QUEUED. Counts over the queue index: O(the answer).
  virtual Result<std::optional<std::int64_t>> queuedAhead(JobId id) = 0;

  // Claims up to `max` QUEUED jobs of `model` in one commit, best first (see above).
  virtual Result<std::vector<Job>> claim(const std::string& model, const LeaseRequest& lease, int max) = 0;
  Result<std::optional<Job>> claimNext(const std::string& model, const std::string& owner, Micros lease);
  // Returns true when a cancel has been requested for the job.
  virtual Result<bool> heartbeat(JobId id, const std::string& owner, Micros lease) = 0;
  // heartbeat for every job a node holds, in one write: the jobs whose lease it still held
  // (renewed) and, of those, the ones someone asked to cancel. A job not in `renewed` was lost
  // (its lease expired and it was taken again, or it ended). This form loops over heartbeat.
  struct Renewal {
    std::vector<JobId> renewed;
    std::vector<JobId> cancel_requested;
  };
  virtual Result<Renewal> renewLeases(const std::vector<std::pair<JobId, std::string>>& held, Micros lease);
  using FinishCallback = std::function<void(Result<Job>)>;
  // Ends the PROCESSING job `job` (as claimed; only its id must be set) held by `owner` as
  // `outcome` says. `done` gets `job` with the end applied (status, result, error, finished_at,
  // artifacts; not read back) after the commit, on a store thread, and must not block. The
  // outcome's artifacts are recorded with the job (the caller lists them in result.artifacts).
  virtual void finishAsync(Job job, const std::string& owner, JobOutcome outcome, FinishCallback done) = 0;
  // Blocking forms of finishAsync.
  Result<void> complete(JobId id, const std::string& owner, const nlohmann::json& result,
                        const std::vector<JobFile>& artifacts = {});
  Result<void> fail(JobId id, const std::string& owner, const std::string& error);
  // Ends a PROCESSING job as CANCELLED, keeping what it produced so far (may be null).
  Result<void> finishCancelled(JobId id, const std::string& owner, const nlohmann::json& partial);
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

  // Why writes fail now (a full or read-only disk), while they do: the last commit failed so,
  // and no write or probe has succeeded since. /readyz turns not-ready on it.
  virtual std::optional<Error> writeProblem() const { return std::nullopt; }

  // `done` runs (on a store thread; it must not block) once every commit made so far is on disk,
  // those of creations with answered_at_end included. At once for a store whose every commit is
  // flushed before it returns.
  virtual void syncAsync(std::function<void(Result<void>)> done) { done(ok()); }

 private:
  Result<void> finish(JobId id, const std::string& owner, JobOutcome outcome);  // the blocking forms' core
};

}  // namespace statim
