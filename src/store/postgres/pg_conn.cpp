#include "store/postgres/pg_conn.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <format>
#include <regex>
#include <span>
#include <utility>

#include <libpq-fe.h>

namespace statim {
namespace {

// Text quoted for an array literal element.
std::string arrayElement(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string trimmed(const char* msg) {
  std::string s = msg ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

PgParams& PgParams::add(double v) { return push(std::format("{}", v)); }

PgParams& PgParams::addArray(const std::vector<std::int64_t>& values) {
  std::string s = "{";
  for (size_t i = 0; i < values.size(); ++i) s += (i ? "," : "") + std::to_string(values[i]);
  return push(s + "}");
}

std::string PgParams::cleanText(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) {
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    size_t n = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : 0;
    bool valid = n > 0 && i + n < s.size();
    for (size_t k = 1; valid && k <= n; ++k) valid = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (valid) {
      auto c1 = static_cast<unsigned char>(s[i + 1]);
      valid = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 > 0x9F) && !(c == 0xF0 && c1 < 0x90) &&
              !(c == 0xF4 && c1 > 0x8F);
    }
    if (valid) {
      out.append(s.substr(i, n + 1));
      i += n + 1;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

PgParams& PgParams::addArray(const std::vector<std::optional<std::int64_t>>& values) {
  std::string s = "{";
  for (size_t i = 0; i < values.size(); ++i) s += (i ? "," : "") + (values[i] ? std::to_string(*values[i]) : "NULL");
  return push(s + "}");
}

PgParams& PgParams::addArray(const std::vector<std::string>& values) {
  std::string s = "{";
  for (size_t i = 0; i < values.size(); ++i) s += (i ? "," : "") + arrayElement(values[i]);
  return push(s + "}");
}

PgResult& PgResult::operator=(PgResult&& o) noexcept {
  if (this != &o) {
    if (r_) PQclear(r_);
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}
PgResult::~PgResult() {
  if (r_) PQclear(r_);
}
int PgResult::rows() const { return PQntuples(r_); }
std::int64_t PgResult::affected() const {
  const char* n = PQcmdTuples(r_);
  return n && *n ? std::strtoll(n, nullptr, 10) : 0;
}
bool PgResult::isNull(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
std::string PgResult::text(int row, int col) const {
  return std::string(PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col)));
}
std::int64_t PgResult::int64(int row, int col) const {
  std::int64_t v = 0;
  const char* s = PQgetvalue(r_, row, col);
  std::from_chars(s, s + PQgetlength(r_, row, col), v);
  return v;
}
std::optional<std::int64_t> PgResult::optInt(int row, int col) const {
  if (isNull(row, col)) return std::nullopt;
  return int64(row, col);
}
double PgResult::real(int row, int col) const { return std::strtod(PQgetvalue(r_, row, col), nullptr); }
bool PgResult::boolean(int row, int col) const {
  const char* s = PQgetvalue(r_, row, col);
  return s && (*s == 't' || *s == '1');
}

Result<std::unique_ptr<PgConn>> PgConn::connect(const std::string& url, std::string setup) {
  PGconn* c = PQconnectdb(url.c_str());
  if (!c) return statim::fail(ErrorCode::kStorageUnavailable, "PostgreSQL: out of memory creating a connection");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = trimmed(PQerrorMessage(c));
    PQfinish(c);
    return statim::fail(ErrorCode::kStorageUnavailable,
                        std::format("cannot connect to PostgreSQL ({}): {}", redactPgUrl(url), msg));
  }
  auto conn = std::unique_ptr<PgConn>(new PgConn(c, std::move(setup)));
  // Times are microseconds computed by the database (statim_now_us()); keep notices out of stderr.
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  if (!conn->setup_.empty()) {
    if (auto r = conn->run(conn->setup_); !r) return statim::fail(r.error());
  }
  return conn;
}

PgConn::~PgConn() {
  if (conn_) PQfinish(conn_);
}

bool PgConn::healthy() const { return !broken_ && PQstatus(conn_) == CONNECTION_OK; }

Result<void> PgConn::reset() {
  prepared_.clear();
  broken_ = false;
  begin_pending_ = false;
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) {
    return statim::fail(ErrorCode::kStorageUnavailable,
                        "cannot reconnect to PostgreSQL: " + trimmed(PQerrorMessage(conn_)));
  }
  if (!setup_.empty()) {
    if (auto r = run(setup_); !r) {
      broken_ = true;  // not usable without its setup: the next use resets it again
      return r;
    }
  }
  return ok();
}

Error PgConn::errorOf(PGresult* r, std::string_view what) {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  last_state_ = state ? state : "";
  std::string msg = trimmed(r ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
  if (msg.empty()) msg = trimmed(PQerrorMessage(conn_));
  // A lost connection (or a server shutting down: class 57, 08) is "unavailable": nothing written.
  if (last_state_.empty() || last_state_.starts_with("08") || last_state_.starts_with("57P")) broken_ = true;
  bool unavailable = !healthy() || last_state_.starts_with("57");
  return {unavailable ? ErrorCode::kStorageUnavailable : ErrorCode::kStorage,
          std::format("PostgreSQL {}: {}", what, msg.empty() ? "connection lost" : msg),
          {}};
}

Result<const std::string*> PgConn::prepared(const std::string& sql) {
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = std::format("s{}", prepared_.size());
    PGresult* r = PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
      Error e = errorOf(r, "prepare");
      if (r) PQclear(r);
      return statim::fail(std::move(e));
    }
    PQclear(r);
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  return &it->second;
}

namespace {

std::vector<const char*> valuesOf(const PgParams& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (auto& v : params.values()) values.push_back(v ? v->c_str() : nullptr);
  return values;
}

}  // namespace

Result<PgResult> PgConn::exec(std::string_view sql, const PgParams& params) {
  last_state_.clear();
  auto name = prepared(std::string(sql));
  if (!name) return statim::fail(name.error());
  auto values = valuesOf(params);
  PGresult* r = nullptr;
  if (std::exchange(begin_pending_, false)) {
    r = pipelinedWithBegin(**name, values);
  } else {
    r = PQexecPrepared(conn_, (*name)->c_str(), static_cast<int>(values.size()), values.data(), nullptr, nullptr, 0);
  }
  auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    Error e = errorOf(r, "query");
    if (r) PQclear(r);
    return statim::fail(std::move(e));
  }
  last_answer_ = std::chrono::steady_clock::now();
  return PgResult(r);
}

std::vector<PGresult*> PgConn::pipelineAnswers(size_t queries) {
  std::vector<PGresult*> answers;
  while (answers.size() < queries) {
    PGresult* r = PQgetResult(conn_);
    if (!r) break;  // the connection failed
    answers.push_back(r);
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);  // each query's answer ends with a NULL
  }
  if (answers.size() == queries) {
    while (PGresult* rest = PQgetResult(conn_)) {  // the Sync's, with no NULL after it
      bool sync = PQresultStatus(rest) == PGRES_PIPELINE_SYNC;
      PQclear(rest);
      if (sync) break;
    }
  }
  return answers;
}

PGresult* PgConn::pipelinedWithBegin(const std::string& statement, const std::vector<const char*>& values) {
  // BEGIN, the statement, one Sync: the server answers both at once. Its results come in that
  // order; a failed BEGIN makes the statement's result PGRES_PIPELINE_ABORTED (an error here).
  if (!PQenterPipelineMode(conn_)) {
    PGresult* b = PQexec(conn_, "BEGIN");
    if (!b || PQresultStatus(b) != PGRES_COMMAND_OK) return b;  // the BEGIN's error is the statement's
    PQclear(b);
    return PQexecPrepared(conn_, statement.c_str(), static_cast<int>(values.size()), values.data(), nullptr, nullptr,
                          0);
  }
  bool sent = PQsendQueryParams(conn_, "BEGIN", 0, nullptr, nullptr, nullptr, nullptr, 0) &&
              PQsendQueryPrepared(conn_, statement.c_str(), static_cast<int>(values.size()), values.data(), nullptr,
                                  nullptr, 0) &&
              PQpipelineSync(conn_);
  auto answers = sent ? pipelineAnswers(2) : std::vector<PGresult*>{};
  PGresult* begin = !answers.empty() ? answers[0] : nullptr;
  PGresult* result = answers.size() > 1 ? answers[1] : nullptr;
  if (!PQexitPipelineMode(conn_)) broken_ = true;  // results left unread: start over on a new connection
  if (begin && PQresultStatus(begin) != PGRES_COMMAND_OK) std::swap(begin, result);  // the BEGIN's error is the one
  if (begin) PQclear(begin);
  return result;
}

Result<std::vector<Result<PgResult>>> PgConn::transaction(const std::vector<PgStatement>& statements,
                                                          bool* maybe_committed) {
  last_state_.clear();
  begin_pending_ = false;
  if (maybe_committed) *maybe_committed = false;
  std::vector<const std::string*> names;
  for (auto& s : statements) {
    auto name = prepared(s.sql);
    if (!name) return statim::fail(name.error());
    names.push_back(*name);
  }
  if (!PQenterPipelineMode(conn_)) return statim::fail(errorOf(nullptr, "pipeline"));
  bool sent = PQsendQueryParams(conn_, "BEGIN", 0, nullptr, nullptr, nullptr, nullptr, 0);
  for (size_t i = 0; sent && i < statements.size(); ++i) {
    auto values = valuesOf(statements[i].params);
    sent = PQsendQueryPrepared(conn_, names[i]->c_str(), static_cast<int>(values.size()), values.data(), nullptr,
                               nullptr, 0);
  }
  // Once the COMMIT is queued, some of it may reach the server even if the flush fails.
  bool commit_queued = sent && PQsendQueryParams(conn_, "COMMIT", 0, nullptr, nullptr, nullptr, nullptr, 0);
  sent = commit_queued && PQpipelineSync(conn_);
  // One answer per query: BEGIN, the statements, COMMIT.
  const size_t n = statements.size();
  auto results = sent ? pipelineAnswers(n + 2) : std::vector<PGresult*>{};
  auto ran = [](PGresult* r) {
    auto st = PQresultStatus(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  };
  // The server's own "no" carries a SQLSTATE; a result libpq makes up for a lost connection does
  // not, and says nothing of what the server did.
  auto refused = [&](PGresult* r) {
    return !ran(r) && PQresultStatus(r) != PGRES_PIPELINE_ABORTED && PQresultErrorField(r, PG_DIAG_SQLSTATE);
  };
  const size_t answered_before_commit = std::min(results.size(), n + 1);
  const bool refused_before_commit = std::ranges::any_of(std::span(results).first(answered_before_commit), refused);
  const bool complete = results.size() == n + 2 && std::ranges::all_of(results, [&](PGresult* r) {
                          return ran(r) || refused(r) || PQresultStatus(r) == PGRES_PIPELINE_ABORTED;
                        });
  Result<std::vector<Result<PgResult>>> out = std::vector<Result<PgResult>>{};
  if (!results.empty() && refused(results.front())) {
    out = statim::fail(errorOf(results.front(), "BEGIN"));
  } else if (refused_before_commit) {
    // A statement failed: it has its error, those after it did not run, nor did the COMMIT.
    for (size_t i = 0; i < n; ++i) {
      PGresult* r = i + 1 < results.size() ? results[i + 1] : nullptr;
      if (r && ran(r)) {
        out->push_back(PgResult(std::exchange(results[i + 1], nullptr)));
      } else if (r && refused(r)) {
        out->push_back(statim::fail(errorOf(r, "query")));
      } else {
        out->push_back(statim::fail(Error::storage("PostgreSQL: not run, an earlier statement failed")));
      }
    }
  } else if (!complete) {
    // The connection failed with no "no" from the server: it may have run it all, COMMIT
    // included, before the answers were lost (unless the COMMIT never left this process).
    if (maybe_committed) *maybe_committed = commit_queued;
    out = statim::fail(errorOf(nullptr, "pipeline"));
  } else if (!ran(results.back())) {
    out = statim::fail(errorOf(results.back(), "COMMIT"));
    // A connection ended by the server during its COMMIT (a shutdown) may have committed.
    if (maybe_committed) *maybe_committed = !healthy();
  } else {
    for (size_t i = 0; i < n; ++i) out->push_back(PgResult(std::exchange(results[i + 1], nullptr)));
    last_answer_ = std::chrono::steady_clock::now();
  }
  // After the errors are read: a failed exit adds a message of its own.
  if (!PQexitPipelineMode(conn_)) broken_ = true;  // results left unread: start over on a new connection
  for (PGresult* r : results) {
    if (r) PQclear(r);
  }
  return out;
}

Result<void> PgConn::run(std::string_view sql) {
  last_state_.clear();
  std::string s = std::exchange(begin_pending_, false) ? std::format("BEGIN; {}", sql) : std::string(sql);
  PGresult* r = PQexec(conn_, s.c_str());
  auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    Error e = errorOf(r, "statement");
    if (r) PQclear(r);
    return statim::fail(std::move(e));
  }
  PQclear(r);
  last_answer_ = std::chrono::steady_clock::now();
  return ok();
}

std::string redactPgUrl(const std::string& url) {
  // postgresql://user:secret@host/db -> postgresql://user:***@host/db; password=secret -> password=***
  static const std::regex uri(R"(^(postgres(?:ql)?://[^:/@]*:)[^@]*@)");
  static const std::regex kv(R"(password\s*=\s*('[^']*'|\S+))");
  std::string out = std::regex_replace(url, uri, "$1***@");
  out = std::regex_replace(out, kv, "password=***");
  return out;
}

}  // namespace statim
