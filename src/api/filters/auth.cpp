#include "api/filters/auth.h"

#include <algorithm>
#include <cmath>
#include <format>

#include "api/http_util.h"
#include "core/api_key.h"
#include "core/crypto.h"
#include "core/strings.h"

namespace statim::api {
namespace {

// The key the client presented: Authorization: Bearer <key>, else X-API-Key.
std::string presentedKey(const drogon::HttpRequest& req) {
  const std::string& auth = req.getHeader("authorization");
  if (auth.size() > 7 && (auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0)) {
    std::string key = auth.substr(7);
    key.erase(0, key.find_first_not_of(' '));
    return key;
  }
  return req.getHeader("x-api-key");
}

Error unauthenticated(std::string message) { return {ErrorCode::kUnauthenticated, std::move(message), {}}; }

}  // namespace

std::optional<JobOwner> Principal::owner() const {
  if (!key) return std::nullopt;
  return JobOwner{key->id, key->name, key->max_queued};
}

Result<void> Principal::mayUseModel(const std::string& model) const {
  if (!key || !key->models || std::ranges::find(*key->models, model) != key->models->end()) return ok();
  return fail(Error{ErrorCode::kPermissionDenied,
                    std::format("key '{}' may not use model '{}' (allowed: {})", key->name, model,
                                key->models->empty() ? "none" : joinNames(*key->models)),
                    "model"});
}

Authenticator::Decision Authenticator::check(const drogon::HttpRequest& req, const RouteInfo* route) {
  Access access = route ? route->access : Access::kUser;
  // OPTIONS on a known path only lists its methods (no data): answered without a key.
  if (!route && req.method() == drogon::Options && !allowedMethods(req.path()).empty()) access = Access::kPublic;
  if (!required_ || access == Access::kPublic) return {};
  auto refuse = [](Error e, Principal p = {}) { return Decision{std::move(p), std::move(e), 0}; };
  std::string presented = presentedKey(req);
  if (presented.empty()) {
    return refuse(unauthenticated("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"));
  }
  auto prefix = apiKeyPrefix(presented);
  if (!prefix) return refuse(unauthenticated("invalid API key"));
  auto found = keys_.findKeyByPrefix(*prefix);
  if (!found) return refuse(found.error());
  // The prefix only finds the row; the whole key must match its hash (compared in constant time).
  if (!*found || !crypto::constantTimeEqual((*found)->hash, crypto::sha256Hex(presented))) {
    return refuse(unauthenticated("invalid API key"));
  }
  Principal who{std::move(**found)};
  const ApiKey& key = *who.key;
  if (key.revoked_at) return refuse(unauthenticated(std::format("API key '{}' was revoked", key.name)), who);
  if (access == Access::kAdmin && key.scope != "admin") {
    return refuse(Error{ErrorCode::kPermissionDenied,
                        std::format("key '{}' has scope '{}'; {} {} needs scope 'admin'", key.name, key.scope,
                                    methodName(route->method), route->path),
                        {}},
                  who);
  }
  if (!key.rate.empty()) {
    if (auto rate = parseRate(key.rate)) {
      if (auto wait = limiter_.take(key.id, *rate)) {
        double retry = std::max(1.0, std::ceil(*wait));
        Error e{ErrorCode::kRateLimited,
                std::format("key '{}' exceeded its rate limit of {}; retry in {} s", key.name, key.rate,
                            static_cast<long>(retry)),
                {}};
        return {who, std::move(e), retry};
      }
    }
  }
  return {std::move(who), std::nullopt, 0};
}

Principal principalOf(const drogon::HttpRequest& req) {
  auto attrs = req.attributes();
  return attrs->find("principal") ? attrs->get<Principal>("principal") : Principal{};
}

void setPrincipal(const drogon::HttpRequest& req, Principal p) { req.attributes()->insert("principal", std::move(p)); }

Result<void> bindToCaller(const drogon::HttpRequest& req, NewJob& job) {
  auto key = idempotencyKey(req);
  if (!key) return fail(key.error());
  Principal who = principalOf(req);
  if (auto r = who.mayUseModel(job.model); !r) return r;
  job.owner = who.owner();
  if (!key->empty()) {
    job.idempotency_key = *key;
    job.request_hash = requestHash(req);
  }
  return ok();
}

}  // namespace statim::api
