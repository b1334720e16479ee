// Helpers for backends validating their job params: each error names the field and the rule.
#pragma once

#include <format>
#include <initializer_list>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "statim/error.h"

namespace statim::params {

// Rejects keys of `obj` not in `known`, naming them.
Result<void> onlyKnown(const nlohmann::json& obj, std::initializer_list<std::string_view> known,
                       std::string_view where);

// Each check passes when the key is absent; `where` prefixes the field name ("params").
Result<void> integer(const nlohmann::json& obj, std::string_view key, std::int64_t min, std::int64_t max,
                     std::string_view where);
Result<void> number(const nlohmann::json& obj, std::string_view key, double min, double max, std::string_view where);
Result<void> string(const nlohmann::json& obj, std::string_view key, size_t max_len, std::string_view where);
// A string or an array of at most max_items strings.
Result<void> stringOrList(const nlohmann::json& obj, std::string_view key, size_t max_items, size_t max_len,
                          std::string_view where);

}  // namespace statim::params
