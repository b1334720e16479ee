// Thin RAII wrapper over libpq (the C client, already a runtime dependency through Drogon): a
// connection with a cache of prepared statements, text parameters and typed reads of results.
// Not thread-safe: one PgConn is used by one thread at a time (the store hands them out).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "statim/error.h"

struct pg_conn;
struct pg_result;

namespace statim {

// SQLSTATEs the store acts on.
inline constexpr std::string_view kPgUniqueViolation = "23505";
inline constexpr std::string_view kPgDeadlock = "40P01";
inline constexpr std::string_view kPgSerialization = "40001";
// The session setup of connections whose commits need not wait for the WAL flush (claims,
// notifications): a crash of the database server may undo their last commits.
inline constexpr std::string_view kPgNoFlushWait = "SET synchronous_commit = off";

// Query parameters, sent as text; an empty optional is NULL.
class PgParams {
 public:
  PgParams() = default;
  template <typename... Ts>
  explicit PgParams(const Ts&... values) {
    (add(values), ...);
  }
  PgParams& add(std::int64_t v) { return push(std::to_string(v)); }
  PgParams& add(int v) { return push(std::to_string(v)); }
  PgParams& add(bool v) { return push(v ? "t" : "f"); }
  PgParams& add(double v);
  PgParams& add(std::string_view v) { return push(std::string(v)); }
  PgParams& add(const std::string& v) { return push(v); }
  PgParams& add(const char* v) { return push(v); }
  PgParams& add(std::nullopt_t) { return push(std::nullopt); }
  template <typename T>
  PgParams& add(const std::optional<T>& v) {
    return v ? add(*v) : push(std::nullopt);
  }
  // A PostgreSQL array literal ({1,2,3}); for bigint[] / text[] parameters.
  PgParams& addArray(const std::vector<std::int64_t>& values);
  // Text from outside (request paths): NUL bytes dropped, invalid UTF-8 replaced by U+FFFD, as
  // PostgreSQL's text refuses both (one such row would fail a whole multi-row INSERT).
  static std::string cleanText(std::string_view s);
  PgParams& addArray(const std::vector<std::optional<std::int64_t>>& values);  // nullopt: NULL
  PgParams& addArray(const std::vector<std::string>& values);
  size_t size() const { return values_.size(); }
  const std::vector<std::optional<std::string>>& values() const { return values_; }

 private:
  PgParams& push(std::optional<std::string> v) {
    values_.push_back(std::move(v));
    return *this;
  }
  std::vector<std::optional<std::string>> values_;
};

// A statement and its parameters (PgConn::transaction).
struct PgStatement {
  std::string sql;
  PgParams params;
};

// A query's rows (text format).
class PgResult {
 public:
  explicit PgResult(pg_result* r) : r_(r) {}
  PgResult(PgResult&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  PgResult& operator=(PgResult&& o) noexcept;
  ~PgResult();
  int rows() const;
  std::int64_t affected() const;  // rows an INSERT/UPDATE/DELETE changed
  bool isNull(int row, int col) const;
  std::string text(int row, int col) const;
  std::int64_t int64(int row, int col) const;
  std::optional<std::int64_t> optInt(int row, int col) const;
  double real(int row, int col) const;
  bool boolean(int row, int col) const;

 private:
  pg_result* r_;
};

class PgConn {
 public:
  // Connects to `url` (a postgresql:// URI or a conninfo string), then runs `setup` (session
  // settings, run again after a reset). Failure: kStorageUnavailable, with libpq's message (the
  // password, if any, is not in it).
  static Result<std::unique_ptr<PgConn>> connect(const std::string& url, std::string setup = {});
  ~PgConn();
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  // Runs one statement with parameters ($1, $2, ...), prepared once per connection and cached.
  Result<PgResult> exec(std::string_view sql, const PgParams& params = {});
  // Runs one or more statements without parameters (simple query protocol).
  Result<void> run(std::string_view sql);
  // Opens a transaction with the next exec or run, in the same round trip (a pipeline of BEGIN
  // and that statement): a write batch of one statement then costs two round trips, not three.
  // A BEGIN that fails fails that statement.
  void beginWithNext() { begin_pending_ = true; }
  // BEGIN, `statements` and COMMIT in one round trip (a pipeline with one Sync). The error: the
  // connection failed, or BEGIN or COMMIT did; `maybe_committed` then says whether the COMMIT
  // may have run (the connection failed after the statements were sent with no error seen).
  // Otherwise each statement's own result, in order; after a failed statement the others and the
  // COMMIT did not run, and the transaction is left aborted for the caller to roll back.
  Result<std::vector<Result<PgResult>>> transaction(const std::vector<PgStatement>& statements,
                                                    bool* maybe_committed = nullptr);
  // The SQLSTATE of the last failed exec/run ("" when it did not come from the server).
  const std::string& lastSqlState() const { return last_state_; }
  // False once the connection is lost (the server restarted, the backend was terminated).
  bool healthy() const;
  // When the server last answered on this connection (a connection idle for long may have been
  // dropped on the way without a word: a firewall, a NAT).
  std::chrono::steady_clock::time_point lastAnswer() const { return last_answer_; }
  // Reconnects a lost connection; prepared statements are prepared again as they are used.
  Result<void> reset();
  pg_conn* raw() { return conn_; }

 private:
  PgConn(pg_conn* c, std::string setup) : conn_(c), setup_(std::move(setup)) {}
  Error errorOf(pg_result* r, std::string_view what);
  pg_result* pipelinedWithBegin(const std::string& statement, const std::vector<const char*>& values);
  // The answers of a pipeline of `queries` queries and one Sync, in order (fewer if the
  // connection failed); the Sync's own result is read and dropped. The caller clears them.
  std::vector<pg_result*> pipelineAnswers(size_t queries);
  // The name of `sql` prepared on this connection (prepared now if it is new).
  Result<const std::string*> prepared(const std::string& sql);
  pg_conn* conn_;
  std::string setup_;
  std::unordered_map<std::string, std::string> prepared_;  // sql -> statement name
  std::string last_state_;
  // Set by a failure that did not come from the server (no SQLSTATE: the socket closed, an
  // administrator command ended the session): libpq may still say CONNECTION_OK.
  bool broken_ = false;
  bool begin_pending_ = false;  // beginWithNext()
  std::chrono::steady_clock::time_point last_answer_ = std::chrono::steady_clock::now();
};

// A connection URL with its password (if any) replaced by "***", for logs and messages.
std::string redactPgUrl(const std::string& url);

}  // namespace statim
