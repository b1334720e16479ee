// API key material and limits: generating a key, finding its lookup prefix, parsing rates.
// A key reads `sk-statim-<48 hex>`; its first 8 hex digits are the (non-secret) lookup prefix,
// and only the SHA-256 of the whole key is stored.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "statim/error.h"

namespace statim {

struct GeneratedKey {
  std::string key;     // shown once to the operator, never stored
  std::string prefix;  // stored, used to find the row
  std::string hash;    // stored: hex SHA-256 of key
};

GeneratedKey generateApiKey();
// The lookup prefix of a presented key, or nullopt when it is not shaped like one of ours.
std::optional<std::string> apiKeyPrefix(std::string_view key);

struct Rate {
  double count = 0;       // requests ...
  double per_seconds = 1;  // ... per this many seconds
  double perSecond() const { return count / per_seconds; }
};
// "10/s", "600/m", "1000/h", "2.5/s": a positive count per second, minute or hour.
Result<Rate> parseRate(std::string_view text);

}  // namespace statim
