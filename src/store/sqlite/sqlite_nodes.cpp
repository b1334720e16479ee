// NodeStore on SQLite (one node: the process that owns the file).
#include "core/clock.h"
#include "store/sqlite/sqlite_store.h"

namespace statim {

Result<void> SqliteStore::heartbeatNode(const NodeRecord& node) {
  return writeLater<void>([&](SqliteDb& db) -> Result<void> {
    auto st = db.prepare(
        "INSERT INTO nodes (id, role, version, models, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)"
        " ON CONFLICT (id) DO UPDATE SET role = ?2, version = ?3, models = ?4, heartbeat_at = ?5");
    if (!st) return statim::fail(st.error());
    return (*st)
        ->bind(1, node.id)
        .bind(2, node.role)
        .bind(3, node.version)
        .bind(4, dumpJson(node.models))
        .bind(5, nowMicros())
        .run();
  });
}

Result<void> SqliteStore::removeNode(const std::string& id) {
  return write<void>([&](SqliteDb& db) -> Result<void> {
    auto st = db.prepare("DELETE FROM nodes WHERE id = ?1");
    if (!st) return statim::fail(st.error());
    return (*st)->bind(1, id).run();
  });
}

Result<std::vector<NodeRecord>> SqliteStore::listNodes(Micros forget_after) {
  Micros now = nowMicros();
  if (!writeProblem()) {
    auto forgotten = write<void>([&](SqliteDb& db) -> Result<void> {
      auto st = db.prepare("DELETE FROM nodes WHERE heartbeat_at < ?1");
      if (!st) return statim::fail(st.error());
      return (*st)->bind(1, now - forget_after).run();
    });
    if (!forgotten) return statim::fail(forgotten.error());
  }
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  auto st = lease->db->prepare(
      "SELECT id, role, version, models, started_at, heartbeat_at FROM nodes ORDER BY started_at, id");
  if (!st) return statim::fail(st.error());
  std::vector<NodeRecord> out;
  if (auto r = (*st)->forEachRow([&](const SqliteStatement& s) {
        NodeRecord n{s.columnText(0),
                     s.columnText(1),
                     s.columnText(2),
                     nlohmann::json::parse(s.columnText(3), nullptr, false),
                     s.columnInt(4),
                     s.columnInt(5),
                     0};
        if (!n.models.is_object()) n.models = nlohmann::json::object();
        n.silent_for = now - n.heartbeat_at;
        out.push_back(std::move(n));
      });
      !r) {
    return statim::fail(r.error());
  }
  return out;
}

}  // namespace statim
