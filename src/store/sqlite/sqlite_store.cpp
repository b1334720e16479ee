#include "store/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <format>
#include <string>
#include <utility>

#include "core/clock.h"
#include "core/logging.h"
#include "core/thread_name.h"
#include "store/migrations/migration.h"

namespace statim {
namespace {

constexpr size_t kMaxBatch = 1024;
constexpr auto kProbeInterval = std::chrono::seconds(1);

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

}  // namespace

SqliteStore::ReaderLease::ReaderLease(ReaderLease&& other) noexcept
    : store(other.store), db(std::move(other.db)), read_only(std::exchange(other.read_only, false)) {}

SqliteStore::ReaderLease::~ReaderLease() {
  if (!db && !read_only) return;  // moved from (or an ordinary connection that failed to open)
  std::lock_guard lock(store->readers_mu_);
  // A read-only connection is not kept once the store can write (or is about to).
  if (db && read_only == store->readers_read_only_ && !store->switching_) store->readers_.push_back(std::move(db));
  // Closed before it stops being counted: the writer waits for the count to reach zero, and a
  // read-only connection still open would hand its read-only view of the WAL index to the writer.
  db.reset();
  if (read_only) {
    --store->read_only_leased_;
    store->readers_cv_.notify_all();
  }
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::filesystem::path& path) {
  auto db = SqliteDb::open(path);
  if (!db) {
    std::error_code ec;
    if (db.error().code != ErrorCode::kStorageUnavailable || !std::filesystem::exists(path, ec)) {
      return statim::fail(db.error());
    }
    return openReadOnly(path, db.error());
  }
  auto version = migrate(**db);
  if (!version) return statim::fail(version.error());
  return std::unique_ptr<SqliteStore>(new SqliteStore(path, std::move(*db), *version));
}

// The data dir cannot be written (a read-only mount, permissions): what is stored is served, every
// write fails with `why`, and the writer opens the database for writing once the probe passes.
Result<std::unique_ptr<SqliteStore>> SqliteStore::openReadOnly(const std::filesystem::path& path, const Error& why) {
  auto db = SqliteDb::openReadOnly(path);
  if (!db) return statim::fail(why);
  auto st = (*db)->prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  if (!st) return statim::fail(st.error());
  auto row = (*st)->step();
  if (!row) return statim::fail(row.error());
  int version = static_cast<int>((*st)->columnInt(0));
  (*st)->reset();
  int latest = kSqliteMigrations.empty() ? 0 : kSqliteMigrations.back().version;
  if (version < latest) {
    return statim::fail(Error{why.code,
                              std::format("{} (and its schema, version {}, must be migrated to {} before it can be "
                                          "served)",
                                          why.message, version, latest),
                              {}});
  }
  log::warn("store: the data dir cannot be written: serving what is stored, refusing writes until it can",
            {{"path", path.string()}, {"error", why.message}});
  return std::unique_ptr<SqliteStore>(new SqliteStore(path, nullptr, version, std::move(*db), why));
}

SqliteStore::SqliteStore(std::filesystem::path path, std::unique_ptr<SqliteDb> writer, int version,
                         std::unique_ptr<SqliteDb> read_only_reader, std::optional<Error> write_problem)
    : path_(std::move(path)),
      blobs_(path_.parent_path() / "files"),
      writer_db_(std::move(writer)),
      schema_version_(version),
      write_problem_(std::move(write_problem)) {
  if (read_only_reader) {
    readers_read_only_ = true;
    readers_.push_back(std::move(read_only_reader));
  }
  writer_ = std::thread([this] { writerLoop(); });
}

SqliteStore::~SqliteStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

std::int64_t SqliteStore::commitCount() const {
  std::lock_guard lock(mu_);
  return commits_;
}

void SqliteStore::enqueue(WriteOp op) {
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

void SqliteStore::writerLoop() {
  nameThisThread("store-writer");
  while (true) {
    std::vector<WriteOp> batch;
    bool probe = false;
    {
      std::unique_lock lock(mu_);
      auto wake = [&] { return stopping_ || !pending_.empty(); };
      // While writes fail for the disk, wake at least every kProbeInterval to probe it.
      if (write_problem_) {
        cv_.wait_for(lock, kProbeInterval, wake);
      } else {
        cv_.wait(lock, wake);
      }
      if (stopping_ && pending_.empty()) return;  // stopping and drained
      probe = write_problem_ && std::chrono::steady_clock::now() - last_probe_ >= kProbeInterval;
      while (!pending_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    if (probe) {
      // Only a probe clears the problem: small writes may still fit on a nearly full disk.
      last_probe_ = std::chrono::steady_clock::now();
      if (probeWrite() && openWriter()) {
        std::lock_guard lock(mu_);
        log::info("store: the data dir takes writes again", {{"was", write_problem_->message}});
        write_problem_.reset();
      }
    }
    if (batch.empty()) continue;
    if (!writer_db_) {
      // Opened read-only: nothing can be written until the probe passes.
      Error e = *writeProblem();
      for (auto& op : batch) op.deliver(&e);
      continue;
    }
    SqliteDb& db = *writer_db_;
    // See Sync: a batch with one kFsync write is fsynced at its commit, and so is all before it.
    bool lazy = std::ranges::all_of(batch, [](const WriteOp& op) { return op.sync != Sync::kFsync; });
    bool flush_after = std::ranges::any_of(batch, [](const WriteOp& op) { return op.sync == Sync::kAfterDelivery; });
    std::optional<Error> commit_error;
    if (lazy != writer_lazy_) {
      if (auto r = db.exec(lazy ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL"); r) {
        writer_lazy_ = lazy;
      } else if (!lazy) {
        commit_error = r.error();  // never commit a write that must be fsynced without it
      }
    }
    std::vector<std::optional<Error>> op_errors(batch.size());    // delivered (exceptions)
    std::vector<std::optional<Error>> op_failures(batch.size());  // delivered by the op itself
    if (commit_error) {
      // as below: nothing of the batch ran
    } else if (auto r = db.exec("BEGIN IMMEDIATE"); !r) {
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
          auto r = batch[i].apply(db);
          applied = r.has_value();
          if (!r) op_failures[i] = r.error();
        } catch (const std::exception& e) {
          op_errors[i] = Error::internal(std::format("store write failed: {}", e.what()));
        }
        if (!applied) run("ROLLBACK TO op");
        run("RELEASE op");
        if (!db.inTransaction()) {
          // SQLite rolled the whole batch back (a full disk, an I/O error): nothing of it is
          // stored, and the ops after this one must not run outside the transaction.
          commit_error = op_failures[i] ? *op_failures[i] : Error::storage("the write transaction was rolled back");
          break;
        }
      }
      if (!commit_error) {
        if (auto r = db.exec("COMMIT"); !r) {
          commit_error = r.error();
          (void)db.exec("ROLLBACK");
        }
      }
    }
    {
      std::lock_guard lock(mu_);
      ++commits_;
      // A full or unwritable disk fails the commit, or already a statement of one write.
      auto disk = [](const std::optional<Error>& e) {
        return e && (e->code == ErrorCode::kStorageFull || e->code == ErrorCode::kStorageUnavailable);
      };
      const std::optional<Error>* disk_error = disk(commit_error) ? &commit_error : nullptr;
      for (size_t i = 0; !disk_error && i < op_failures.size(); ++i) {
        if (disk(op_failures[i])) disk_error = &op_failures[i];
      }
      if (disk_error && !write_problem_) log::error("store: writes fail", {{"error", (*disk_error)->message}});
      if (disk_error) write_problem_ = **disk_error;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      const Error* err = commit_error ? &*commit_error : op_errors[i] ? &*op_errors[i] : nullptr;
      batch[i].deliver(err);
    }
    // See Sync::kAfterDelivery (a batch committed at synchronous=FULL was flushed by its commit).
    if (flush_after && lazy && !commit_error) {
      if (auto r = db.syncLog(); !r)
        log::error("store: cannot flush the write-ahead log", {{"error", r.error().message}});
    }
  }
}

std::optional<Error> SqliteStore::writeProblem() const {
  std::lock_guard lock(mu_);
  return write_problem_;
}

void SqliteStore::syncAsync(std::function<void(Result<void>)> done) {
  // On the writer, after every commit before it: it flushes them (its own batch needs no flush).
  writeAsync<void>([](SqliteDb& db) { return db.syncLog(); }, std::move(done), Sync::kLater);
}

// A 1 MiB write beside the database, synced and removed: the disk has room again (a margin
// over what one batch of jobs takes) and takes writes.
bool SqliteStore::probeWrite() {
  auto probe = path_.parent_path() / ".statim-write-probe";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  std::string page(1 << 20, '\0');
  bool ok = ::write(fd, page.data(), page.size()) == static_cast<ssize_t>(page.size()) && ::fsync(fd) == 0;
  ::close(fd);
  ::unlink(probe.c_str());
  return ok;
}

// After a read-only start: opens the database for writing (and migrates it), and from then on
// hands out ordinary readers. Writer thread only. The read-only connections are closed first:
// SQLite shares one view of a WAL file's index between the connections of a process, and the
// view opened read-only would keep the writer from writing.
bool SqliteStore::openWriter() {
  if (writer_db_) return true;
  std::unique_lock lock(readers_mu_);
  switching_ = true;
  readers_.clear();
  readers_cv_.wait(lock, [this] { return read_only_leased_ == 0; });
  auto db = SqliteDb::open(path_);
  Result<int> version = db ? migrate(**db) : Result<int>(statim::fail(db.error()));
  if (version) {
    // Opening and an up-to-date schema write nothing: take the write lock once, so a connection
    // that cannot write yet is found here rather than by the first job.
    if (auto r = (*db)->exec("BEGIN IMMEDIATE"); !r) {
      version = statim::fail(r.error());
    } else {
      (void)(*db)->exec("ROLLBACK");
    }
  }
  switching_ = false;
  readers_cv_.notify_all();
  if (!version) {
    // Tried every second while it fails (the data dir takes writes, the database does not):
    // said once per distinct error.
    if (version.error().message != last_open_error_) {
      log::error("store: cannot open the database for writing", {{"error", version.error().message}});
      last_open_error_ = version.error().message;
    }
    return false;
  }
  writer_db_ = std::move(*db);
  writer_lazy_ = false;  // a new connection: synchronous=FULL
  readers_read_only_ = false;
  return true;
}

Result<SqliteStore::ReaderLease> SqliteStore::reader() {
  bool read_only;
  {
    std::unique_lock lock(readers_mu_);
    readers_cv_.wait(lock, [this] { return !switching_; });
    read_only = readers_read_only_;
    if (read_only) ++read_only_leased_;
    if (!readers_.empty()) {
      auto db = std::move(readers_.back());
      readers_.pop_back();
      return ReaderLease(this, std::move(db), read_only);
    }
  }
  auto db = read_only ? SqliteDb::openReadOnly(path_) : SqliteDb::open(path_, /*for_reading=*/true);
  // The lease counts the connection (read-only ones) until it is gone, opened or not.
  ReaderLease lease(this, db ? std::move(*db) : nullptr, read_only);
  if (!db) return statim::fail(db.error());
  return lease;
}

}  // namespace statim
