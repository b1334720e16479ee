#include "store/sqlite/sqlite_db.h"

#include <format>

#include <sqlite3.h>

namespace statim {

Error sqliteError(int extended_code, std::string_view message) {
  switch (extended_code & 0xff) {
    case SQLITE_FULL:
      return {
          ErrorCode::kStorageFull,
          std::format("the data dir's disk is full, so nothing was stored ({}); free some space and retry", message),
          {}};
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
      return {ErrorCode::kStorageUnavailable,
              std::format("the database cannot be written ({}): is the data dir read-only or failing? Nothing "
                          "was stored",
                          message),
              {}};
    default: return Error::storage(std::format("sqlite: {}", message));
  }
}

SqliteStatement& SqliteStatement::bind(int index, std::int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

SqliteStatement& SqliteStatement::bind(int index, std::string_view value) {
  sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  return *this;
}

SqliteStatement& SqliteStatement::bind(int index, std::optional<std::int64_t> value) {
  if (value) return bind(index, *value);
  sqlite3_bind_null(stmt_, index);
  return *this;
}

SqliteStatement& SqliteStatement::bindDouble(int index, double value) {
  sqlite3_bind_double(stmt_, index, value);
  return *this;
}

double SqliteStatement::columnDouble(int col) const { return sqlite3_column_double(stmt_, col); }

Result<void> SqliteStatement::forEachRow(const std::function<void(const SqliteStatement&)>& fn) {
  while (true) {
    auto row = step();
    if (!row) {
      reset();
      return fail(row.error());
    }
    if (!*row) break;
    fn(*this);
  }
  reset();
  return ok();
}

Result<bool> SqliteStatement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3* db = sqlite3_db_handle(stmt_);
  return fail(sqliteError(sqlite3_extended_errcode(db), sqlite3_errmsg(db)));
}

Result<void> SqliteStatement::run() {
  while (true) {
    auto r = step();
    if (!r) return fail(r.error());
    if (!*r) return ok();
  }
}

std::int64_t SqliteStatement::columnInt(int col) const { return sqlite3_column_int64(stmt_, col); }

std::string SqliteStatement::columnText(int col) const {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
}

bool SqliteStatement::columnIsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

std::optional<std::int64_t> SqliteStatement::columnOptInt(int col) const {
  if (columnIsNull(col)) return std::nullopt;
  return columnInt(col);
}

void SqliteStatement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

void SqliteDb::StmtDeleter::operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }

Result<std::unique_ptr<SqliteDb>> SqliteDb::open(const std::filesystem::path& path, bool for_reading) {
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<SqliteDb> db(new SqliteDb(raw));
  if (rc != SQLITE_OK) {
    return fail(sqliteError(
        rc, std::format("cannot open database {}: {}", path.string(), raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc))));
  }
  sqlite3_busy_timeout(raw, 10000);
  // FULL: a commit is on disk when it returns (WAL mode fsyncs the log at each commit).
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    if (auto r = db->exec(pragma); !r) return fail(r.error());
  }
  // SQLite falls back to reading a file it may not write (a read-only mount) without saying so.
  if (!for_reading && sqlite3_db_readonly(raw, "main") == 1) {
    return fail(sqliteError(SQLITE_READONLY, std::format("{} can only be opened read-only", path.string())));
  }
  return db;
}

namespace {

// A path as the path of a file: URI (RFC 3986 percent-encoding of what SQLite would misread).
std::string fileUri(const std::filesystem::path& path) {
  std::string uri = "file:";
  for (unsigned char c : path.string()) {
    if (c == '?' || c == '#' || c == '%' || c < 0x20 || c >= 0x7f) {
      uri += std::format("%{:02X}", c);
    } else {
      uri += static_cast<char>(c);
    }
  }
  return uri;
}

}  // namespace

Result<std::unique_ptr<SqliteDb>> SqliteDb::openReadOnly(const std::filesystem::path& path) {
  // A WAL database can be read where nothing may be written only if its -wal and -shm files are
  // there (the last writer did not close cleanly) or if it is opened as immutable (it closed
  // cleanly: everything is in the main file). The first keeps what only the -wal holds.
  std::string last_error;
  for (const char* params : {"?mode=ro", "?mode=ro&immutable=1"}) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2((fileUri(path) + params).c_str(), &raw,
                             SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, nullptr);
    std::unique_ptr<SqliteDb> db(new SqliteDb(raw));
    if (rc != SQLITE_OK) {
      last_error = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
      continue;
    }
    sqlite3_busy_timeout(raw, 10000);
    if (auto r = db->exec("SELECT COUNT(*) FROM sqlite_schema"); !r) {
      last_error = r.error().message;
      continue;
    }
    return db;
  }
  return fail(sqliteError(SQLITE_CANTOPEN, std::format("cannot read database {}: {}", path.string(), last_error)));
}

SqliteDb::~SqliteDb() {
  cache_.clear();
  sqlite3_close_v2(db_);
}

bool SqliteDb::inTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

Result<void> SqliteDb::syncLog() {
  sqlite3_file* log = nullptr;
  if (sqlite3_file_control(db_, "main", SQLITE_FCNTL_JOURNAL_POINTER, &log) != SQLITE_OK) {
    return fail(Error::storage(std::format("cannot reach the write-ahead log: {}", lastError())));
  }
  // No log open yet: nothing was written through this connection, so nothing is waiting for a flush.
  if (!log || !log->pMethods) return ok();
  if (int rc = log->pMethods->xSync(log, SQLITE_SYNC_FULL); rc != SQLITE_OK) {
    return fail(Error::storage(std::format("cannot flush the write-ahead log: {}", sqlite3_errstr(rc))));
  }
  return ok();
}

Result<void> SqliteDb::exec(std::string_view sql) {
  char* err = nullptr;
  std::string s(sql);
  if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    return fail(sqliteError(sqlite3_extended_errcode(db_), msg));
  }
  return ok();
}

Result<SqliteStatement*> SqliteDb::prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) !=
        SQLITE_OK) {
      return fail(Error::storage(std::format("sqlite prepare: {}", sqlite3_errmsg(db_))));
    }
    it = cache_.emplace(sql, std::pair{std::unique_ptr<sqlite3_stmt, StmtDeleter>(stmt), SqliteStatement(stmt)}).first;
  }
  it->second.second.reset();
  return &it->second.second;
}

std::int64_t SqliteDb::changes() const { return sqlite3_changes64(db_); }

std::string SqliteDb::lastError() const { return sqlite3_errmsg(db_); }

}  // namespace statim
