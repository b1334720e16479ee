// The store on one SQLite file (WAL): jobs, API keys, the audit trail and the webhook outbox.
// All writes go through one writer thread that batches whatever is pending into one transaction:
// concurrent submissions share one fsync (group commit), and each write is isolated by a
// SAVEPOINT so one failure does not undo the others. Reads use a small pool of reader
// connections and never wait for the writer.
//
// The methods of each interface live in their own file: sqlite_jobs.cpp, sqlite_keys.cpp,
// sqlite_audit.cpp, sqlite_webhooks.cpp; this header and sqlite_store.cpp hold the machinery.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "store/local_blobs/local_blob_store.h"
#include "store/sqlite/sqlite_db.h"
#include "store/store.h"

namespace statim {

class SqliteStore final : public Store {
 public:
  // Opens or creates `path`, applying pending migrations. A database that exists where nothing may
  // be written (a read-only mount) is opened to serve reads: writes fail with kStorageUnavailable
  // (writeProblem() says so) until the data dir takes writes again.
  static Result<std::unique_ptr<SqliteStore>> open(const std::filesystem::path& path);
  ~SqliteStore() override;  // drains pending writes, then closes

  // JobStore
  using JobStore::createAsync;
  void createAsync(NewJob job, std::optional<LeaseRequest> start, CreateCallback done) override;
  Result<Job> get(JobId id) override;
  Result<std::optional<std::pair<Job, std::string>>> findIdempotent(std::int64_t owner,
                                                                    const std::string& key) override;
  Result<JobPage> list(const JobFilter& filter) override;
  Result<std::optional<std::int64_t>> queuedAhead(JobId id) override;
  Result<std::vector<Job>> claim(const std::string& model, const LeaseRequest& lease, int max) override;
  Result<bool> heartbeat(JobId id, const std::string& owner, Micros lease) override;
  void finishAsync(Job job, const std::string& owner, JobOutcome outcome, FinishCallback done) override;
  Result<CancelOutcome> requestCancel(JobId id) override;
  Result<RequeueReport> requeueAbandoned(Micros expired_before, int max_attempts) override;
  Result<std::map<std::string, std::int64_t>> queuedByModel() override;
  Result<DeletedJobs> deleteFinishedBefore(Micros before) override;
  Result<DeletedJobs> deleteJob(JobId id) override;
  Result<std::vector<std::string>> unreferencedFiles(const std::vector<std::string>& sha256s) override;

  // KeyStore
  Result<ApiKey> createKey(ApiKey key) override;
  Result<std::optional<ApiKey>> findKeyByPrefix(const std::string& prefix) override;
  Result<std::vector<ApiKey>> listKeys() override;
  Result<ApiKey> revokeKey(const std::string& name_or_id) override;

  // AuditStore
  void appendAudit(AuditEntry entry) override;
  Result<AuditPage> listAudit(const AuditFilter& filter) override;
  Result<std::int64_t> deleteAuditBefore(Micros before) override;

  // WebhookStore
  Result<std::vector<WebhookDelivery>> claimDueDeliveries(Micros now, Micros lease, int limit) override;
  Result<void> recordAttempt(std::int64_t delivery_id, const WebhookAttempt& attempt, bool delivered,
                             std::optional<Micros> retry_at) override;
  Result<std::vector<WebhookDelivery>> listDeliveries(JobId job_id) override;

  // NodeStore
  Result<void> heartbeatNode(const NodeRecord& node) override;
  Result<void> removeNode(const std::string& id) override;
  Result<std::vector<NodeRecord>> listNodes(Micros forget_after) override;

  // Store: the job files' bytes are in <dir of the database>/files.
  BlobStore& blobs() override { return blobs_; }
  int schemaVersion() const override { return schema_version_; }
  // Number of transactions the writer committed (tests check that group commit groups).
  std::int64_t commitCount() const;
  std::optional<Error> writeProblem() const override;
  void syncAsync(std::function<void(Result<void>)> done) override;

 private:
  // When a write's commit reaches the disk. kFsync: before anyone hears of it (a job accepted,
  // ended or cancelled, a key made). kLater: committed, so visible and kept if statim itself
  // crashes, but fsynced with the next kFsync commit or checkpoint (PRAGMA synchronous=NORMAL),
  // so a power loss may undo it: for writes the store can do without, a claim (the job is
  // queued again and runs again), a lease or node heartbeat, an audit row (written after the
  // response anyway). Saves an fsync per job. kAfterDelivery: committed without an fsync and
  // delivered, then fsynced before the writer takes the next batch: for a job's creation whose
  // client hears of it only at its end (NewJob::answered_at_end), so that its worker starts it
  // while the log is flushed.
  enum class Sync { kFsync, kLater, kAfterDelivery };
  struct WriteOp {
    // Runs inside the batch transaction on the writer connection; an error rolls back this op.
    std::function<Result<void>(SqliteDb&)> apply;
    // Runs after the batch commits (commit_error null) or fails to (commit_error set).
    std::function<void(const Error* commit_error)> deliver;
    Sync sync = Sync::kFsync;  // a batch of kLater writes only is committed without an fsync
  };

  // Without a writer: opened read-only, serving from read_only_reader, writes failing with write_problem.
  SqliteStore(std::filesystem::path path, std::unique_ptr<SqliteDb> writer, int version,
              std::unique_ptr<SqliteDb> read_only_reader = nullptr, std::optional<Error> write_problem = {});
  static Result<std::unique_ptr<SqliteStore>> openReadOnly(const std::filesystem::path& path, const Error& why);
  bool openWriter();
  void writerLoop();
  void enqueue(WriteOp op);
  // Runs `fn` (SqliteDb& -> Result<T>) on the writer inside a batch; `done` gets its result
  // after the commit (or the commit's error), on the writer thread.
  template <typename T, typename Fn>
  void writeAsync(Fn fn, std::function<void(Result<T>)> done, Sync sync = Sync::kFsync);
  // The same, waiting for the commit.
  template <typename T, typename Fn>
  Result<T> write(Fn fn, Sync sync = Sync::kFsync);
  template <typename T, typename Fn>
  Result<T> writeLater(Fn fn) {  // a write the store can redo (Sync::kLater)
    return write<T>(std::move(fn), Sync::kLater);
  }

  struct ReaderLease {
    SqliteStore* store;
    std::unique_ptr<SqliteDb> db;
    bool read_only;
    ReaderLease(SqliteStore* s, std::unique_ptr<SqliteDb> d, bool ro) : store(s), db(std::move(d)), read_only(ro) {}
    ReaderLease(ReaderLease&& other) noexcept;
    ~ReaderLease();
  };
  Result<ReaderLease> reader();

  std::filesystem::path path_;
  LocalBlobStore blobs_;
  std::unique_ptr<SqliteDb> writer_db_;  // null after a read-only start, until the data dir takes writes
  int schema_version_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WriteOp> pending_;  // guarded by mu_
  bool stopping_ = false;        // guarded by mu_
  std::int64_t commits_ = 0;     // guarded by mu_
  // Set when a write fails for a full or unwritable disk; the writer probes the data dir every
  // kProbeInterval meanwhile (busy or idle) and clears it once the probe's write goes through.
  std::optional<Error> write_problem_;                // guarded by mu_
  std::chrono::steady_clock::time_point last_probe_;  // writer thread only
  bool probeWrite();
  std::string last_open_error_;  // writer thread only: openWriter's last failure
  bool writer_lazy_ = false;     // writer thread only: writer_db_ is at synchronous=NORMAL (Sync::kLater)
  std::thread writer_;

  std::mutex readers_mu_;
  std::vector<std::unique_ptr<SqliteDb>> readers_;  // guarded by readers_mu_
  std::condition_variable readers_cv_;
  bool readers_read_only_ = false;  // guarded by readers_mu_: opened read-only
  int read_only_leased_ = 0;        // guarded by readers_mu_: read-only connections in use
  bool switching_ = false;          // guarded by readers_mu_: openWriter() waits for them
};

template <typename T, typename Fn>
void SqliteStore::writeAsync(Fn fn, std::function<void(Result<T>)> done, Sync sync) {
  auto result = std::make_shared<std::optional<Result<T>>>();
  enqueue({[fn = std::move(fn), result](SqliteDb& db) mutable {
             result->emplace(fn(db));
             return **result ? Result<void>() : Result<void>(statim::fail((*result)->error()));
           },
           [result, done = std::move(done)](const Error* err) {
             if (err)
               done(std::unexpected(*err));
             else
               done(std::move(**result));
           },
           sync});
}

template <typename T, typename Fn>
Result<T> SqliteStore::write(Fn fn, Sync sync) {
  std::promise<Result<T>> promise;
  auto future = promise.get_future();
  writeAsync<T>(
      std::move(fn), [&promise](Result<T> r) { promise.set_value(std::move(r)); }, sync);
  return future.get();
}

// Deletes the rows of the jobs `out.ids` that belong to them (files, webhooks) and fills
// out.orphaned_files; the job rows themselves are already gone.
Result<void> deleteJobRows(SqliteDb& db, DeletedJobs& out);

// The files of jobs; loads them into `job` (path filled from `blobs`).
Result<void> loadJobFiles(SqliteDb& db, const BlobStore& blobs, Job& job);

}  // namespace statim
