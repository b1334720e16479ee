// AuditStore on PostgreSQL.
#include <format>
#include <optional>
#include <utility>

#include "core/logging.h"
#include "store/postgres/postgres_store.h"

namespace statim {

// Rows appended while a write for earlier ones waits in the writer's queue join that write: one
// multi-row INSERT per batch instead of one statement per request (a row is never written after
// the writes queued before it, only sometimes with an earlier one).
void PostgresStore::appendAudit(AuditEntry e) {
  {
    std::lock_guard lock(audit_mu_);
    audit_pending_.push_back(std::move(e));
    if (audit_pending_.size() > 1) return;  // the queued write takes it
  }
  // Taken from the pending rows when first sent, kept for a rerun of the batch.
  auto rows = std::make_shared<std::optional<std::vector<AuditEntry>>>();
  auto one = std::make_shared<OneStatement>(OneStatement{
      [this, rows] {
        if (!*rows) {
          std::lock_guard lock(audit_mu_);
          *rows = std::exchange(audit_pending_, {});
        }
        std::vector<std::int64_t> time;
        std::vector<std::optional<std::int64_t>> key_id, job_id, status;
        std::vector<std::string> key_name, remote, method, route, path, request_id;
        for (const AuditEntry& a : **rows) {
          time.push_back(a.time);
          key_id.push_back(a.key_id);
          key_name.push_back(PgParams::cleanText(a.key_name));
          remote.push_back(PgParams::cleanText(a.remote));
          method.push_back(PgParams::cleanText(a.method));
          route.push_back(PgParams::cleanText(a.route));
          path.push_back(PgParams::cleanText(a.path));
          job_id.push_back(a.job_id);
          status.push_back(a.status);
          request_id.push_back(PgParams::cleanText(a.request_id));
        }
        return PgStatement{
            "INSERT INTO audit_log (time, key_id, key_name, remote, method, route, path, job_id, status,"
            " request_id) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],"
            " $6::text[], $7::text[], $8::bigint[], $9::integer[], $10::text[])",
            PgParams()
                .addArray(time)
                .addArray(key_id)
                .addArray(key_name)
                .addArray(remote)
                .addArray(method)
                .addArray(route)
                .addArray(path)
                .addArray(job_id)
                .addArray(status)
                .addArray(request_id)};
      },
      [rows](Result<PgResult> r) -> Result<void> {
        if (!r) {
          log::error("audit: rows not written", {{"error", r.error().message}, {"rows", (*rows)->size()}});
          return statim::fail(r.error());
        }
        return ok();
      }});
  enqueue(writeOf(std::move(one), [this, rows](const Error* err) {
    if (!err) return;
    if (!*rows) {  // never applied (the store is stopping)
      std::lock_guard lock(audit_mu_);
      *rows = std::exchange(audit_pending_, {});
    }
    for (const AuditEntry& a : **rows) {
      log::error("audit: row not written", {{"error", err->message}, {"request_id", a.request_id}, {"path", a.path}});
    }
  }));
}

// Newest first by time (rows of one multi-row INSERT are in the order they were appended).
Result<AuditPage> PostgresStore::listAudit(const AuditFilter& f) {
  return read<AuditPage>([&](PgConn& c) -> Result<AuditPage> {
    std::string where = "WHERE true";
    PgParams p;
    if (f.key_name) where += std::format(" AND key_name = ${}", p.add(*f.key_name).size());
    if (f.since) where += std::format(" AND time >= ${}", p.add(*f.since).size());
    if (auto r = c.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); !r) return statim::fail(r.error());
    auto page = [&]() -> Result<AuditPage> {
      AuditPage out;
      auto count = c.exec(std::format("SELECT COUNT(*) FROM audit_log {}", where), p);
      if (!count) return statim::fail(count.error());
      out.total = count->int64(0, 0);
      PgParams pp = p;
      size_t n = pp.add(f.limit).add(f.offset).size();
      auto r = c.exec(std::format("SELECT id, time, key_id, key_name, remote, method, route, path, job_id, status,"
                                  " request_id FROM audit_log {} ORDER BY time DESC, id DESC LIMIT ${} OFFSET ${}",
                                  where, n - 1, n),
                      pp);
      if (!r) return statim::fail(r.error());
      for (int i = 0; i < r->rows(); ++i) {
        out.entries.push_back({r->int64(i, 0), r->int64(i, 1), r->optInt(i, 2), r->text(i, 3), r->text(i, 4),
                               r->text(i, 5), r->text(i, 6), r->text(i, 7), r->optInt(i, 8),
                               static_cast<int>(r->int64(i, 9)), r->text(i, 10)});
      }
      return out;
    }();
    (void)c.run(page ? "COMMIT" : "ROLLBACK");
    return page;
  });
}

Result<std::int64_t> PostgresStore::deleteAuditBefore(Micros before) {
  return write<std::int64_t>([=](PgConn& c) -> Result<std::int64_t> {
    auto r = c.exec("DELETE FROM audit_log WHERE time < $1", PgParams(before));
    if (!r) return statim::fail(r.error());
    return r->affected();
  });
}

}  // namespace statim
