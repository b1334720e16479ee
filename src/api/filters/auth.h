// Authentication and authorisation of requests: API keys (Authorization: Bearer <key> or
// X-API-Key), route scopes, per-key model lists and rate limits, and job ownership.
#pragma once

#include <optional>
#include <string>

#include <drogon/HttpRequest.h>

#include "api/filters/rate_limiter.h"
#include "api/routes.h"
#include "statim/error.h"
#include "statim/job.h"
#include "store/key_store.h"

namespace statim::api {

// Who is calling. Without a key (auth.mode off) the caller may do everything, owns nothing.
struct Principal {
  std::optional<ApiKey> key;

  bool admin() const { return !key || key->scope == "admin"; }
  std::string name() const { return key ? key->name : ""; }
  // Whose jobs this caller may see: nullopt = everyone's.
  std::optional<std::int64_t> jobScope() const {
    return admin() ? std::nullopt : std::optional<std::int64_t>(key->id);
  }
  bool canSee(const Job& job) const { return admin() || job.owner_key_id == key->id; }
  // The owner recorded on jobs this caller creates.
  std::optional<JobOwner> owner() const;
  // kPermissionDenied when the key may not use `model`.
  Result<void> mayUseModel(const std::string& model) const;
  bool listsModel(const std::string& model) const { return mayUseModel(model).has_value(); }
};

class Authenticator {
 public:
  Authenticator(KeyStore& keys, bool required) : keys_(keys), required_(required) {}
  bool required() const { return required_; }

  struct Decision {
    Principal principal;         // the key, when one was identified (even if then refused)
    std::optional<Error> error;  // set: refuse with it (401, 403, 429, or a store failure)
    double retry_after = 0;      // on a rate-limit refusal: seconds to wait
  };
  // Decides whether the request may reach `route` (null: no route matched; treated as a user
  // route so nothing unrouted is reachable without a key).
  Decision check(const drogon::HttpRequest& req, const RouteInfo* route);

 private:
  KeyStore& keys_;
  bool required_;
  RateLimiter limiter_;
};

// The principal the auth advice attached to a request (an all-powerful anonymous one when none).
Principal principalOf(const drogon::HttpRequest& req);
// Makes a new job the caller's: the request's Idempotency-Key (400 when malformed) bound to this
// exact request, the key's permission for the job's model (403), and the owner.
Result<void> bindToCaller(const drogon::HttpRequest& req, NewJob& job);
void setPrincipal(const drogon::HttpRequest& req, Principal p);

}  // namespace statim::api
