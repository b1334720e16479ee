// JSON <-> API keys, for GET/POST /admin/keys and `statim keys list --json`.
#pragma once

#include <nlohmann/json.hpp>

#include "statim/error.h"
#include "store/key_store.h"

namespace statim::api {

// A key as listed: never the key itself nor its hash, only its non-secret prefix.
nlohmann::ordered_json keyToJson(const ApiKey& key);

// A POST /admin/keys body: {"name", "scope"?: "user", "models"?: [ids], "rate"?: "10/s",
// "max_queued"?: n}; what issueKey then checks further.
Result<ApiKey> parseKeyRequest(const nlohmann::json& body);

}  // namespace statim::api
