#include "store/postgres/postgres_store.h"

#include <algorithm>
#include <chrono>
#include <format>

#include "core/logging.h"
#include "core/thread_name.h"
#include "store/migrations/migration.h"

namespace statim {
namespace {

constexpr size_t kMaxBatch = 128;
constexpr int kDeadlockRetries = 3;
// pg_advisory_lock key of the migrations (any constant no other application of the database uses).
constexpr std::int64_t kMigrationLock = 0x73746174696d;  // "statim"

bool retryable(const PgConn& c) { return c.lastSqlState() == kPgDeadlock || c.lastSqlState() == kPgSerialization; }

Result<int> migrate(PgConn& conn) {
  if (auto r = conn.exec("SELECT pg_advisory_lock($1)", PgParams(kMigrationLock)); !r) return statim::fail(r.error());
  auto unlock = [&] { (void)conn.exec("SELECT pg_advisory_unlock($1)", PgParams(kMigrationLock)); };
  auto body = [&]() -> Result<int> {
    if (auto r = conn.run("CREATE TABLE IF NOT EXISTS statim_migrations (version integer PRIMARY KEY,"
                          " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
        !r) {
      return statim::fail(r.error());
    }
    auto cur = conn.exec("SELECT COALESCE(max(version), 0) FROM statim_migrations");
    if (!cur) return statim::fail(cur.error());
    int version = static_cast<int>(cur->int64(0, 0));
    int known = kPostgresMigrations.empty() ? 0 : kPostgresMigrations.back().version;
    if (version > known) {
      return statim::fail(ErrorCode::kStorage,
                          std::format("the database's schema is version {}, newer than this statim knows ({}): "
                                      "upgrade statim on this node",
                                      version, known));
    }
    for (const Migration& m : kPostgresMigrations) {
      if (m.version <= version) continue;
      auto applied = [&]() -> Result<void> {
        if (auto r = conn.run("BEGIN"); !r) return r;
        if (auto r = conn.run(m.sql); !r) return r;
        if (auto r =
                conn.exec("INSERT INTO statim_migrations (version, name) VALUES ($1, $2)", PgParams(m.version, m.name));
            !r) {
          return statim::fail(r.error());
        }
        return conn.run("COMMIT");
      }();
      if (!applied) {
        (void)conn.run("ROLLBACK");
        return statim::fail(ErrorCode::kStorage,
                            std::format("migration {} ({}) failed: {}", m.version, m.name, applied.error().message));
      }
      log::info("store: migrated", {{"version", m.version}, {"name", m.name}});
      version = m.version;
    }
    return version;
  };
  auto version = body();
  unlock();
  return version;
}

}  // namespace

Result<std::unique_ptr<PostgresStore>> PostgresStore::open(PostgresStoreOptions options) {
  auto conn = PgConn::connect(options.url);
  if (!conn) return statim::fail(conn.error());
  auto version = migrate(**conn);
  if (!version) return statim::fail(version.error());
  std::error_code ec;
  std::filesystem::create_directories(options.files_dir, ec);
  if (ec) {
    return statim::fail(ErrorCode::kStorageUnavailable,
                        std::format("cannot create the files dir {}: {}", options.files_dir.string(), ec.message()));
  }
  std::vector<std::unique_ptr<PgConn>> writers;
  writers.push_back(std::move(*conn));
  for (int i = 1; i < std::max(1, options.writers); ++i) {
    auto c = PgConn::connect(options.url);
    if (!c) return statim::fail(c.error());
    writers.push_back(std::move(*c));
  }
  auto store = std::unique_ptr<PostgresStore>(new PostgresStore(std::move(options), *version));
  store->writer_conns_ = std::move(writers);
  for (auto& c : store->writer_conns_) {
    store->writers_.emplace_back([s = store.get(), c = c.get()] { s->writerLoop(*c); });
  }
  return store;
}

PostgresStore::PostgresStore(PostgresStoreOptions options, int version)
    : options_(std::move(options)), blobs_(options_.files_dir), schema_version_(version) {}

PostgresStore::~PostgresStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : writers_) t.join();
}

void PostgresStore::enqueue(WriteOp op) {
  {
    std::lock_guard lock(mu_);
    pending_.push_back(std::move(op));
  }
  cv_.notify_one();
}

std::int64_t PostgresStore::commitCount() const {
  std::lock_guard lock(mu_);
  return commits_;
}

std::optional<Error> PostgresStore::writeProblem() const {
  std::lock_guard lock(mu_);
  return write_problem_;
}

void PostgresStore::writerLoop(PgConn& conn) {
  nameThisThread("store-writer");
  while (true) {
    std::vector<WriteOp> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, drained
      while (!pending_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    runBatch(conn, batch);
  }
}

void PostgresStore::runBatch(PgConn& conn, std::vector<WriteOp>& batch) {
  // Nothing is committed before COMMIT: a connection lost earlier reruns the whole batch once on
  // a new connection (a server restart, a terminated backend, an idle connection gone stale).
  std::optional<Error> commit_error;
  bool commit_sent = false;  // after which a lost connection may have committed the batch
  for (int round = 0; round < 2; ++round) {
    commit_error.reset();
    if (!conn.healthy()) {
      if (auto r = conn.reset(); !r) {
        commit_error = r.error();
        break;
      }
    }
    // Fast path: no savepoints (one round trip less per write). When a write fails, the batch is
    // rolled back and, unless that write was alone, run again with a SAVEPOINT around each.
    auto plain = [&]() -> Result<bool> {
      // Not on a connection that has been quiet for a while: if it was dropped on the way without
      // a word, a batch sent whole could not tell whether its COMMIT ran, and would not be run
      // again; sent in two trips, it fails before its COMMIT and runs again on a new connection.
      bool lively = std::chrono::steady_clock::now() - conn.lastAnswer() < options_.quiet_connection;
      if (lively && std::ranges::all_of(batch, [](const WriteOp& op) { return op.one != nullptr; })) {
        return runInOneTrip(conn, batch, commit_sent);
      }
      conn.beginWithNext();  // with the first write's first statement
      for (auto& op : batch) {
        if (auto r = op.apply(conn); !r) {
          if (!conn.healthy()) return std::unexpected(r.error());
          return false;
        }
      }
      commit_sent = true;
      if (auto r = conn.run("COMMIT"); !r) return std::unexpected(r.error());
      return true;
    };
    auto guarded = [&]() -> Result<void> {
      if (auto r = conn.run("BEGIN; SAVEPOINT op"); !r) return r;
      for (size_t i = 0; i < batch.size(); ++i) {
        if (i > 0) {
          if (auto r = conn.run("RELEASE SAVEPOINT op; SAVEPOINT op"); !r) return r;
        }
        for (int tries = 0;; ++tries) {
          auto r = batch[i].apply(conn);
          if (r) break;
          if (!conn.healthy()) return r;
          bool again = retryable(conn) && tries < kDeadlockRetries;
          if (auto rb = conn.run("ROLLBACK TO SAVEPOINT op"); !rb) return rb;
          if (!again) break;  // this op failed: its result carries the error
        }
      }
      commit_sent = true;
      return conn.run("COMMIT");
    };
    auto attempt = [&]() -> Result<void> {
      for (int tries = 0;; ++tries) {
        auto fast = plain();
        if (!fast) return std::unexpected(fast.error());
        if (*fast) return ok();
        bool again = retryable(conn) && tries < kDeadlockRetries;
        if (auto rb = conn.run("ROLLBACK"); !rb) return rb;
        if (again) continue;
        // A write alone failed: nothing to commit, its result carries the error.
        if (batch.size() == 1) return ok();
        return guarded();
      }
    }();
    if (attempt) break;
    commit_error = attempt.error();
    bool lost = !conn.healthy();
    if (!lost) (void)conn.run("ROLLBACK");
    // A COMMIT that was sent may have committed: only a batch that failed before it is rerun.
    if (!lost || round == 1 || commit_sent) break;
    log::warn("store: PostgreSQL connection lost, reconnecting", {{"error", commit_error->message}});
  }
  {
    std::lock_guard lock(mu_);
    if (!commit_error) {
      ++commits_;
      write_problem_.reset();
    } else if (commit_error->code == ErrorCode::kStorageUnavailable) {
      write_problem_ = commit_error;
    }
  }
  if (commit_error) log::error("store: PostgreSQL write failed", {{"error", commit_error->message}});
  for (auto& op : batch) op.deliver(commit_error ? &*commit_error : nullptr);
}

PostgresStore::WriteOp PostgresStore::writeOf(std::shared_ptr<OneStatement> one,
                                              std::function<void(const Error*)> deliver) {
  auto apply = [one](PgConn& c) -> Result<void> {
    auto s = one->build();
    return one->take(c.exec(s.sql, s.params));
  };
  return {std::move(apply), std::move(deliver), std::move(one)};
}

Result<bool> PostgresStore::runInOneTrip(PgConn& conn, std::vector<WriteOp>& batch, bool& maybe_committed) {
  std::vector<PgStatement> statements;
  statements.reserve(batch.size());
  for (auto& op : batch) statements.push_back(op.one->build());
  auto results = conn.transaction(statements, &maybe_committed);
  if (!results) return std::unexpected(results.error());
  bool all_ran = std::ranges::all_of(*results, [](const Result<PgResult>& r) { return r.has_value(); });
  if (!all_ran && !conn.healthy()) {
    // The failed statement ended the connection (a server shutdown): that is the batch's error.
    auto failed = std::ranges::find_if(*results, [](const Result<PgResult>& r) { return !r.has_value(); });
    return std::unexpected(failed->error());
  }
  // Each write's answer (a refusal is its own). After a failed statement a batch of several runs
  // again write by write, which answers; a write alone has its error for an answer.
  if (all_ran || batch.size() == 1) {
    for (size_t i = 0; i < batch.size(); ++i) (void)batch[i].one->take(std::move((*results)[i]));
  }
  return all_ran;
}

PostgresStore::ReaderLease::~ReaderLease() {
  if (!conn) return;
  std::lock_guard lock(store->readers_mu_);
  if (conn->healthy()) {
    store->idle_readers_.push_back(std::move(conn));
  } else {
    --store->open_readers_;  // dropped: the next lease opens a new one
  }
  store->readers_cv_.notify_one();
}

Result<PostgresStore::ReaderLease> PostgresStore::reader() {
  {
    std::unique_lock lock(readers_mu_);
    readers_cv_.wait(lock, [&] { return !idle_readers_.empty() || open_readers_ < options_.max_readers; });
    if (!idle_readers_.empty()) {
      auto c = std::move(idle_readers_.back());
      idle_readers_.pop_back();
      return ReaderLease(this, std::move(c));
    }
    ++open_readers_;
  }
  // Reads commit nothing; a claim (statement()) need not wait for the WAL flush.
  auto c = PgConn::connect(options_.url, std::string(kPgNoFlushWait));
  if (!c) {
    std::lock_guard lock(readers_mu_);
    --open_readers_;
    readers_cv_.notify_one();
    return statim::fail(c.error());
  }
  return ReaderLease(this, std::move(*c));
}

void PostgresStore::dropIdleReaders() {
  std::vector<std::unique_ptr<PgConn>> stale;
  {
    std::lock_guard lock(readers_mu_);
    stale.swap(idle_readers_);
    open_readers_ -= static_cast<int>(stale.size());
  }
  readers_cv_.notify_all();
}

Result<PgResult> PostgresStore::query(std::string_view sql, const PgParams& params) {
  return read<PgResult>([&](PgConn& c) { return c.exec(sql, params); });
}

}  // namespace statim
