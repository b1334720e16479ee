// statim: a self-hosted AI inference server with a durable job API.
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "core/config.h"

int main(int argc, char** argv) {
  CLI::App app{"statim: self-hosted AI inference server with a durable job API"};
  app.set_version_flag("--version,-V", std::string("statim ") + STATIM_VERSION);
  app.require_subcommand(1);

  std::string config_path;
  std::optional<int> port;
  std::optional<std::string> host, data_dir, models_dir, log_format, log_level;
  auto* serve = app.add_subcommand("serve", "Run the HTTP server");
  serve->add_option("-c,--config", config_path, "TOML config file (keys overridable by STATIM_* env vars)")
      ->envname("STATIM_CONFIG");
  serve->add_option("--host", host, "Listen address (http.host)");
  serve->add_option("-p,--port", port, "Listen port (http.port)");
  serve->add_option("--data-dir", data_dir, "Where the job database lives (data_dir)");
  serve->add_option("--models-dir", models_dir, "Folder of model manifests (models_dir)");
  serve->add_option("--log-format", log_format, "text or json (log.format)");
  serve->add_option("--log-level", log_level, "debug, info, warn, error (log.level)");

  CLI11_PARSE(app, argc, argv);

  auto config = statim::loadConfig(config_path, statim::processEnvironment());
  if (!config) {
    std::cerr << "statim: " << config.error().message << "\n";
    return 2;
  }
  if (host) config->http_host = *host;
  if (port) config->http_port = *port;
  if (data_dir) config->data_dir = *data_dir;
  if (models_dir) config->models_dir = *models_dir;
  if (log_format) config->log_format = *log_format;
  if (log_level) config->log_level = *log_level;
  if (auto r = statim::validateConfig(*config); !r) {
    std::cerr << "statim: " << r.error().message << "\n";
    return 2;
  }
  if (serve->parsed()) return statim::cli::serve(*config);
  return 0;
}
