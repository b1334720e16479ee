#include "models/manifest.h"

#include <format>
#include <regex>
#include <set>
#include <tuple>

#include <toml++/toml.hpp>

namespace statim {
namespace {

nlohmann::json toJson(const toml::node& node) {
  if (auto* t = node.as_table()) {
    nlohmann::json o = nlohmann::json::object();
    for (auto&& [k, v] : *t) o[std::string(k.str())] = toJson(v);
    return o;
  }
  if (auto* a = node.as_array()) {
    nlohmann::json arr = nlohmann::json::array();
    for (auto&& v : *a) arr.push_back(toJson(v));
    return arr;
  }
  if (auto v = node.value_exact<std::string>()) return *v;
  if (auto v = node.value_exact<std::int64_t>()) return *v;
  if (auto v = node.value_exact<double>()) return *v;
  if (auto v = node.value_exact<bool>()) return *v;
  return nullptr;
}

}  // namespace

Result<ModelManifest> parseManifest(const std::string& text, const std::filesystem::path& source,
                                    std::int64_t default_max_queue) {
  auto err = [&](std::string msg) {
    return statim::fail(Error::invalid(std::format("manifest {}: {}", source.filename().string(), msg)));
  };
  toml::table t;
  try {
    t = toml::parse(text, source.string());
  } catch (const toml::parse_error& e) {
    return err(std::format("{} (line {})", e.description(), e.source().begin.line));
  }
  static const std::set<std::string> kKnown = {"id",        "backend",  "file",     "type",  "description",
                                               "max_queue", "parallel", "required", "params", "max_input_bytes",
                                               "preload",   "keep_alive"};
  for (auto&& [k, v] : t) {
    if (!kKnown.contains(std::string(k.str()))) return err(std::format("unknown key '{}'", k.str()));
  }
  ModelManifest m;
  m.source = source;
  m.max_queue = default_max_queue;
  auto str = [&](const char* key, std::string& out, bool required) -> Result<void> {
    auto node = t[key];
    if (!node) return required ? statim::fail(Error::invalid(std::format("missing required key '{}'", key))) : ok();
    auto v = node.value_exact<std::string>();
    if (!v) return statim::fail(Error::invalid(std::format("'{}' must be a string", key)));
    out = *v;
    return ok();
  };
  for (auto [key, out, required] : {std::tuple{"id", &m.id, true},
                                    {"backend", &m.backend, true},
                                    {"type", &m.type, false},
                                    {"description", &m.description, false}}) {
    if (auto r = str(key, *out, required); !r) return err(r.error().message);
  }
  static const std::regex kIdPattern(R"([A-Za-z0-9][A-Za-z0-9._:/-]{0,127})");
  if (!std::regex_match(m.id, kIdPattern)) {
    return err(std::format("id '{}' must be 1-128 characters of letters, digits, '.', '_', ':', '/', '-'", m.id));
  }
  std::string file;
  if (auto r = str("file", file, false); !r) return err(r.error().message);
  if (!file.empty()) {
    std::filesystem::path p(file);
    m.file = p.is_absolute() ? p : (source.parent_path() / p).lexically_normal();
  }
  if (auto node = t["max_queue"]) {
    auto v = node.value_exact<std::int64_t>();
    if (!v || *v < 1) return err("'max_queue' must be an integer >= 1");
    m.max_queue = *v;
  }
  if (auto node = t["max_input_bytes"]) {
    auto v = node.value_exact<std::int64_t>();
    if (!v || *v < 1) return err("'max_input_bytes' must be an integer >= 1");
    m.max_input_bytes = *v;
  }
  if (auto node = t["parallel"]) {
    auto v = node.value_exact<std::int64_t>();
    if (!v || *v < 1 || *v > 256) return err("'parallel' must be an integer in 1..256");
    m.parallel = static_cast<int>(*v);
  }
  if (auto node = t["required"]) {
    auto v = node.value_exact<bool>();
    if (!v) return err("'required' must be true or false");
    m.required = *v;
  }
  if (auto node = t["preload"]) {
    auto v = node.value_exact<bool>();
    if (!v) return err("'preload' must be true or false");
    m.preload = *v;
  }
  if (auto node = t["keep_alive"]) {
    auto v = node.value<double>();
    if (!v || !(*v == -1 || *v >= 0)) return err("'keep_alive' must be a number of seconds >= 0, or -1 (never unload)");
    m.keep_alive = *v;
  }
  if (auto node = t["params"]) {
    if (!node.is_table()) return err("'params' must be a table");
    m.params = toJson(*node.node());
  }
  return m;
}

}  // namespace statim
