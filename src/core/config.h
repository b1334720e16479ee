// Server configuration: defaults, then a TOML file, then STATIM_* environment variables, then
// command-line flags (applied by the CLI). Every key `a.b` is overridable as STATIM_A_B.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "statim/error.h"

namespace statim {

struct Config {
  std::filesystem::path data_dir = "data";
  std::filesystem::path models_dir = "models";
  // [store]
  // Where jobs, keys, audit and webhooks are kept: empty (the default) is SQLite in
  // <data_dir>/statim.db; postgresql://... is a PostgreSQL database several nodes share.
  std::string store_url;
  // The jobs' files (inputs, artifacts); empty: <data_dir>/files. With a shared store, a path
  // every node reads and writes (a shared volume).
  std::filesystem::path store_files_dir;
  // [node]
  std::string node_role = "all";  // all | api (HTTP only, runs no model) | worker (runs models, health routes only)
  std::string node_id;            // this node's name in leases and GET /nodes; empty: host name + pid
  // [http]
  std::string http_host = "0.0.0.0";
  int http_port = 5000;
  int http_threads = 0;  // 0: one per core
  std::int64_t http_max_body_bytes = 1 << 20;
  // [log]
  std::string log_level = "info";   // trace, debug, info, warn, error
  std::string log_format = "text";  // text | json
  // [compute]
  int compute_cores = 0;  // cores all models share (ComputeBudget); 0: every core this process may use
  // [models]
  // Memory all loaded models may take: "75%" (of physical memory), "12GiB", "800MB", a number of
  // bytes, or "off". Loading past it first unloads the least recently used idle models.
  std::string models_max_memory = "75%";
  // [jobs]
  int jobs_max_attempts = 3;       // starts before an interrupted job is FAILED
  double jobs_lease_seconds = 60;  // a PROCESSING job's lease; renewed while it runs
  double jobs_shutdown_grace_seconds = 30;
  std::int64_t jobs_default_max_queue = 1000;
  int jobs_max_page_size = 1000;
  double jobs_max_wait_seconds = 30;  // longest POST /job?wait= / GET /job/{id}?wait=
  double jobs_retention_days = 0;  // ended jobs older than this are deleted; 0 keeps them forever
  double jobs_sweep_interval_seconds = 600;  // how often retention runs
  // A shared store: a job for a model that no live node serves is refused (503) at submission
  // rather than left to wait for a node that serves it.
  bool jobs_reject_unserved = false;
  // [auth]
  std::string auth_mode = "required";  // required | off
  // [audit]
  double audit_retention_days = 90;  // 0 keeps audit rows forever
  // [webhooks]
  std::string webhooks_secret;  // HMAC key; empty: generated once into <data_dir>/webhook_secret
  int webhooks_max_attempts = 8;
  double webhooks_retry_base_seconds = 2;  // delay before retry n is base * 2^(n-1), capped
  double webhooks_retry_max_seconds = 3600;
  double webhooks_timeout_seconds = 10;
};

// Reads `path` (if non-empty) over the defaults, then applies `env` (normally the process
// environment). Unknown keys and wrong types are errors that name the key.
Result<Config> loadConfig(const std::filesystem::path& path, const std::map<std::string, std::string>& env);

std::map<std::string, std::string> processEnvironment();

// Range checks that tie keys together; loadConfig calls it, the CLI again after its flags.
Result<void> validateConfig(const Config& config);

// models.max_memory in bytes: `physical` is the memory the process may use; 0 means no budget.
// Errors name the key and say what is accepted.
Result<std::int64_t> parseMemoryBudget(const std::string& text, std::int64_t physical);

// Applies one "key=value" override by its dotted name (used by CLI flags and env handling).
Result<void> setConfigValue(Config& config, const std::string& key, const std::string& value);

}  // namespace statim
