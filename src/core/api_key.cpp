#include "core/api_key.h"

#include <charconv>
#include <format>

#include "core/crypto.h"

namespace statim {
namespace {

constexpr std::string_view kKeyPrefix = "sk-statim-";
constexpr size_t kSecretHex = 48;
constexpr size_t kLookupHex = 8;

}  // namespace

GeneratedKey generateApiKey() {
  std::string key = std::string(kKeyPrefix) + crypto::randomHex(kSecretHex / 2);
  return {key, key.substr(kKeyPrefix.size(), kLookupHex), crypto::sha256Hex(key)};
}

std::optional<std::string> apiKeyPrefix(std::string_view key) {
  if (key.size() != kKeyPrefix.size() + kSecretHex || !key.starts_with(kKeyPrefix)) return std::nullopt;
  for (char c : key.substr(kKeyPrefix.size())) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return std::string(key.substr(kKeyPrefix.size(), kLookupHex));
}

Result<Rate> parseRate(std::string_view text) {
  auto bad = [&] {
    return fail(Error::invalid(
        std::format("rate '{}' must look like 10/s, 600/m or 1000/h (a positive number per second, minute or hour)",
                    text),
        "rate"));
  };
  size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash + 2 != text.size()) return bad();
  Rate r;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + slash, r.count);
  if (ec != std::errc{} || ptr != text.data() + slash || !(r.count > 0) || r.count > 1e9) return bad();
  switch (text.back()) {
    case 's': r.per_seconds = 1; break;
    case 'm': r.per_seconds = 60; break;
    case 'h': r.per_seconds = 3600; break;
    default: return bad();
  }
  return r;
}

}  // namespace statim
