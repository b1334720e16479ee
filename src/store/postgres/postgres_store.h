// The store on PostgreSQL, shared by any number of statim nodes: jobs (the queue and their
// history), API keys, the audit trail and the webhook outbox, in the database given by
// store.url; the jobs' files on a path every node reads (store.files_dir).
//
// Writes go to a queue served by one writer thread and connection, which batches whatever is
// pending into one transaction (group commit); a write that fails is rolled back alone (the
// batch is rerun with a SAVEPOINT around each write), one that loses a deadlock is retried.
// Writes are applied in the order they were made, as on SQLite. Claims (one statement each) and
// reads take a connection from a small pool and never wait for the writer. Every time that
// nodes must agree on (leases above all) is the database's clock, statim_now_us(), never a node's.
//
// Claims are `FOR UPDATE SKIP LOCKED` on the partial index of queued rows: nodes claiming at the
// same time never get the same job and never wait for each other. Completion is fenced on the
// lease's (owner, attempt). A lost connection (a restarted server, a terminated backend) fails
// the writes of that moment with kStorageUnavailable (nothing written) and is re-opened on the
// next use.
//
// The methods of each interface live in their own file: pg_jobs.cpp, pg_keys.cpp, pg_audit.cpp,
// pg_webhooks.cpp; this header and postgres_store.cpp hold the machinery.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/local_blobs/local_blob_store.h"
#include "store/postgres/pg_conn.h"
#include "store/store.h"

namespace statim {

struct PostgresStoreOptions {
  std::string url;                  // postgresql://user@host/db, or a conninfo string
  std::filesystem::path files_dir;  // the jobs' files: a path every node sharing the database reads
  // Writer connections (threads). More than one gives up the order of writes (a write made after
  // another may commit first); measured no faster on 2 cores (bench/pg_cluster.py).
  int writers = 1;
  int max_readers = 8;              // reader connections, opened as needed
  // A writer connection quiet this long sends its next batch in two round trips, not one: a
  // connection dropped on the way without a word (a firewall, a NAT) then fails before the
  // batch's COMMIT, and the batch runs again on a new connection.
  std::chrono::milliseconds quiet_connection{10'000};
};

class PostgresStore final : public Store {
 public:
  // Connects, then applies pending migrations under an advisory lock (nodes starting together
  // wait for the first). Fails with kStorageUnavailable when the server cannot be reached, and
  // with kStorage when the schema is newer than this binary knows.
  static Result<std::unique_ptr<PostgresStore>> open(PostgresStoreOptions options);
  ~PostgresStore() override;  // drains pending writes, then closes

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
  // One UPDATE for all of them.
  Result<Renewal> renewLeases(const std::vector<std::pair<JobId, std::string>>& held, Micros lease) override;
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

  BlobStore& blobs() override { return blobs_; }
  int schemaVersion() const override { return schema_version_; }
  std::optional<Error> writeProblem() const override;
  // Transactions the writers committed (tests check that group commit groups).
  std::int64_t commitCount() const;
  // The claim, less its RETURNING: $1 model, $2 max, $3 status, $4 status_message, $5 lease owner,
  // $6 lease duration (us). The partial index jobs_queue gives a model's best QUEUED rows in
  // order; SKIP LOCKED passes over rows another node is claiming, so claims never wait for each
  // other. (Public for the test that EXPLAINs it.)
  static constexpr const char* kClaimSql =
      "WITH picked AS (SELECT id AS pick FROM jobs WHERE status = 'QUEUED' AND model = $1"
      " ORDER BY priority DESC, id LIMIT $2 FOR UPDATE SKIP LOCKED)"
      " UPDATE jobs SET status = $3, status_message = $4, started_at = statim_now_us(), attempts = attempts + 1,"
      " lease_owner = $5, lease_expires_at = statim_now_us() + $6 FROM picked WHERE id = picked.pick";
  // A reader connection for statements outside the interfaces (tests: EXPLAIN of the claim).
  Result<PgResult> query(std::string_view sql, const PgParams& params = {});

 private:
  // A write that is one statement and what to make of its result. A batch of only such writes
  // goes to the server with its BEGIN and COMMIT in one round trip (PgConn::transaction).
  struct OneStatement {
    std::function<PgStatement()> build;  // right before it is sent (again if the batch runs again)
    // Makes the write's answer of the statement's result (or error); an error fails the write. It
    // may refuse only a statement that changed nothing: the batch commits around it.
    std::function<Result<void>(Result<PgResult>)> take;
  };
  struct WriteOp {
    // Runs inside the batch transaction on a writer connection; an error rolls back this op.
    std::function<Result<void>(PgConn&)> apply;
    // Runs after the batch commits (commit_error null) or fails to (commit_error set).
    std::function<void(const Error* commit_error)> deliver;
    std::shared_ptr<OneStatement> one;  // set when the write is one statement (apply runs it)
  };

  PostgresStore(PostgresStoreOptions options, int version);
  void writerLoop(PgConn& conn);
  void runBatch(PgConn& conn, std::vector<WriteOp>& batch);
  void enqueue(WriteOp op);
  template <typename T, typename Fn>
  void writeAsync(Fn fn, std::function<void(Result<T>)> done);
  template <typename T, typename Fn>
  Result<T> write(Fn fn);
  // writeAsync for a write of one statement: `take` makes the answer of its result.
  template <typename T>
  void writeOneAsync(std::function<PgStatement()> build, std::function<Result<T>(PgResult&)> take,
                     std::function<void(Result<T>)> done);
  // The write of `one`: apply runs its statement alone (a batch that is not all such writes).
  static WriteOp writeOf(std::shared_ptr<OneStatement> one, std::function<void(const Error*)> deliver);
  // Runs a batch of one-statement writes in one round trip; false: a statement failed (the
  // transaction is rolled back), so the batch must run again write by write.
  Result<bool> runInOneTrip(PgConn& conn, std::vector<WriteOp>& batch, bool& maybe_committed);

  // A reader connection, returned to the pool when the lease ends.
  struct ReaderLease {
    PostgresStore* store;
    std::unique_ptr<PgConn> conn;
    ReaderLease(PostgresStore* s, std::unique_ptr<PgConn> c) : store(s), conn(std::move(c)) {}
    ReaderLease(ReaderLease&& o) noexcept : store(o.store), conn(std::move(o.conn)) {}
    ~ReaderLease();
    PgConn* operator->() { return conn.get(); }
  };
  Result<ReaderLease> reader();
  void dropIdleReaders();
  // Runs `fn(PgConn&) -> Result<T>` on a reader connection.
  template <typename T, typename Fn>
  Result<T> read(Fn fn);
  // Runs `fn`, one statement that commits by itself, on a pooled connection at once, not behind
  // the batched writes (a claim: a worker waiting for work must not wait behind a burst of
  // submissions). A connection gone stale is replaced once, as for reads. The pool's sessions
  // have synchronous_commit off: such a statement's commit does not wait for the
  // WAL flush, so a crash of the database server (not of statim) may undo it; the store redoes
  // what it may lose (an undone claim leaves the job queued: it runs again, and the fence on owner
  // and attempt keeps one run's end).
  template <typename T, typename Fn>
  Result<T> statement(Fn fn) {
    return read<T>(std::move(fn));
  }

  PostgresStoreOptions options_;
  LocalBlobStore blobs_;
  int schema_version_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WriteOp> pending_;                        // guarded by mu_
  bool stopping_ = false;                              // guarded by mu_
  std::int64_t commits_ = 0;                           // guarded by mu_
  std::optional<Error> write_problem_;                 // guarded by mu_: the last batch could not reach the server
  std::vector<std::unique_ptr<PgConn>> writer_conns_;  // one per writer thread
  std::vector<std::thread> writers_;

  std::mutex audit_mu_;
  std::vector<AuditEntry> audit_pending_;  // guarded by audit_mu_: rows for the queued audit write

  std::mutex readers_mu_;
  std::condition_variable readers_cv_;
  std::vector<std::unique_ptr<PgConn>> idle_readers_;  // guarded by readers_mu_
  int open_readers_ = 0;                               // guarded by readers_mu_
};

// A write's deliver: the commit's error, or else the write's own answer.
template <typename T>
std::function<void(const Error*)> answerTo(std::shared_ptr<std::optional<Result<T>>> result,
                                           std::function<void(Result<T>)> done) {
  return [result = std::move(result), done = std::move(done)](const Error* err) {
    if (err)
      done(std::unexpected(*err));
    else
      done(std::move(**result));
  };
}

template <typename T, typename Fn>
void PostgresStore::writeAsync(Fn fn, std::function<void(Result<T>)> done) {
  auto result = std::make_shared<std::optional<Result<T>>>();
  enqueue({[fn = std::move(fn), result](PgConn& c) mutable {
             result->emplace(fn(c));
             return **result ? Result<void>() : Result<void>(statim::fail((*result)->error()));
           },
           answerTo(result, std::move(done))});
}

template <typename T>
void PostgresStore::writeOneAsync(std::function<PgStatement()> build, std::function<Result<T>(PgResult&)> take,
                                  std::function<void(Result<T>)> done) {
  auto result = std::make_shared<std::optional<Result<T>>>();
  auto one = std::make_shared<OneStatement>(
      OneStatement{std::move(build), [take = std::move(take), result](Result<PgResult> r) {
                     result->emplace(r ? take(*r) : Result<T>(statim::fail(r.error())));
                     return **result ? Result<void>() : Result<void>(statim::fail((*result)->error()));
                   }});
  enqueue(writeOf(std::move(one), answerTo(result, std::move(done))));
}

template <typename T, typename Fn>
Result<T> PostgresStore::write(Fn fn) {
  std::promise<Result<T>> promise;
  auto future = promise.get_future();
  writeAsync<T>(std::move(fn), [&promise](Result<T> r) { promise.set_value(std::move(r)); });
  return future.get();
}

template <typename T, typename Fn>
Result<T> PostgresStore::read(Fn fn) {
  for (int round = 0;; ++round) {
    auto lease = reader();
    if (!lease) return statim::fail(lease.error());
    Result<T> r = fn(*lease->conn);
    // A pooled connection gone stale (the server restarted, its backends were terminated): the
    // other idle ones are too; once more on a new one.
    if (r || lease->conn->healthy() || round == 1) return r;
    dropIdleReaders();
  }
}

}  // namespace statim
