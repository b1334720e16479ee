// issueKey: the one way a key is made, for `statim keys create` and POST /admin/keys.
#include "store/key_store.h"

#include <algorithm>
#include <format>

#include "core/api_key.h"

namespace statim {

Result<IssuedKey> issueKey(KeyStore& store, ApiKey spec) {
  auto nameChar = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  };
  if (spec.name.empty() || spec.name.size() > 64 || !std::ranges::all_of(spec.name, nameChar)) {
    return fail(Error::invalid("'name' must be 1..64 characters of letters, digits, '-', '_' or '.'", "name"));
  }
  if (spec.scope != "user" && spec.scope != "admin") {
    return fail(
        Error::invalid(std::format("'scope' must be 'user' or 'admin' (got '{}')", spec.scope.substr(0, 64)), "scope"));
  }
  if (!spec.rate.empty()) {
    if (auto r = parseRate(spec.rate); !r) return fail(Error::invalid(r.error().message, "rate"));
  }
  if (spec.max_queued && *spec.max_queued < 1) return fail(Error::invalid("'max_queued' must be >= 1", "max_queued"));
  if (spec.models) {
    std::erase(*spec.models, std::string());
    if (spec.models->empty()) return fail(Error::invalid("'models' needs at least one model id", "models"));
  }
  // The lookup prefix must be unique; a clash (1 in 4 billion per pair) just draws again.
  for (int tries = 0; tries < 5; ++tries) {
    GeneratedKey g = generateApiKey();
    auto clash = store.findKeyByPrefix(g.prefix);
    if (!clash) return fail(clash.error());
    if (*clash) continue;
    spec.prefix = g.prefix;
    spec.hash = g.hash;
    auto created = store.createKey(spec);
    if (!created) return fail(created.error());
    return IssuedKey{std::move(*created), std::move(g.key)};
  }
  return fail(Error::internal("could not draw a unique key prefix"));
}

}  // namespace statim
