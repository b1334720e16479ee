#include "backends/params.h"
#include "core/strings.h"

namespace statim::params {
namespace {

std::string field(std::string_view where, std::string_view key) {
  return where.empty() ? std::string(key) : std::format("{}.{}", where, key);
}

}  // namespace

Result<void> onlyKnown(const nlohmann::json& obj, std::initializer_list<std::string_view> known,
                       std::string_view where) {
  if (!obj.is_object()) return fail(Error::invalid(std::format("'{}' must be an object", where), std::string(where)));
  for (auto& [k, v] : obj.items()) {
    bool found = false;
    for (auto kn : known) found = found || kn == k;
    if (!found) {
      std::string list = joinNames(known);
      return fail(
          Error::invalid(std::format("unknown field '{}' (allowed: {})", field(where, k), list), field(where, k)));
    }
  }
  return ok();
}

Result<void> integer(const nlohmann::json& obj, std::string_view key, std::int64_t min, std::int64_t max,
                     std::string_view where) {
  auto it = obj.find(key);
  if (it == obj.end()) return ok();
  auto f = field(where, key);
  if (!it->is_number_integer()) return fail(Error::invalid(std::format("'{}' must be an integer", f), f));
  // nlohmann stores non-negative integers as unsigned: compare in the type the value has.
  bool in_range = it->is_number_unsigned() ? (max >= 0 && it->get<std::uint64_t>() <= static_cast<std::uint64_t>(max) &&
                                              static_cast<std::int64_t>(it->get<std::uint64_t>()) >= min)
                                           : (it->get<std::int64_t>() >= min && it->get<std::int64_t>() <= max);
  if (!in_range) return fail(Error::invalid(std::format("'{}' must be between {} and {}", f, min, max), f));
  return ok();
}

Result<void> number(const nlohmann::json& obj, std::string_view key, double min, double max, std::string_view where) {
  auto it = obj.find(key);
  if (it == obj.end()) return ok();
  auto f = field(where, key);
  if (!it->is_number()) return fail(Error::invalid(std::format("'{}' must be a number", f), f));
  double v = it->get<double>();
  if (!(v >= min && v <= max))
    return fail(Error::invalid(std::format("'{}' must be between {} and {}", f, min, max), f));
  return ok();
}

Result<void> string(const nlohmann::json& obj, std::string_view key, size_t max_len, std::string_view where) {
  auto it = obj.find(key);
  if (it == obj.end()) return ok();
  auto f = field(where, key);
  if (!it->is_string()) return fail(Error::invalid(std::format("'{}' must be a string", f), f));
  if (it->get_ref<const std::string&>().size() > max_len) {
    return fail(Error::invalid(std::format("'{}' must be at most {} bytes", f, max_len), f));
  }
  return ok();
}

Result<void> stringOrList(const nlohmann::json& obj, std::string_view key, size_t max_items, size_t max_len,
                          std::string_view where) {
  auto it = obj.find(key);
  if (it == obj.end()) return ok();
  auto f = field(where, key);
  auto bad = [&] {
    return fail(Error::invalid(
        std::format("'{}' must be a non-empty string or a list of at most {} non-empty strings of at most {} bytes", f,
                    max_items, max_len),
        f));
  };
  auto good = [&](const nlohmann::json& s) {
    return s.is_string() && !s.get_ref<const std::string&>().empty() &&
           s.get_ref<const std::string&>().size() <= max_len;
  };
  if (it->is_string()) return good(*it) ? ok() : bad();
  if (!it->is_array() || it->size() > max_items) return bad();
  for (auto& s : *it) {
    if (!good(s)) return bad();
  }
  return ok();
}

}  // namespace statim::params
