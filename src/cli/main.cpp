// statim: a self-hosted AI inference server with a durable job API.
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "core/config.h"
#include "core/logging.h"

namespace {

// Options every subcommand that touches the data dir accepts.
struct Common {
  std::string config_path;
  std::optional<std::string> data_dir;
  std::optional<std::string> store;
  void add(CLI::App* cmd) {
    cmd->add_option("-c,--config", config_path, "TOML config file (keys overridable by STATIM_* env vars)")
        ->envname("STATIM_CONFIG");
    cmd->add_option("--data-dir", data_dir, "Where the database lives (data_dir)");
    cmd->add_option("--store", store,
                    "postgresql://... to share jobs with other nodes (store.url; default: SQLite in the data dir)");
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"statim: self-hosted AI inference server with a durable job API"};
  app.set_version_flag("--version,-V", std::string("statim ") + STATIM_VERSION);
  app.require_subcommand(1);

  Common common;
  std::optional<int> port;
  std::optional<std::string> host, models_dir, log_format, log_level, role;
  auto* serve = app.add_subcommand("serve", "Run the HTTP server");
  common.add(serve);
  serve->add_option("--host", host, "Listen address (http.host)");
  serve->add_option("-p,--port", port, "Listen port (http.port)");
  serve->add_option("--models-dir", models_dir, "Folder of model manifests (models_dir)");
  serve->add_option("--log-format", log_format, "text or json (log.format)");
  serve->add_option("--log-level", log_level, "debug, info, warn, error (log.level)");
  serve->add_option("--role", role,
                    "all (default), api (HTTP only, runs no model) or worker (runs models; health routes only); "
                    "api and worker need --store postgresql://... (node.role)");

  auto* keys = app.add_subcommand("keys", "Manage API keys (works while the server runs)");
  keys->require_subcommand(1);
  statim::cli::KeyOptions key_options;
  auto* create = keys->add_subcommand("create", "Create a key and print it once on stdout");
  common.add(create);
  create->add_option("--name", key_options.name, "A unique name for the key")->required();
  create->add_option("--scope", key_options.scope, "user (own jobs) or admin (everything)")
      ->check(CLI::IsMember({"user", "admin"}));
  create->add_option("--models", key_options.models, "Comma-separated model ids the key may use (default: all)");
  create->add_option("--rate", key_options.rate, "Request rate limit, e.g. 10/s, 600/m, 1000/h (default: none)");
  create->add_option("--max-queued", key_options.max_queued, "Most QUEUED jobs the key may have (default: none)");
  bool list_json = false;
  auto* list = keys->add_subcommand("list", "List keys (never the keys themselves)");
  common.add(list);
  list->add_flag("--json", list_json, "JSON output");
  std::string revoke_target;
  auto* revoke = keys->add_subcommand("revoke", "Revoke a key by name or id; refused at once by a running server");
  common.add(revoke);
  revoke->add_option("key", revoke_target, "Name or id of the key")->required();

  CLI11_PARSE(app, argc, argv);

  auto config = statim::loadConfig(common.config_path, statim::processEnvironment());
  if (!config) {
    std::cerr << "statim: " << config.error().message << "\n";
    return 2;
  }
  if (host) config->http_host = *host;
  if (port) config->http_port = *port;
  if (common.data_dir) config->data_dir = *common.data_dir;
  if (common.store) config->store_url = *common.store;
  if (role) config->node_role = *role;
  if (models_dir) config->models_dir = *models_dir;
  if (log_format) config->log_format = *log_format;
  if (log_level) config->log_level = *log_level;
  if (auto r = statim::validateConfig(*config); !r) {
    std::cerr << "statim: " << r.error().message << "\n";
    return 2;
  }
  if (serve->parsed()) return statim::cli::serve(*config);
  statim::log::init("warn", "text");  // stdout is for the command's output
  if (create->parsed()) return statim::cli::keysCreate(*config, key_options);
  if (list->parsed()) return statim::cli::keysList(*config, list_json);
  if (revoke->parsed()) return statim::cli::keysRevoke(*config, revoke_target);
  return 0;
}
