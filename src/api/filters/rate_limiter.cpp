#include "api/filters/rate_limiter.h"

#include <algorithm>

namespace statim::api {

std::optional<double> RateLimiter::take(std::int64_t key_id, const Rate& rate) {
  auto now = std::chrono::steady_clock::now();
  double capacity = std::max(1.0, rate.count);  // "0.5/s" is one request every 2 s
  std::lock_guard lock(mu_);
  auto [it, fresh] = buckets_.try_emplace(key_id, Bucket{capacity, now});
  Bucket& b = it->second;
  if (!fresh) {
    double elapsed = std::chrono::duration<double>(now - b.at).count();
    b.tokens = std::min(capacity, b.tokens + elapsed * rate.perSecond());
    b.at = now;
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return std::nullopt;
  }
  return (1 - b.tokens) / rate.perSecond();
}

}  // namespace statim::api
