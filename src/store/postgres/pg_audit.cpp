// AuditStore on PostgreSQL.
#include <format>

#include "core/logging.h"
#include "store/postgres/postgres_store.h"

namespace statim {

void PostgresStore::appendAudit(AuditEntry e) {
  auto entry = std::make_shared<AuditEntry>(std::move(e));
  enqueue({[entry](PgConn& c) -> Result<void> {
             auto r = c.exec(
                 "INSERT INTO audit_log (time, key_id, key_name, remote, method, route, path, job_id, status,"
                 " request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                 PgParams(entry->time, entry->key_id, entry->key_name, entry->remote, entry->method, entry->route,
                          entry->path, entry->job_id, entry->status, entry->request_id));
             if (!r) return statim::fail(r.error());
             return ok();
           },
           [entry](const Error* err) {
             if (err) {
               log::error("audit: row not written",
                          {{"error", err->message}, {"request_id", entry->request_id}, {"path", entry->path}});
             }
           }});
}

// Newest first by time: rows appended at once may be committed by different writer connections
// in another order than their ids.
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
