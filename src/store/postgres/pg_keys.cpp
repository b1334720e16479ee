// KeyStore on PostgreSQL.
#include <charconv>
#include <format>

#include "store/postgres/postgres_store.h"

namespace statim {
namespace {

constexpr const char* kKeyCols = "id, name, prefix, hash, scope, models, rate, max_queued, created_at, revoked_at";

ApiKey rowToKey(const PgResult& r, int i) {
  ApiKey k;
  k.id = r.int64(i, 0);
  k.name = r.text(i, 1);
  k.prefix = r.text(i, 2);
  k.hash = r.text(i, 3);
  k.scope = r.text(i, 4);
  if (!r.isNull(i, 5)) {
    auto models = nlohmann::json::parse(r.text(i, 5), nullptr, false);
    if (models.is_array()) {
      k.models.emplace();
      for (auto& m : models)
        if (m.is_string()) k.models->push_back(m);
    }
  }
  k.rate = r.text(i, 6);
  k.max_queued = r.optInt(i, 7);
  k.created_at = r.int64(i, 8);
  k.revoked_at = r.optInt(i, 9);
  return k;
}

}  // namespace

Result<ApiKey> PostgresStore::createKey(ApiKey key) {
  return write<ApiKey>([key](PgConn& c) -> Result<ApiKey> {
    std::optional<std::string> models, rate;
    if (key.models) models = nlohmann::json(*key.models).dump();
    if (!key.rate.empty()) rate = key.rate;
    // The unique index on active names decides between nodes creating the same name at once.
    auto r = c.exec(std::format("INSERT INTO api_keys (name, prefix, hash, scope, models, rate, max_queued, created_at)"
                                " VALUES ($1, $2, $3, $4, $5, $6, $7, statim_now_us()) RETURNING {}",
                                kKeyCols),
                    PgParams(key.name, key.prefix, key.hash, key.scope, models, rate, key.max_queued));
    if (!r) {
      if (c.lastSqlState() == kPgUniqueViolation) {
        return statim::fail(
            ErrorCode::kConflict,
            std::format("an active key named '{}' exists; revoke it first or pick another name", key.name));
      }
      return statim::fail(r.error());
    }
    return rowToKey(*r, 0);
  });
}

Result<std::optional<ApiKey>> PostgresStore::findKeyByPrefix(const std::string& prefix) {
  return read<std::optional<ApiKey>>([&](PgConn& c) -> Result<std::optional<ApiKey>> {
    auto r = c.exec(std::format("SELECT {} FROM api_keys WHERE prefix = $1", kKeyCols), PgParams(prefix));
    if (!r) return statim::fail(r.error());
    if (r->rows() == 0) return std::optional<ApiKey>();
    return std::optional<ApiKey>(rowToKey(*r, 0));
  });
}

Result<std::vector<ApiKey>> PostgresStore::listKeys() {
  return read<std::vector<ApiKey>>([](PgConn& c) -> Result<std::vector<ApiKey>> {
    auto r = c.exec(std::format("SELECT {} FROM api_keys ORDER BY id", kKeyCols));
    if (!r) return statim::fail(r.error());
    std::vector<ApiKey> keys;
    for (int i = 0; i < r->rows(); ++i) keys.push_back(rowToKey(*r, i));
    return keys;
  });
}

Result<ApiKey> PostgresStore::revokeKey(const std::string& name_or_id) {
  return write<ApiKey>([name_or_id](PgConn& c) -> Result<ApiKey> {
    // A name wins over an id: `revoke 1` revokes the key named "1" if there is one, else key id 1.
    auto r = c.exec(std::format("UPDATE api_keys SET revoked_at = statim_now_us() WHERE revoked_at IS NULL"
                                " AND name = $1 RETURNING {}",
                                kKeyCols),
                    PgParams(name_or_id));
    if (!r) return statim::fail(r.error());
    if (r->rows() > 0) return rowToKey(*r, 0);
    std::int64_t id = 0;
    auto [ptr, ec] = std::from_chars(name_or_id.data(), name_or_id.data() + name_or_id.size(), id);
    if (ec == std::errc{} && ptr == name_or_id.data() + name_or_id.size()) {
      auto by_id = c.exec(std::format("UPDATE api_keys SET revoked_at = statim_now_us() WHERE revoked_at IS NULL"
                                      " AND id = $1 RETURNING {}",
                                      kKeyCols),
                          PgParams(id));
      if (!by_id) return statim::fail(by_id.error());
      if (by_id->rows() > 0) return rowToKey(*by_id, 0);
    }
    return statim::fail(ErrorCode::kNotFound, std::format("no active key '{}'", name_or_id));
  });
}

}  // namespace statim
