// `statim keys create|list|revoke`: API keys, on the same store as `statim serve` (safe while
// it runs: the database serialises the writers, and the server reads keys from the store per
// request). With store.url set, on that database: a key created there is valid on every node.
#include <algorithm>
#include <format>
#include <iostream>

#include "api/dto/key_dto.h"
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

}  // namespace

int keysCreate(const Config& config, const KeyOptions& o) {
  ApiKey spec{.name = o.name, .scope = o.scope, .rate = o.rate, .max_queued = o.max_queued};
  if (o.models) {
    spec.models.emplace();
    std::string list = *o.models;
    for (size_t start = 0; start <= list.size();) {
      size_t comma = std::min(list.find(',', start), list.size());
      spec.models->push_back(list.substr(start, comma - start));
      start = comma + 1;
    }
  }
  auto store = openKeyStore(config);
  if (!store) return failWith(store.error());
  auto issued = issueKey(**store, std::move(spec));
  if (!issued) {
    // The message names the field as the API does ('max_queued'); here it is the option.
    Error e = issued.error();
    std::string quoted = "'" + e.field + "'";
    if (auto at = e.message.find(quoted); !e.field.empty() && at != std::string::npos) {
      std::string option = "--" + e.field;
      std::ranges::replace(option, '_', '-');
      e.message.replace(at, quoted.size(), option);
    }
    return failWith(e);
  }
  const ApiKey& created = issued->record;
  std::cout << issued->key << "\n";
  std::cerr << std::format("created key '{}' (id {}, scope {}{}{}{}). It is shown only now: store it safely.\n",
                           created.name, created.id, created.scope,
                           created.models ? ", models " + joinNames(*created.models) : "",
                           created.rate.empty() ? "" : ", rate " + created.rate,
                           created.max_queued ? std::format(", max queued {}", *created.max_queued) : "");
  return 0;
}

int keysList(const Config& config, bool json) {
  auto store = openKeyStore(config);
  if (!store) return failWith(store.error());
  auto keys = (*store)->listKeys();
  if (!keys) return failWith(keys.error());
  if (json) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (auto& k : *keys) out.push_back(api::keyToJson(k));
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
