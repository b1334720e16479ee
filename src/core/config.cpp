#include "core/config.h"

#include <algorithm>
#include <charconv>
#include <format>
#include <functional>
#include <limits>
#include <variant>

#include <toml++/toml.hpp>

extern char** environ;

namespace statim {
namespace {

using Member = std::variant<std::string Config::*, std::filesystem::path Config::*, int Config::*,
                            std::int64_t Config::*, double Config::*, bool Config::*>;

struct Key {
  const char* name;  // dotted TOML path
  Member member;
};

const Key kKeys[] = {
    {"data_dir", &Config::data_dir},
    {"models_dir", &Config::models_dir},
    {"store.url", &Config::store_url},
    {"store.files_dir", &Config::store_files_dir},
    {"node.role", &Config::node_role},
    {"node.id", &Config::node_id},
    {"http.host", &Config::http_host},
    {"http.port", &Config::http_port},
    {"http.threads", &Config::http_threads},
    {"http.max_body_bytes", &Config::http_max_body_bytes},
    {"log.level", &Config::log_level},
    {"log.format", &Config::log_format},
    {"compute.cores", &Config::compute_cores},
    {"models.max_memory", &Config::models_max_memory},
    {"jobs.max_attempts", &Config::jobs_max_attempts},
    {"jobs.lease_seconds", &Config::jobs_lease_seconds},
    {"jobs.shutdown_grace_seconds", &Config::jobs_shutdown_grace_seconds},
    {"jobs.default_max_queue", &Config::jobs_default_max_queue},
    {"jobs.max_page_size", &Config::jobs_max_page_size},
    {"jobs.max_wait_seconds", &Config::jobs_max_wait_seconds},
    {"jobs.retention_days", &Config::jobs_retention_days},
    {"jobs.sweep_interval_seconds", &Config::jobs_sweep_interval_seconds},
    {"jobs.reject_unserved", &Config::jobs_reject_unserved},
    {"auth.mode", &Config::auth_mode},
    {"audit.retention_days", &Config::audit_retention_days},
    {"webhooks.secret", &Config::webhooks_secret},
    {"webhooks.max_attempts", &Config::webhooks_max_attempts},
    {"webhooks.retry_base_seconds", &Config::webhooks_retry_base_seconds},
    {"webhooks.retry_max_seconds", &Config::webhooks_retry_max_seconds},
    {"webhooks.timeout_seconds", &Config::webhooks_timeout_seconds},
};

std::string envName(std::string_view key) {
  std::string out = "STATIM_";
  for (char c : key) out += c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

template <typename T>
Result<T> parseNumber(const std::string& key, const std::string& text) {
  T value{};
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size()) {
    return fail(Error::invalid(std::format("config {}: '{}' is not a valid number", key, text), key));
  }
  return value;
}

Result<void> assign(Config& c, const Key& k, const std::string& text) {
  return std::visit(
      [&](auto member) -> Result<void> {
        using T = std::remove_reference_t<decltype(c.*member)>;
        if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::filesystem::path>) {
          c.*member = text;
        } else if constexpr (std::is_same_v<T, bool>) {
          if (text == "true" || text == "1") {
            c.*member = true;
          } else if (text == "false" || text == "0") {
            c.*member = false;
          } else {
            return fail(Error::invalid(std::format("config {}: '{}' is not true or false", k.name, text), k.name));
          }
        } else {
          auto v = parseNumber<T>(k.name, text);
          if (!v) return fail(v.error());
          c.*member = *v;
        }
        return ok();
      },
      k.member);
}

Result<void> assignToml(Config& c, const Key& k, const toml::node& node) {
  return std::visit(
      [&](auto member) -> Result<void> {
        using T = std::remove_reference_t<decltype(c.*member)>;
        if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::filesystem::path>) {
          if (auto s = node.value<std::string>()) {
            c.*member = *s;
            return ok();
          }
          return fail(Error::invalid(std::format("config {}: expected a string", k.name), k.name));
        } else if constexpr (std::is_same_v<T, bool>) {
          if (auto v = node.value<bool>(); v && node.is_boolean()) {
            c.*member = *v;
            return ok();
          }
          return fail(Error::invalid(std::format("config {}: expected true or false", k.name), k.name));
        } else if constexpr (std::is_same_v<T, double>) {
          if (auto v = node.value<double>()) {
            c.*member = *v;
            return ok();
          }
          return fail(Error::invalid(std::format("config {}: expected a number", k.name), k.name));
        } else {
          // is_integer() first: value<int64_t>() of a float out of int64's range is undefined
          // behaviour inside toml++ (found by tests/fuzz/fuzz_toml).
          if (node.is_integer()) {
            const std::int64_t v = *node.value<std::int64_t>();
            if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) {
              return fail(Error::invalid(std::format("config {}: {} is out of range", k.name, v), k.name));
            }
            c.*member = static_cast<T>(v);
            return ok();
          }
          return fail(Error::invalid(std::format("config {}: expected an integer", k.name), k.name));
        }
      },
      k.member);
}

const Key* findKey(std::string_view name) {
  auto it = std::ranges::find_if(kKeys, [&](const Key& k) { return name == k.name; });
  return it == std::end(kKeys) ? nullptr : &*it;
}

// Rejects keys the file has but we do not know, so a typo never silently does nothing.
Result<void> applyTable(Config& c, const toml::table& table, const std::string& prefix) {
  for (auto&& [k, node] : table) {
    std::string name = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (auto* sub = node.as_table()) {
      if (auto r = applyTable(c, *sub, name); !r) return r;
      continue;
    }
    const Key* key = findKey(name);
    if (!key) return fail(Error::invalid(std::format("config: unknown key '{}'", name), name));
    if (auto r = assignToml(c, *key, node); !r) return r;
  }
  return ok();
}

}  // namespace

Result<std::int64_t> parseMemoryBudget(const std::string& text, std::int64_t physical) {
  auto bad = [&] {
    return fail(Error::invalid(std::format("config models.max_memory: '{}' is not a size; use a share of physical "
                                           "memory (\"75%\"), a size (\"12GiB\", \"800MB\", bytes) or \"off\"",
                                           text),
                               "models.max_memory"));
  };
  if (text == "off" || text == "0") return 0;
  double value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || !(value > 0)) return bad();
  std::string unit(ptr, text.data() + text.size());
  if (unit == "%") {
    if (value > 100) return bad();
    return static_cast<std::int64_t>(static_cast<double>(physical) * value / 100);
  }
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1},      {"B", 1},        {"KB", 1e3},        {"MB", 1e6},           {"GB", 1e9},
      {"TB", 1e12}, {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
  for (auto& [name, scale] : kUnits) {
    if (unit == name) return static_cast<std::int64_t>(value * scale);
  }
  return bad();
}

Result<void> validateConfig(const Config& c) {
  if (c.http_port < 0 || c.http_port > 65535)
    return fail(Error::invalid("config http.port must be 0..65535", "http.port"));
  if (c.log_format != "text" && c.log_format != "json")
    return fail(Error::invalid("config log.format must be 'text' or 'json'", "log.format"));
  if (c.compute_cores < 0 || c.compute_cores > 4096)
    return fail(
        Error::invalid("config compute.cores must be 0..4096 (0 = every core this process may use)", "compute.cores"));
  if (auto r = parseMemoryBudget(c.models_max_memory, std::int64_t{1} << 40); !r) return fail(r.error());
  if (c.jobs_max_attempts < 1)
    return fail(Error::invalid("config jobs.max_attempts must be >= 1", "jobs.max_attempts"));
  if (c.jobs_lease_seconds <= 0)
    return fail(Error::invalid("config jobs.lease_seconds must be > 0", "jobs.lease_seconds"));
  if (c.http_max_body_bytes < 1024)
    return fail(Error::invalid("config http.max_body_bytes must be >= 1024", "http.max_body_bytes"));
  if (c.jobs_max_page_size < 1)
    return fail(Error::invalid("config jobs.max_page_size must be >= 1", "jobs.max_page_size"));
  if (!(c.jobs_max_wait_seconds >= 0 && c.jobs_max_wait_seconds <= 3600))
    return fail(
        Error::invalid("config jobs.max_wait_seconds must be 0..3600 (0 turns ?wait= off)", "jobs.max_wait_seconds"));
  if (c.auth_mode != "required" && c.auth_mode != "off")
    return fail(Error::invalid("config auth.mode must be 'required' or 'off'", "auth.mode"));
  if (c.node_role != "all" && c.node_role != "api" && c.node_role != "worker")
    return fail(Error::invalid("config node.role must be 'all', 'api' or 'worker'", "node.role"));
  if (!c.store_url.empty() && !c.store_url.starts_with("postgresql://") && !c.store_url.starts_with("postgres://") &&
      !c.store_url.starts_with("sqlite:"))
    return fail(
        Error::invalid("config store.url must be empty (SQLite in the data dir), sqlite:PATH or "
                       "postgresql://[user[:password]@][host][:port]/dbname[?param=value...]",
                       "store.url"));
  if (c.node_role != "all" && !c.store_url.starts_with("postgres"))
    return fail(Error::invalid(std::format("config node.role '{}' needs a store shared by several nodes "
                                           "(store.url = postgresql://...); with SQLite one node does everything",
                                           c.node_role),
                               "node.role"));
  if (c.jobs_retention_days < 0 || c.audit_retention_days < 0)
    return fail(Error::invalid("config jobs.retention_days and audit.retention_days must be >= 0 (0 = keep)",
                               c.jobs_retention_days < 0 ? "jobs.retention_days" : "audit.retention_days"));
  if (c.jobs_sweep_interval_seconds <= 0)
    return fail(Error::invalid("config jobs.sweep_interval_seconds must be > 0", "jobs.sweep_interval_seconds"));
  if (c.webhooks_max_attempts < 1)
    return fail(Error::invalid("config webhooks.max_attempts must be >= 1", "webhooks.max_attempts"));
  if (c.webhooks_retry_base_seconds <= 0 || c.webhooks_retry_max_seconds < c.webhooks_retry_base_seconds)
    return fail(Error::invalid("config webhooks.retry_base_seconds must be > 0 and <= webhooks.retry_max_seconds",
                               "webhooks.retry_base_seconds"));
  if (c.webhooks_timeout_seconds <= 0)
    return fail(Error::invalid("config webhooks.timeout_seconds must be > 0", "webhooks.timeout_seconds"));
  return ok();
}

Result<void> setConfigValue(Config& config, const std::string& key, const std::string& value) {
  const Key* k = findKey(key);
  if (!k) return fail(Error::invalid(std::format("config: unknown key '{}'", key), key));
  return assign(config, *k, value);
}

Result<Config> loadConfig(const std::filesystem::path& path, const std::map<std::string, std::string>& env) {
  Config c;
  if (!path.empty()) {
    try {
      toml::table table = toml::parse_file(path.string());
      if (auto r = applyTable(c, table, ""); !r) return fail(r.error());
    } catch (const toml::parse_error& e) {
      return fail(Error::invalid(
          std::format("config {}: {} (line {})", path.string(), e.description(), e.source().begin.line)));
    }
  }
  for (const Key& k : kKeys) {
    if (auto it = env.find(envName(k.name)); it != env.end()) {
      if (auto r = assign(c, k, it->second); !r) {
        return fail(Error::invalid(std::format("{} (from {})", r.error().message, it->first), k.name));
      }
    }
  }
  if (auto r = validateConfig(c); !r) return fail(r.error());
  return c;
}

std::map<std::string, std::string> processEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string_view::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

}  // namespace statim
