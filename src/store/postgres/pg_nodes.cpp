// NodeStore on PostgreSQL: every node sharing the database, by the database's clock.
#include "store/postgres/postgres_store.h"

namespace statim {

Result<void> PostgresStore::heartbeatNode(const NodeRecord& node) {
  return write<void>([node](PgConn& c) -> Result<void> {
    auto r = c.exec(
        "INSERT INTO nodes (id, role, version, models, started_at, heartbeat_at)"
        " VALUES ($1, $2, $3, $4, statim_now_us(), statim_now_us())"
        " ON CONFLICT (id) DO UPDATE SET role = $2, version = $3, models = $4, heartbeat_at = statim_now_us()",
        PgParams(node.id, node.role, node.version, dumpJson(node.models)));
    if (!r) return statim::fail(r.error());
    return ok();
  });
}

Result<void> PostgresStore::removeNode(const std::string& id) {
  return write<void>([id](PgConn& c) -> Result<void> {
    auto r = c.exec("DELETE FROM nodes WHERE id = $1", PgParams(id));
    if (!r) return statim::fail(r.error());
    return ok();
  });
}

Result<std::vector<NodeRecord>> PostgresStore::listNodes(Micros forget_after) {
  auto forgotten = write<void>([forget_after](PgConn& c) -> Result<void> {
    auto r = c.exec("DELETE FROM nodes WHERE heartbeat_at < statim_now_us() - $1", PgParams(forget_after));
    if (!r) return statim::fail(r.error());
    return ok();
  });
  if (!forgotten) return statim::fail(forgotten.error());
  return read<std::vector<NodeRecord>>([](PgConn& c) -> Result<std::vector<NodeRecord>> {
    auto r = c.exec(
        "SELECT id, role, version, models, started_at, heartbeat_at, statim_now_us() - heartbeat_at FROM nodes"
        " ORDER BY started_at, id");
    if (!r) return statim::fail(r.error());
    std::vector<NodeRecord> out;
    for (int i = 0; i < r->rows(); ++i) {
      NodeRecord n{r->text(i, 0),  r->text(i, 1),  r->text(i, 2), nlohmann::json::parse(r->text(i, 3), nullptr, false),
                   r->int64(i, 4), r->int64(i, 5), r->int64(i, 6)};
      if (!n.models.is_object()) n.models = nlohmann::json::object();
      out.push_back(std::move(n));
    }
    return out;
  });
}

}  // namespace statim
