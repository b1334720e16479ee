// Per-key request rate limits: a token bucket per key, holding up to `count` requests and
// refilled at count/per_seconds. In-process: with several nodes, each node limits on its own.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>

#include "core/api_key.h"

namespace statim::api {

class RateLimiter {
 public:
  // Takes one request from the key's bucket. nullopt: allowed; else seconds until one is.
  std::optional<double> take(std::int64_t key_id, const Rate& rate);

 private:
  struct Bucket {
    double tokens;
    std::chrono::steady_clock::time_point at;
  };
  std::mutex mu_;
  std::map<std::int64_t, Bucket> buckets_;  // guarded by mu_
};

}  // namespace statim::api
