#include "backends/params.h"
#include "core/strings.h"

#include <algorithm>
#include <vector>

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

Result<void> boolean(const nlohmann::json& obj, std::string_view key, std::string_view where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_boolean()) return ok();
  auto f = field(where, key);
  return fail(Error::invalid(std::format("'{}' must be true or false", f), f));
}

Result<void> check(const nlohmann::json& obj, std::span<const Spec> specs, std::string_view where,
                   std::span<const std::string_view> also) {
  if (!obj.is_object()) return fail(Error::invalid(std::format("'{}' must be an object", where), std::string(where)));
  for (auto& [k, v] : obj.items()) {
    bool known = std::ranges::any_of(specs, [&](const Spec& s) { return s.name == k; }) ||
                 std::ranges::find(also, k) != also.end();
    if (!known) {
      std::vector<std::string_view> names;
      for (auto& s : specs) names.push_back(s.name);
      names.insert(names.end(), also.begin(), also.end());
      return fail(Error::invalid(std::format("unknown field '{}' (allowed: {})", field(where, k), joinNames(names)),
                                 field(where, k)));
    }
  }
  for (auto& s : specs) {
    Result<void> r = ok();
    switch (s.kind) {
      case Spec::kInteger:
        r = integer(obj, s.name, static_cast<std::int64_t>(s.min), static_cast<std::int64_t>(s.max), where);
        break;
      case Spec::kNumber: r = number(obj, s.name, s.min, s.max, where); break;
      case Spec::kString: r = string(obj, s.name, s.max_len, where); break;
      case Spec::kBoolean: r = boolean(obj, s.name, where); break;
      case Spec::kStringOrList: r = stringOrList(obj, s.name, static_cast<size_t>(s.max), s.max_len, where); break;
      case Spec::kObject:
        if (auto it = obj.find(s.name); it != obj.end() && !it->is_object()) {
          auto f = field(where, s.name);
          r = fail(Error::invalid(std::format("'{}' must be an object", f), f));
        }
        break;
    }
    if (!r) return r;
  }
  return ok();
}

nlohmann::json describe(std::span<const Spec> specs) {
  nlohmann::json out = nlohmann::json::object();
  for (auto& s : specs) {
    nlohmann::json d;
    switch (s.kind) {
      case Spec::kInteger:
        d = {{"type", "integer"},
             {"minimum", static_cast<std::int64_t>(s.min)},
             {"maximum", static_cast<std::int64_t>(s.max)}};
        if (s.fallback) d["default"] = static_cast<std::int64_t>(*s.fallback);
        break;
      case Spec::kNumber:
        d = {{"type", "number"}, {"minimum", s.min}, {"maximum", s.max}};
        if (s.fallback) d["default"] = *s.fallback;
        break;
      case Spec::kString: d = {{"type", "string"}, {"maxLength", s.max_len}}; break;
      case Spec::kBoolean:
        d = {{"type", "boolean"}};
        if (s.fallback) d["default"] = *s.fallback != 0;
        break;
      case Spec::kStringOrList:
        d = {{"oneOf",
              {{{"type", "string"}, {"maxLength", s.max_len}},
               {{"type", "array"},
                {"maxItems", static_cast<std::int64_t>(s.max)},
                {"items", {{"type", "string"}, {"maxLength", s.max_len}}}}}}};
        break;
      case Spec::kObject: d = {{"type", "object"}}; break;
    }
    if (!s.help.empty()) d["description"] = s.help;
    out[std::string(s.name)] = std::move(d);
  }
  return out;
}

}  // namespace statim::params
