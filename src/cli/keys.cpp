// `statim keys create|list|revoke`: API keys, on the same store as `statim serve` (safe while
// it runs: the database serialises the writers, and the server reads keys from the store per
// request). With store.url set, on that database: a key created there is valid on every node.
#include <format>
#include <iostream>

#include "cli/commands.h"
#include "core/api_key.h"
#include "core/clock.h"
#include "core/strings.h"
#include "store/open_store.h"

namespace statim::cli {
namespace {

Result<std::unique_ptr<Store>> openKeyStore(const Config& config) {
  auto opened = openStore(config);
  if (!opened) return fail(opened.error());
  return std::move(opened->store);
}

int failWith(const Error& e) {
  std::cerr << "statim keys: " << e.message << "\n";
  return e.code == ErrorCode::kInvalidArgument ? 2 : 1;
}

Result<void> validateName(const std::string& name) {
  if (name.empty() || name.size() > 64 ||
      !std::ranges::all_of(name, [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'; })) {
    return fail(Error::invalid("--name must be 1..64 characters of letters, digits, '-', '_' or '.'", "name"));
  }
  return ok();
}

nlohmann::ordered_json keyToJson(const ApiKey& k) {
  return {{"id", k.id},
          {"name", k.name},
          {"prefix", "sk-statim-" + k.prefix + "..."},
          {"scope", k.scope},
          {"models", k.models ? nlohmann::ordered_json(*k.models) : nlohmann::ordered_json()},
          {"rate", k.rate.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(k.rate)},
          {"max_queued", k.max_queued ? nlohmann::ordered_json(*k.max_queued) : nlohmann::ordered_json()},
          {"created_at", formatIsoUtc(k.created_at)},
          {"revoked_at", k.revoked_at ? nlohmann::ordered_json(formatIsoUtc(*k.revoked_at)) : nlohmann::ordered_json()}};
}

}  // namespace

int keysCreate(const Config& config, const KeyOptions& o) {
  if (auto r = validateName(o.name); !r) return failWith(r.error());
  if (o.scope != "user" && o.scope != "admin") return failWith(Error::invalid("--scope must be 'user' or 'admin'"));
  if (!o.rate.empty()) {
    if (auto r = parseRate(o.rate); !r) return failWith(r.error());
  }
  if (o.max_queued && *o.max_queued < 1) return failWith(Error::invalid("--max-queued must be >= 1"));
  auto store = openKeyStore(config);
  if (!store) return failWith(store.error());
  ApiKey key{.name = o.name, .scope = o.scope, .rate = o.rate, .max_queued = o.max_queued};
  if (o.models) {
    key.models.emplace();
    std::string list = *o.models;
    for (size_t start = 0; start <= list.size();) {
      size_t comma = std::min(list.find(',', start), list.size());
      std::string id = list.substr(start, comma - start);
      if (!id.empty()) key.models->push_back(id);
      start = comma + 1;
    }
    if (key.models->empty()) return failWith(Error::invalid("--models needs at least one model id"));
  }
  // The lookup prefix must be unique; a clash (1 in 4 billion per pair) just draws again.
  for (int tries = 0; tries < 5; ++tries) {
    GeneratedKey g = generateApiKey();
    auto clash = (*store)->findKeyByPrefix(g.prefix);
    if (!clash) return failWith(clash.error());
    if (*clash) continue;
    key.prefix = g.prefix;
    key.hash = g.hash;
    auto created = (*store)->createKey(key);
    if (!created) return failWith(created.error());
    std::cout << g.key << "\n";
    std::cerr << std::format(
        "created key '{}' (id {}, scope {}{}{}{}). It is shown only now: store it safely.\n", created->name, created->id,
        created->scope, created->models ? ", models " + joinNames(*created->models) : "",
        created->rate.empty() ? "" : ", rate " + created->rate,
        created->max_queued ? std::format(", max queued {}", *created->max_queued) : "");
    return 0;
  }
  return failWith(Error::internal("could not draw a unique key prefix"));
}

int keysList(const Config& config, bool json) {
  auto store = openKeyStore(config);
  if (!store) return failWith(store.error());
  auto keys = (*store)->listKeys();
  if (!keys) return failWith(keys.error());
  if (json) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (auto& k : *keys) out.push_back(keyToJson(k));
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << std::format("{:>4}  {:<20} {:<6} {:<8} {:<24} {:<8} {:<10} {}\n", "ID", "NAME", "SCOPE", "STATUS",
                           "MODELS", "RATE", "MAX_QUEUED", "PREFIX");
  for (auto& k : *keys) {
    std::cout << std::format("{:>4}  {:<20} {:<6} {:<8} {:<24} {:<8} {:<10} sk-statim-{}...\n", k.id, k.name, k.scope,
                             k.revoked_at ? "revoked" : "active", k.models ? joinNames(*k.models, ",") : "*",
                             k.rate.empty() ? "-" : k.rate,
                             k.max_queued ? std::to_string(*k.max_queued) : "-", k.prefix);
  }
  return 0;
}

int keysRevoke(const Config& config, const std::string& name_or_id) {
  auto store = openKeyStore(config);
  if (!store) return failWith(store.error());
  auto revoked = (*store)->revokeKey(name_or_id);
  if (!revoked) return failWith(revoked.error());
  std::cerr << std::format("revoked key '{}' (id {}); requests with it are refused from now on\n", revoked->name,
                           revoked->id);
  return 0;
}

}  // namespace statim::cli
