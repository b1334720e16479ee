// Reading clients' JSON, which may hold any type anywhere.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace statim {

// obj[key] when obj is an object and that value a string, else "" (nlohmann's value(key, "")
// throws on a number, say: a client's {"type": 5} must be a 400, not an exception).
inline std::string stringAt(const nlohmann::json& obj, std::string_view key) {
  if (!obj.is_object()) return {};
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace statim
