// Small string helpers shared by error messages.
#pragma once

#include <string>
#include <string_view>

namespace statim {

// "a, b, c" from any range of string-like items.
template <typename Range>
std::string joinNames(const Range& items, std::string_view sep = ", ") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += std::string_view(item);
  }
  return out;
}

}  // namespace statim
