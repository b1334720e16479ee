// AuditStore on SQLite.
#include <format>

#include "core/logging.h"
#include "store/sqlite/sqlite_store.h"

namespace statim {

// Sync::kLater: the row is written after the response anyway; a power loss may undo the rows
// committed since the last fsync (the next job's commit syncs them), a crash of statim does not.
void SqliteStore::appendAudit(AuditEntry e) {
  auto entry = std::make_shared<AuditEntry>(std::move(e));
  enqueue({[entry](SqliteDb& db) {
             auto st = db.prepare(
                 "INSERT INTO audit_log (time, key_id, key_name, remote, method, route, path, job_id, status,"
                 " request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
             if (!st) return Result<void>(statim::fail(st.error()));
             auto& s = **st;
             s.bind(1, entry->time)
                 .bind(2, entry->key_id)
                 .bind(3, entry->key_name)
                 .bind(4, entry->remote)
                 .bind(5, entry->method)
                 .bind(6, entry->route)
                 .bind(7, entry->path)
                 .bind(8, entry->job_id)
                 .bind(9, std::int64_t{entry->status})
                 .bind(10, entry->request_id);
             return s.run();
           },
           [entry](const Error* err) {
             if (err) {
               log::error("audit: row not written",
                          {{"error", err->message}, {"request_id", entry->request_id}, {"path", entry->path}});
             }
           },
           Sync::kLater});
}

Result<AuditPage> SqliteStore::listAudit(const AuditFilter& f) {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  std::string where = "WHERE 1=1";
  if (f.key_name) where += " AND key_name = ?1";
  if (f.since) where += " AND time >= ?2";
  auto bindFilter = [&](SqliteStatement& s) {
    if (f.key_name) s.bind(1, *f.key_name);
    if (f.since) s.bind(2, *f.since);
  };
  AuditPage page;
  if (auto r = lease->db->exec("BEGIN"); !r) return statim::fail(r.error());
  auto result = [&]() -> Result<void> {
    auto count = lease->db->prepare(std::format("SELECT COUNT(*) FROM audit_log {}", where));
    if (!count) return statim::fail(count.error());
    bindFilter(**count);
    if (auto r = (*count)->forEachRow([&](const SqliteStatement& s) { page.total = s.columnInt(0); }); !r) return r;
    auto st = lease->db->prepare(
        std::format("SELECT id, time, key_id, key_name, remote, method, route, path, job_id, status, request_id"
                    " FROM audit_log {} ORDER BY id DESC LIMIT ?3 OFFSET ?4",
                    where));
    if (!st) return statim::fail(st.error());
    bindFilter(**st);
    (*st)->bind(3, std::int64_t{f.limit}).bind(4, std::int64_t{f.offset});
    return (*st)->forEachRow([&](const SqliteStatement& s) {
      page.entries.push_back({s.columnInt(0), s.columnInt(1), s.columnOptInt(2), s.columnText(3), s.columnText(4),
                              s.columnText(5), s.columnText(6), s.columnText(7), s.columnOptInt(8),
                              static_cast<int>(s.columnInt(9)), s.columnText(10)});
    });
  }();
  (void)lease->db->exec("COMMIT");
  if (!result) return statim::fail(result.error());
  return page;
}

Result<std::int64_t> SqliteStore::deleteAuditBefore(Micros before) {
  return write<std::int64_t>([&](SqliteDb& db) -> Result<std::int64_t> {
    auto st = db.prepare("DELETE FROM audit_log WHERE time < ?1");
    if (!st) return statim::fail(st.error());
    if (auto r = (*st)->bind(1, before).run(); !r) return statim::fail(r.error());
    return db.changes();
  });
}

}  // namespace statim
