#include "cli/commands.h"

#include <csignal>
#include <cstdlib>
#include <filesystem>

#include <drogon/HttpAppFramework.h>

#include "api/server.h"
#include "core/logging.h"
#include "models/model_registry.h"
#include "scheduler/scheduler.h"
#include "store/sqlite/sqlite_job_store.h"

namespace statim::cli {

int serve(const Config& config) {
  log::init(config.log_level, config.log_format);
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) {
    log::error("cannot create data dir", {{"data_dir", config.data_dir.string()}, {"error", ec.message()}});
    return 1;
  }
  auto db_path = config.data_dir / "statim.db";
  auto store = SqliteJobStore::open(db_path);
  if (!store) {
    log::error("cannot open the job store", {{"path", db_path.string()}, {"error", store.error().message}});
    return 1;
  }
  log::info("store: open", {{"path", db_path.string()}, {"schema_version", (*store)->schemaVersion()}});

  auto models = ModelRegistry::fromDirectory(config.models_dir, config.jobs_default_max_queue);
  for (auto& e : models->list()) {
    if (e.state == ModelState::kFailed) {
      log::error("models: unusable manifest", {{"model", e.manifest.id}, {"reason", e.reason}});
    }
  }
  SchedulerOptions options;
  options.lease = std::chrono::milliseconds(static_cast<int64_t>(config.jobs_lease_seconds * 1000));
  options.max_attempts = config.jobs_max_attempts;
  Scheduler scheduler(**store, *models, options);
  // SQLite: this process owns the file, so every PROCESSING job was interrupted by our last exit.
  if (auto r = scheduler.recover(true); !r) {
    log::error("cannot recover interrupted jobs", {{"error", r.error().message}});
    return 1;
  }
  models->loadAll([&scheduler](const std::string& id) { scheduler.startModel(id); });

  api::ApiContext ctx{config, **store, scheduler, *models};
  api::configureServer(ctx);
  drogon::app().registerBeginningAdvice([&config] {
    auto listeners = drogon::app().getListeners();
    log::info("statim: listening", {{"address", listeners.empty() ? "" : listeners.front().toIpPort()},
                                    {"version", STATIM_VERSION},
                                    {"models_dir", config.models_dir.string()},
                                    {"data_dir", config.data_dir.string()}});
  });
  drogon::app().run();  // returns after SIGTERM / SIGINT

  log::info("statim: stopping; waiting for running jobs", {{"grace_s", config.jobs_shutdown_grace_seconds}});
  bool clean =
      scheduler.shutdown(std::chrono::milliseconds(static_cast<int64_t>(config.jobs_shutdown_grace_seconds * 1000)));
  log::info("statim: stopped", {{"all_jobs_finished", clean}});
  return 0;
}

}  // namespace statim::cli
