#include "store/sqlite/sqlite_job_store.h"

#include <format>
#include <future>

#include "core/clock.h"
#include "core/logging.h"
#include "store/migrations/migration.h"

namespace statim {
namespace {

constexpr size_t kMaxBatch = 1024;
constexpr const char* kCols =
    "id, model, type, prompt, params, priority, status, status_message, created_at, started_at, "
    "finished_at, result, error, attempts, lease_owner, lease_expires_at, cancel_requested";

Job rowToJob(const SqliteStatement& s) {
  Job j;
  j.id = s.columnInt(0);
  j.model = s.columnText(1);
  j.type = s.columnText(2);
  j.prompt = s.columnText(3);
  j.params = nlohmann::json::parse(s.columnText(4), nullptr, false);
  if (j.params.is_discarded()) j.params = nlohmann::json::object();
  j.priority = static_cast<int>(s.columnInt(5));
  j.status = parseJobStatus(s.columnText(6)).value_or(JobStatus::kFailed);
  j.status_message = s.columnText(7);
  j.created_at = s.columnInt(8);
  j.started_at = s.columnOptInt(9);
  j.finished_at = s.columnOptInt(10);
  if (!s.columnIsNull(11)) {
    j.result = nlohmann::json::parse(s.columnText(11), nullptr, false);
    if (j.result.is_discarded()) j.result = nullptr;
  }
  j.error = s.columnText(12);
  j.attempts = static_cast<int>(s.columnInt(13));
  j.lease_owner = s.columnText(14);
  j.lease_expires_at = s.columnOptInt(15);
  j.cancel_requested = s.columnInt(16) != 0;
  return j;
}

// Text stored in the database must be valid UTF-8 JSON; invalid bytes become U+FFFD.
std::string dumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<int> migrate(SqliteDb& db) {
  if (auto r = db.exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                       " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)");
      !r) {
    return statim::fail(r.error());
  }
  auto st = db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  if (!st) return statim::fail(st.error());
  auto row = (*st)->step();
  if (!row) return statim::fail(row.error());
  int current = static_cast<int>((*st)->columnInt(0));
  (*st)->reset();
  for (const Migration& m : kSqliteMigrations) {
    if (m.version <= current) continue;
    if (auto r = db.exec("BEGIN IMMEDIATE"); !r) return statim::fail(r.error());
    auto applied = db.exec(m.sql);
    if (applied) {
      auto ins = db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)");
      if (!ins) return statim::fail(ins.error());
      applied = (*ins)->bind(1, std::int64_t{m.version}).bind(2, std::string_view(m.name)).bind(3, nowMicros()).run();
    }
    if (!applied) {
      (void)db.exec("ROLLBACK");
      return statim::fail(
          Error::storage(std::format("migration {} ({}) failed: {}", m.version, m.name, applied.error().message)));
    }
    if (auto r = db.exec("COMMIT"); !r) return statim::fail(r.error());
    log::info("store: applied migration", {{"version", m.version}, {"name", m.name}});
    current = m.version;
  }
  return current;
}

Result<Job> selectJob(SqliteDb& db, JobId id) {
  auto st = db.prepare(std::format("SELECT {} FROM jobs WHERE id = ?1", kCols));
  if (!st) return statim::fail(st.error());
  auto& s = **st;
  s.bind(1, id);
  auto row = s.step();
  if (!row) return statim::fail(row.error());
  if (!*row) return statim::fail(ErrorCode::kNotFound, std::format("job {} not found", id));
  Job j = rowToJob(s);
  s.reset();
  return j;
}

Error conflict(JobId id, const std::string& owner) {
  return {ErrorCode::kConflict,
          std::format("job {} is not PROCESSING under lease '{}' (lease lost or job finished)", id, owner),
          {}};
}

}  // namespace

struct SqliteJobStore::ReaderLease {
  SqliteJobStore* store;
  std::unique_ptr<SqliteDb> db;
  ReaderLease(SqliteJobStore* s, std::unique_ptr<SqliteDb> d) : store(s), db(std::move(d)) {}
  ReaderLease(ReaderLease&&) = default;
  ~ReaderLease() {
    if (!db) return;
    std::lock_guard lock(store->readers_mu_);
    store->readers_.push_back(std::move(db));
  }
};

Result<std::unique_ptr<SqliteJobStore>> SqliteJobStore::open(const std::filesystem::path& path) {
  auto db = SqliteDb::open(path);
  if (!db) return statim::fail(db.error());
  auto version = migrate(**db);
  if (!version) return statim::fail(version.error());
  return std::unique_ptr<SqliteJobStore>(new SqliteJobStore(path, std::move(*db), *version));
}

SqliteJobStore::SqliteJobStore(std::filesystem::path path, std::unique_ptr<SqliteDb> writer, int version)
    : path_(std::move(path)), writer_db_(std::move(writer)), schema_version_(version) {
  writer_ = std::thread([this] { writerLoop(); });
}

SqliteJobStore::~SqliteJobStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

std::int64_t SqliteJobStore::commitCount() const {
  std::lock_guard lock(mu_);
  return commits_;
}

void SqliteJobStore::enqueue(WriteOp op) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      Error e = Error::storage("job store is closed");
      op.deliver(&e);
      return;
    }
    pending_.push_back(std::move(op));
  }
  cv_.notify_one();
}

void SqliteJobStore::writerLoop() {
  SqliteDb& db = *writer_db_;
  while (true) {
    std::vector<WriteOp> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping and drained
      while (!pending_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    std::vector<std::optional<Error>> op_errors(batch.size());
    std::optional<Error> commit_error;
    if (auto r = db.exec("BEGIN IMMEDIATE"); !r) {
      commit_error = r.error();
    } else {
      for (size_t i = 0; i < batch.size(); ++i) {
        // Prepared once and cached: a savepoint per write would otherwise be parsed every time.
        auto run = [&db](const std::string& sql) {
          if (auto st = db.prepare(sql)) (void)(*st)->run();
        };
        run("SAVEPOINT op");
        bool applied = false;
        try {
          applied = batch[i].apply(db);
        } catch (const std::exception& e) {
          op_errors[i] = Error::internal(std::format("store write failed: {}", e.what()));
        }
        if (!applied) run("ROLLBACK TO op");
        run("RELEASE op");
      }
      if (auto r = db.exec("COMMIT"); !r) {
        commit_error = r.error();
        (void)db.exec("ROLLBACK");
      }
    }
    {
      std::lock_guard lock(mu_);
      ++commits_;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      const Error* err = commit_error ? &*commit_error : op_errors[i] ? &*op_errors[i] : nullptr;
      batch[i].deliver(err);
    }
  }
}

template <typename T, typename Fn>
Result<T> SqliteJobStore::write(Fn fn) {
  std::promise<Result<T>> promise;
  auto future = promise.get_future();
  std::optional<Result<T>> result;
  enqueue({[&](SqliteDb& db) {
             result.emplace(fn(db));
             return result->has_value();
           },
           [&](const Error* err) {
             if (err)
               promise.set_value(std::unexpected(*err));
             else
               promise.set_value(std::move(*result));
           }});
  return future.get();
}

Result<SqliteJobStore::ReaderLease> SqliteJobStore::reader() {
  {
    std::lock_guard lock(readers_mu_);
    if (!readers_.empty()) {
      auto db = std::move(readers_.back());
      readers_.pop_back();
      return ReaderLease(this, std::move(db));
    }
  }
  auto db = SqliteDb::open(path_);
  if (!db) return statim::fail(db.error());
  return ReaderLease(this, std::move(*db));
}

void SqliteJobStore::createAsync(NewJob nj, CreateCallback done) {
  auto job = std::make_shared<Job>();
  job->model = std::move(nj.model);
  job->type = std::move(nj.type);
  job->prompt = std::move(nj.prompt);
  job->params = std::move(nj.params);
  job->priority = nj.priority;
  job->status = JobStatus::kQueued;
  job->status_message = "queued";
  auto error = std::make_shared<std::optional<Error>>();
  enqueue({[job, error](SqliteDb& db) {
             job->created_at = nowMicros();
             auto st = db.prepare(
                 "INSERT INTO jobs (model, type, prompt, params, priority, status, status_message, created_at)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, 'QUEUED', ?6, ?7) RETURNING id");
             if (!st) {
               *error = st.error();
               return false;
             }
             auto& s = **st;
             s.bind(1, job->model)
                 .bind(2, job->type)
                 .bind(3, job->prompt)
                 .bind(4, dumpJson(job->params))
                 .bind(5, std::int64_t{job->priority})
                 .bind(6, job->status_message)
                 .bind(7, job->created_at);
             auto row = s.step();
             if (!row || !*row) {
               *error = row ? Error::storage("insert returned no id") : row.error();
               return false;
             }
             job->id = s.columnInt(0);
             s.reset();
             return true;
           },
           [job, error, done = std::move(done)](const Error* err) {
             if (err)
               done(std::unexpected(*err));
             else if (*error)
               done(std::unexpected(**error));
             else
               done(std::move(*job));
           }});
}

Result<Job> SqliteJobStore::get(JobId id) {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  return selectJob(*lease->db, id);
}

Result<JobPage> SqliteJobStore::list(const JobFilter& f) {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  std::string where = "WHERE 1=1";
  if (f.status) where += " AND status = ?1";
  if (f.model) where += " AND model = ?2";
  JobPage page;
  // One read transaction so the page and the total agree.
  if (auto r = lease->db->exec("BEGIN"); !r) return statim::fail(r.error());
  auto finish = [&](auto result) {
    (void)lease->db->exec("COMMIT");
    return result;
  };
  auto count = lease->db->prepare(std::format("SELECT COUNT(*) FROM jobs {}", where));
  if (!count) return finish(Result<JobPage>(std::unexpected(count.error())));
  auto bindFilter = [&](SqliteStatement& s) {
    if (f.status) s.bind(1, toString(*f.status));
    if (f.model) s.bind(2, *f.model);
  };
  bindFilter(**count);
  if (auto row = (*count)->step(); !row) return finish(Result<JobPage>(std::unexpected(row.error())));
  page.total = (*count)->columnInt(0);
  (*count)->reset();
  auto st = lease->db->prepare(std::format("SELECT {} FROM jobs {} ORDER BY id DESC LIMIT ?3 OFFSET ?4", kCols, where));
  if (!st) return finish(Result<JobPage>(std::unexpected(st.error())));
  bindFilter(**st);
  (*st)->bind(3, std::int64_t{f.limit}).bind(4, std::int64_t{f.offset});
  while (true) {
    auto row = (*st)->step();
    if (!row) return finish(Result<JobPage>(std::unexpected(row.error())));
    if (!*row) break;
    page.jobs.push_back(rowToJob(**st));
  }
  (*st)->reset();
  return finish(Result<JobPage>(std::move(page)));
}

Result<std::optional<Job>> SqliteJobStore::claimNext(const std::string& model, const std::string& owner, Micros lease) {
  return write<std::optional<Job>>([&](SqliteDb& db) -> Result<std::optional<Job>> {
    Micros now = nowMicros();
    auto st =
        db.prepare(std::format("UPDATE jobs SET status = 'PROCESSING', status_message = 'running', started_at = ?1,"
                               " attempts = attempts + 1, lease_owner = ?2, lease_expires_at = ?3"
                               " WHERE id = (SELECT id FROM jobs WHERE model = ?4 AND status = 'QUEUED'"
                               "             ORDER BY priority DESC, id LIMIT 1)"
                               " RETURNING {}",
                               kCols));
    if (!st) return statim::fail(st.error());
    auto& s = **st;
    s.bind(1, now).bind(2, owner).bind(3, now + lease).bind(4, model);
    auto row = s.step();
    if (!row) return statim::fail(row.error());
    std::optional<Job> job;
    if (*row) job = rowToJob(s);
    s.reset();
    return job;
  });
}

Result<bool> SqliteJobStore::heartbeat(JobId id, const std::string& owner, Micros lease) {
  return write<bool>([&](SqliteDb& db) -> Result<bool> {
    auto st = db.prepare(
        "UPDATE jobs SET lease_expires_at = ?1 WHERE id = ?2 AND status = 'PROCESSING' AND lease_owner = ?3"
        " RETURNING cancel_requested");
    if (!st) return statim::fail(st.error());
    auto& s = **st;
    s.bind(1, nowMicros() + lease).bind(2, id).bind(3, owner);
    auto row = s.step();
    if (!row) return statim::fail(row.error());
    if (!*row) return statim::fail(conflict(id, owner));
    bool cancel = s.columnInt(0) != 0;
    s.reset();
    return cancel;
  });
}

// Ends a PROCESSING job held by `owner`; kConflict when it is not (lease lost, already ended).
Result<void> SqliteJobStore::finishProcessing(JobId id, const std::string& owner, std::string_view status,
                                              std::string_view message, const std::optional<std::string>& result,
                                              const std::string& error) {
  return write<void>([&](SqliteDb& db) -> Result<void> {
    auto st = db.prepare(
        "UPDATE jobs SET status = ?1, status_message = ?2, result = ?3, error = ?4, finished_at = ?5,"
        " lease_owner = '', lease_expires_at = NULL WHERE id = ?6 AND status = 'PROCESSING' AND lease_owner = ?7");
    if (!st) return statim::fail(st.error());
    auto& s = **st;
    s.bind(1, status).bind(2, message).bind(4, error).bind(5, nowMicros()).bind(6, id).bind(7, owner);
    if (result) s.bind(3, *result);
    if (auto r = s.run(); !r) return r;
    if (db.changes() == 0) return statim::fail(conflict(id, owner));
    return ok();
  });
}

Result<void> SqliteJobStore::complete(JobId id, const std::string& owner, const nlohmann::json& result) {
  return finishProcessing(id, owner, "COMPLETED", "completed", dumpJson(result), "");
}

Result<void> SqliteJobStore::fail(JobId id, const std::string& owner, const std::string& error) {
  return finishProcessing(id, owner, "FAILED", "failed", std::nullopt, error);
}

Result<void> SqliteJobStore::finishCancelled(JobId id, const std::string& owner, const nlohmann::json& partial) {
  std::optional<std::string> text;
  if (!partial.is_null()) text = dumpJson(partial);
  return finishProcessing(id, owner, "CANCELLED", "cancelled while running", text, "");
}

Result<CancelOutcome> SqliteJobStore::requestCancel(JobId id) {
  return write<CancelOutcome>([&](SqliteDb& db) -> Result<CancelOutcome> {
    // One transaction: read the status, then change it according to what it was.
    auto select = [&] { return selectJob(db, id); };
    auto before = select();
    if (!before) return statim::fail(before.error());
    const char* sql = nullptr;
    if (before->status == JobStatus::kQueued) {
      sql =
          "UPDATE jobs SET status = 'CANCELLED', status_message = 'cancelled before it started',"
          " finished_at = ?2 WHERE id = ?1";
    } else if (before->status == JobStatus::kProcessing) {
      sql = "UPDATE jobs SET cancel_requested = 1, status_message = 'cancelling' WHERE id = ?1 AND ?2 > 0";
    }
    if (!sql) return CancelOutcome{*before, before->status};
    auto st = db.prepare(sql);
    if (!st) return statim::fail(st.error());
    if (auto r = (*st)->bind(1, id).bind(2, nowMicros()).run(); !r) return statim::fail(r.error());
    auto after = select();
    if (!after) return statim::fail(after.error());
    return CancelOutcome{std::move(*after), before->status};
  });
}

Result<RequeueReport> SqliteJobStore::requeueAbandoned(Micros expired_before, int max_attempts) {
  return write<RequeueReport>([&](SqliteDb& db) -> Result<RequeueReport> {
    RequeueReport report;
    auto collect = [&](const std::string& sql, std::vector<JobId>& out) -> Result<void> {
      auto st = db.prepare(sql);
      if (!st) return statim::fail(st.error());
      (*st)->bind(1, expired_before).bind(2, std::int64_t{max_attempts}).bind(3, nowMicros());
      while (true) {
        auto row = (*st)->step();
        if (!row) return statim::fail(row.error());
        if (!*row) break;
        out.push_back((*st)->columnInt(0));
      }
      (*st)->reset();
      return ok();
    };
    auto failed = collect(
        "UPDATE jobs SET status = 'FAILED', status_message = 'failed', finished_at = ?3,"
        " error = 'abandoned: the worker running this job stopped ' || attempts || ' times"
        " (jobs.max_attempts = ' || ?2 || ')', lease_owner = '', lease_expires_at = NULL"
        " WHERE status = 'PROCESSING' AND lease_expires_at < ?1 AND attempts >= ?2 RETURNING id",
        report.failed);
    if (!failed) return statim::fail(failed.error());
    auto requeued = collect(
        "UPDATE jobs SET status = 'QUEUED', status_message = 'requeued: the worker running it stopped"
        " (attempt ' || attempts || ' of ' || ?2 || ' used)', lease_owner = '', lease_expires_at = NULL"
        " WHERE status = 'PROCESSING' AND lease_expires_at < ?1 AND attempts < ?2 AND ?3 > 0 RETURNING id",
        report.requeued);
    if (!requeued) return statim::fail(requeued.error());
    return report;
  });
}

Result<std::map<std::string, std::int64_t>> SqliteJobStore::queuedByModel() {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  auto st = lease->db->prepare("SELECT model, COUNT(*) FROM jobs WHERE status = 'QUEUED' GROUP BY model");
  if (!st) return statim::fail(st.error());
  std::map<std::string, std::int64_t> out;
  while (true) {
    auto row = (*st)->step();
    if (!row) return statim::fail(row.error());
    if (!*row) break;
    out[(*st)->columnText(0)] = (*st)->columnInt(1);
  }
  (*st)->reset();
  return out;
}

}  // namespace statim
