// KeyStore on SQLite.
#include <charconv>
#include <format>

#include "core/clock.h"
#include "store/sqlite/sqlite_store.h"

namespace statim {
namespace {

constexpr const char* kKeyCols = "id, name, prefix, hash, scope, models, rate, max_queued, created_at, revoked_at";

ApiKey rowToKey(const SqliteStatement& s) {
  ApiKey k;
  k.id = s.columnInt(0);
  k.name = s.columnText(1);
  k.prefix = s.columnText(2);
  k.hash = s.columnText(3);
  k.scope = s.columnText(4);
  if (!s.columnIsNull(5)) {
    auto models = nlohmann::json::parse(s.columnText(5), nullptr, false);
    if (models.is_array()) {
      k.models.emplace();
      for (auto& m : models)
        if (m.is_string()) k.models->push_back(m);
    }
  }
  k.rate = s.columnText(6);
  k.max_queued = s.columnOptInt(7);
  k.created_at = s.columnInt(8);
  k.revoked_at = s.columnOptInt(9);
  return k;
}

}  // namespace

Result<ApiKey> SqliteStore::createKey(ApiKey key) {
  return write<ApiKey>([&](SqliteDb& db) -> Result<ApiKey> {
    auto taken = db.prepare("SELECT id FROM api_keys WHERE name = ?1 AND revoked_at IS NULL");
    if (!taken) return statim::fail(taken.error());
    bool exists = false;
    (*taken)->bind(1, key.name);
    if (auto r = (*taken)->forEachRow([&](const SqliteStatement&) { exists = true; }); !r) return statim::fail(r.error());
    if (exists) {
      return statim::fail(ErrorCode::kConflict,
                          std::format("an active key named '{}' exists; revoke it first or pick another name", key.name));
    }
    key.created_at = nowMicros();
    auto st = db.prepare(
        "INSERT INTO api_keys (name, prefix, hash, scope, models, rate, max_queued, created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id");
    if (!st) return statim::fail(st.error());
    auto& s = **st;
    s.bind(1, key.name).bind(2, key.prefix).bind(3, key.hash).bind(4, key.scope);
    if (key.models) s.bind(5, nlohmann::json(*key.models).dump());
    if (!key.rate.empty()) s.bind(6, key.rate);
    s.bind(7, key.max_queued).bind(8, key.created_at);
    if (auto r = s.forEachRow([&](const SqliteStatement& row) { key.id = row.columnInt(0); }); !r) {
      return statim::fail(r.error());
    }
    return key;
  });
}

Result<std::optional<ApiKey>> SqliteStore::findKeyByPrefix(const std::string& prefix) {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  auto st = lease->db->prepare(std::format("SELECT {} FROM api_keys WHERE prefix = ?1", kKeyCols));
  if (!st) return statim::fail(st.error());
  std::optional<ApiKey> found;
  (*st)->bind(1, prefix);
  if (auto r = (*st)->forEachRow([&](const SqliteStatement& s) { found = rowToKey(s); }); !r) {
    return statim::fail(r.error());
  }
  return found;
}

Result<std::vector<ApiKey>> SqliteStore::listKeys() {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  auto st = lease->db->prepare(std::format("SELECT {} FROM api_keys ORDER BY id", kKeyCols));
  if (!st) return statim::fail(st.error());
  std::vector<ApiKey> keys;
  if (auto r = (*st)->forEachRow([&](const SqliteStatement& s) { keys.push_back(rowToKey(s)); }); !r) {
    return statim::fail(r.error());
  }
  return keys;
}

Result<ApiKey> SqliteStore::revokeKey(const std::string& name_or_id) {
  return write<ApiKey>([&](SqliteDb& db) -> Result<ApiKey> {
    // A name wins over an id: `revoke 1` revokes the key named "1" if there is one, else key id 1.
    std::optional<ApiKey> revoked;
    auto revokeWhere = [&](const std::string& where, auto bind) -> Result<void> {
      auto st = db.prepare(
          std::format("UPDATE api_keys SET revoked_at = ?1 WHERE revoked_at IS NULL AND {} RETURNING {}", where, kKeyCols));
      if (!st) return statim::fail(st.error());
      (*st)->bind(1, nowMicros());
      bind(**st);
      return (*st)->forEachRow([&](const SqliteStatement& s) { revoked = rowToKey(s); });
    };
    if (auto r = revokeWhere("name = ?2", [&](SqliteStatement& s) { s.bind(2, name_or_id); }); !r) {
      return statim::fail(r.error());
    }
    std::int64_t id = 0;
    auto [ptr, ec] = std::from_chars(name_or_id.data(), name_or_id.data() + name_or_id.size(), id);
    if (!revoked && ec == std::errc{} && ptr == name_or_id.data() + name_or_id.size()) {
      if (auto r = revokeWhere("id = ?2", [&](SqliteStatement& s) { s.bind(2, id); }); !r) return statim::fail(r.error());
    }
    if (!revoked) return statim::fail(ErrorCode::kNotFound, std::format("no active key '{}'", name_or_id));
    return *revoked;
  });
}

}  // namespace statim
