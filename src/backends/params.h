// Helpers for backends validating their job params: each error names the field and the rule.
// A backend lists its params once, as Specs: check() validates a job's params against them and
// describe() tells clients about them (GET /models: job_types[type].params; the dashboard's forms).
#pragma once

#include <format>
#include <initializer_list>
#include <optional>
#include <span>
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

// A boolean when present.
Result<void> boolean(const nlohmann::json& obj, std::string_view key, std::string_view where);

// One param a job type takes.
struct Spec {
  enum Kind { kInteger, kNumber, kString, kBoolean, kStringOrList, kObject };
  std::string_view name;
  Kind kind;
  double min = 0;                  // kInteger, kNumber: the allowed range
  double max = 0;                  // ... ; kStringOrList: at most this many strings
  std::size_t max_len = 0;         // kString, kStringOrList: bytes per string
  std::optional<double> fallback;  // the value used when the param is absent, where fixed
  std::string_view help = {};      // what it does, in a few words
};

// The keys of `obj` (params) are among `specs` (or `also`, checked elsewhere), and each present
// one is of its kind and in its range. Errors name the field ("params.top_k") and the rule.
Result<void> check(const nlohmann::json& obj, std::span<const Spec> specs, std::string_view where = "params",
                   std::span<const std::string_view> also = {});
// JSON Schema properties for `specs`: {"top_k": {"type": "integer", "minimum": 0, "maximum":
// 100000, "default": 40, "description": "..."}}.
nlohmann::json describe(std::span<const Spec> specs);

}  // namespace statim::params
