// JobStore on one SQLite file (WAL). All writes go through one writer thread that batches
// whatever is pending into one transaction: concurrent submissions share one fsync (group
// commit), and each write is isolated by a SAVEPOINT so one failure does not undo the others.
// Reads use a small pool of reader connections and never wait for the writer.
#pragma once

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "store/job_store.h"
#include "store/sqlite/sqlite_db.h"

namespace statim {

class SqliteJobStore final : public JobStore {
 public:
  // Opens or creates `path`, applying pending migrations.
  static Result<std::unique_ptr<SqliteJobStore>> open(const std::filesystem::path& path);
  ~SqliteJobStore() override;  // drains pending writes, then closes

  void createAsync(NewJob job, CreateCallback done) override;
  Result<Job> get(JobId id) override;
  Result<JobPage> list(const JobFilter& filter) override;
  Result<std::optional<Job>> claimNext(const std::string& model, const std::string& owner, Micros lease) override;
  Result<bool> heartbeat(JobId id, const std::string& owner, Micros lease) override;
  Result<void> complete(JobId id, const std::string& owner, const nlohmann::json& result) override;
  Result<void> fail(JobId id, const std::string& owner, const std::string& error) override;
  Result<void> finishCancelled(JobId id, const std::string& owner, const nlohmann::json& partial) override;
  Result<CancelOutcome> requestCancel(JobId id) override;
  Result<RequeueReport> requeueAbandoned(Micros expired_before, int max_attempts) override;
  Result<std::map<std::string, std::int64_t>> queuedByModel() override;

  // Schema version after migrations (for tests and /healthz).
  int schemaVersion() const { return schema_version_; }
  // Number of transactions the writer committed (tests check that group commit groups).
  std::int64_t commitCount() const;

 private:
  struct WriteOp {
    // Runs inside the batch transaction on the writer connection; false = roll back this op.
    std::function<bool(SqliteDb&)> apply;
    // Runs after the batch commits (commit_error null) or fails to (commit_error set).
    std::function<void(const Error* commit_error)> deliver;
  };

  SqliteJobStore(std::filesystem::path path, std::unique_ptr<SqliteDb> writer, int version);
  Result<void> finishProcessing(JobId id, const std::string& owner, std::string_view status,
                                std::string_view message, const std::optional<std::string>& result,
                                const std::string& error);
  void writerLoop();
  void enqueue(WriteOp op);
  // Runs `fn` on the writer inside a batch and waits for the commit.
  template <typename T, typename Fn>
  Result<T> write(Fn fn);

  struct ReaderLease;
  Result<ReaderLease> reader();

  std::filesystem::path path_;
  std::unique_ptr<SqliteDb> writer_db_;
  int schema_version_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WriteOp> pending_;  // guarded by mu_
  bool stopping_ = false;        // guarded by mu_
  std::int64_t commits_ = 0;     // guarded by mu_
  std::thread writer_;

  std::mutex readers_mu_;
  std::vector<std::unique_ptr<SqliteDb>> readers_;  // guarded by readers_mu_
};

}  // namespace statim
