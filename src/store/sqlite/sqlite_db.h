// Thin RAII wrapper over the sqlite3 C API: a connection with a cache of prepared statements.
// Not thread-safe: one SqliteDb is used by one thread at a time (the store hands them out).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "statim/error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace statim {

// An SQLite failure as a statim error: a full disk is kStorageFull, a database that cannot be
// written (read-only, I/O error, permissions) kStorageUnavailable, anything else kStorage.
Error sqliteError(int extended_code, std::string_view message);

class SqliteStatement {
 public:
  explicit SqliteStatement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  // Binds by 1-based index; empty optionals bind NULL.
  SqliteStatement& bind(int index, std::int64_t value);
  SqliteStatement& bind(int index, std::string_view value);
  SqliteStatement& bind(int index, std::optional<std::int64_t> value);
  SqliteStatement& bindDouble(int index, double value);
  // Steps once: true when a row is available, false when done.
  Result<bool> step();
  // Steps to the end, for statements that return no rows.
  Result<void> run();
  // Steps through every row, calling `fn` on each, then resets the statement.
  Result<void> forEachRow(const std::function<void(const SqliteStatement&)>& fn);
  std::int64_t columnInt(int col) const;
  std::string columnText(int col) const;
  bool columnIsNull(int col) const;
  std::optional<std::int64_t> columnOptInt(int col) const;
  double columnDouble(int col) const;
  // Makes the cached statement reusable (clears bindings). Called by SqliteDb::prepare.
  void reset();

 private:
  sqlite3_stmt* stmt_;
};

class SqliteDb {
 public:
  // Opens (creating if needed) the database and applies the connection pragmas
  // (WAL, synchronous=FULL, busy timeout).
  // A database that can only be read (a read-only mount) fails with kStorageUnavailable, unless
  // `for_reading` (a reader connection beside a writer: it only reads).
  static Result<std::unique_ptr<SqliteDb>> open(const std::filesystem::path& path, bool for_reading = false);
  // Opens an existing database for reading only, where nothing may be written.
  static Result<std::unique_ptr<SqliteDb>> openReadOnly(const std::filesystem::path& path);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  Result<void> exec(std::string_view sql);
  // Returns a cached, reset statement for `sql` (owned by this connection).
  Result<SqliteStatement*> prepare(const std::string& sql);
  std::int64_t changes() const;
  std::string lastError() const;
  // False once SQLite has rolled a transaction back by itself (a full disk, an I/O error).
  bool inTransaction() const;
  // Flushes the write-ahead log to disk: every commit so far is then durable, those made at
  // synchronous=NORMAL included (which SQLite itself flushes only at the next checkpoint).
  Result<void> syncLog();

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  struct StmtDeleter {
    void operator()(sqlite3_stmt* s) const;
  };
  std::unordered_map<std::string, std::pair<std::unique_ptr<sqlite3_stmt, StmtDeleter>, SqliteStatement>> cache_;
};

}  // namespace statim
