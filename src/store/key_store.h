// API keys: who may call statim. Only a hash of each key is stored; the key itself is shown
// once, when it is created, and never stored or logged.
//
// Thread-safety: every method may be called from any thread. Several processes may share the
// store (`statim keys` while `statim serve` runs): a key created or revoked by one is seen by
// the others' next lookup, because lookups read the database, not a cache.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "statim/error.h"
#include "statim/job.h"

namespace statim {

struct ApiKey {
  std::int64_t id = 0;
  std::string name;
  std::string prefix;  // the key's first characters: not secret, shown in listings
  std::string hash;    // hex SHA-256 of the whole key
  std::string scope;   // "user" | "admin"
  std::optional<std::vector<std::string>> models;  // none = every model
  std::string rate;                                // "10/s"; empty = unlimited
  std::optional<std::int64_t> max_queued;
  Micros created_at = 0;
  std::optional<Micros> revoked_at;
};

class KeyStore {
 public:
  virtual ~KeyStore() = default;
  // Stores `key` (id and created_at are assigned). kConflict when an active key has the name.
  virtual Result<ApiKey> createKey(ApiKey key) = 0;
  // The key (active or revoked) with this prefix, if any.
  virtual Result<std::optional<ApiKey>> findKeyByPrefix(const std::string& prefix) = 0;
  virtual Result<std::vector<ApiKey>> listKeys() = 0;
  // Revokes the active key named `name_or_id` (a name, or a decimal id). kNotFound otherwise.
  virtual Result<ApiKey> revokeKey(const std::string& name_or_id) = 0;
};

// A new key as `spec` describes it (name, scope, models, rate, max_queued): checked (kInvalid
// naming the field), given a fresh secret and stored. `key` is the secret itself, to show once.
struct IssuedKey {
  ApiKey record;
  std::string key;
};
Result<IssuedKey> issueKey(KeyStore& store, ApiKey spec);

}  // namespace statim
