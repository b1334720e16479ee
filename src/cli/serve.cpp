#include "cli/commands.h"

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <sys/stat.h>

#include <drogon/HttpAppFramework.h>

#include "api/dto/job_dto.h"
#include "api/server.h"
#include "api/webhook_transport.h"
#include "core/crypto.h"
#include "core/logging.h"
#include "events/in_process/in_process_bus.h"
#include "events/postgres/postgres_bus.h"
#include "models/model_registry.h"
#include "scheduler/housekeeping.h"
#include "scheduler/model_lifecycle.h"
#include "scheduler/node_presence.h"
#include "scheduler/scheduler.h"
#include "store/open_store.h"
#include "webhooks/dispatcher.h"

namespace statim::cli {
namespace {

ModelLifecycle* g_lifecycle = nullptr;  // for SIGHUP: reload the models dir

// The webhook signing secret: webhooks.secret, else one generated once into the data dir.
Result<std::string> webhookSecret(const Config& config) {
  if (!config.webhooks_secret.empty()) return config.webhooks_secret;
  auto path = config.data_dir / "webhook_secret";
  std::ifstream in(path);
  std::string secret;
  if (in && std::getline(in, secret) && !secret.empty()) return secret;
  secret = crypto::randomHex(32);
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << secret << "\n";
    if (!out) return fail(Error::storage("cannot write " + tmp.string()));
  }
  ::chmod(tmp.c_str(), 0600);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return fail(Error::storage("cannot write " + path.string() + ": " + ec.message()));
  log::info("webhooks: generated a signing secret (set webhooks.secret to choose one)", {{"path", path.string()}});
  return secret;
}

}  // namespace

int serve(const Config& config) {
  log::init(config.log_level, config.log_format);
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) {
    log::error("cannot create data dir", {{"data_dir", config.data_dir.string()}, {"error", ec.message()}});
    return 1;
  }
  auto opened = openStore(config);
  if (!opened) {
    log::error("cannot open the job store", {{"error", opened.error().message}});
    return 1;
  }
  auto& store = opened->store;
  log::info("store: open", {{"store", opened->description}, {"schema_version", store->schemaVersion()}});

  // Declared before the scheduler and the models: it outlives every inference call.
  ComputeBudget compute(config.compute_cores);
  log::info("compute: budget", {{"cores", compute.cores()}});
  auto models = ModelRegistry::fromDirectory(config.models_dir, config.jobs_default_max_queue, compute.cores());
  for (auto& e : models->list()) {
    if (e.state == ModelState::kFailed) {
      log::error("models: unusable manifest", {{"model", e.manifest.id}, {"reason", e.reason}});
    }
  }
  if (config.auth_mode == "required") {
    auto keys = store->listKeys();
    bool any = keys && std::ranges::any_of(*keys, [](const ApiKey& k) { return !k.revoked_at; });
    if (!any) {
      log::warn("auth: auth.mode is required and no API key exists: every request but /healthz, /readyz, /version "
                "and /docs is refused; create one with `statim keys create --name admin --scope admin`");
    }
  }
  auto secret = webhookSecret(config);
  if (!secret) {
    log::error("webhooks: no signing secret", {{"error", secret.error().message}});
    return 1;
  }

  const bool runs_models = config.node_role != "api";
  const std::string node_id = config.node_id.empty() ? makeNodeId() : config.node_id;
  // Job events: within this process, or (a shared store) between the nodes too.
  NodePresence* presence_ptr = nullptr;  // set below, once the presence exists
  std::unique_ptr<EventBus> events;
  if (opened->shared) {
    auto bus = PostgresEventBus::open(
        {.url = config.store_url,
         .node_id = node_id,
         .peers = [&presence_ptr] { return !presence_ptr || presence_ptr->hasPeers(); },
         .only_types = config.node_role == "worker"
                           ? std::vector<std::string>{std::string(transition(JobStep::kQueued).event),
                                                      std::string(kCancellingEvent)}
                           : std::vector<std::string>{}},
        *store);
    if (!bus) {
      log::error("cannot listen for other nodes' events", {{"error", bus.error().message}});
      return 1;
    }
    events = std::move(*bus);
  } else {
    events = std::make_unique<InProcessEventBus>();
  }
  log::info("node: starting", {{"node_id", node_id}, {"role", config.node_role}});

  Metrics metrics;
  JobMetrics job_metrics(metrics);
  SchedulerOptions options;
  options.metrics = &job_metrics;
  options.events = events.get();
  options.runs_models = runs_models;
  options.blobs = &store->blobs();
  options.compute = &compute;
  if (runs_models) options.load_on_demand = [&models](const std::string& id) { (void)models->requestLoad(id); };
  options.lease = std::chrono::milliseconds(static_cast<int64_t>(config.jobs_lease_seconds * 1000));
  options.max_attempts = config.jobs_max_attempts;
  if (config.jobs_reject_unserved) {
    options.served = [&presence_ptr](const std::string& model) { return !presence_ptr || presence_ptr->served(model); };
  }
  options.shared_store = opened->shared;
  options.node_id = node_id;
  Scheduler scheduler(*store, *models, options);
  // SQLite: this process owns the file, so every PROCESSING job was interrupted by our last exit.
  // A shared store: only jobs whose lease expired (other nodes' running jobs are theirs).
  if (auto r = scheduler.recover(!opened->shared); !r) {
    log::error("cannot recover interrupted jobs", {{"error", r.error().message}});
    return 1;
  }
  auto max_memory = parseMemoryBudget(config.models_max_memory, physicalMemoryBytes());
  ModelLifecycle lifecycle(*models, scheduler, {.max_memory = max_memory ? *max_memory : 0});
  log::info("models: memory budget",
            {{"max_memory_mib", (max_memory ? *max_memory : 0) >> 20}, {"physical_mib", physicalMemoryBytes() >> 20}});
  if (runs_models) lifecycle.start();  // an API node loads nothing: worker nodes run the models
  g_lifecycle = &lifecycle;
  std::signal(SIGHUP, [](int) {
    if (g_lifecycle) g_lifecycle->requestReload();
  });

  api::DrogonWebhookTransport transport;
  WebhookDispatcher webhooks(*store, *store, transport,
                             [](const Job& job) {
                               return api::jobToJson(job).dump(-1, ' ', false,
                                                               nlohmann::ordered_json::error_handler_t::replace);
                             },
                             {.secret = *secret,
                              .max_attempts = config.webhooks_max_attempts,
                              .retry_base_seconds = config.webhooks_retry_base_seconds,
                              .retry_max_seconds = config.webhooks_retry_max_seconds,
                              .timeout_seconds = config.webhooks_timeout_seconds});
  Housekeeping housekeeping(
      *store, *store,
      {.jobs_days = config.jobs_retention_days,
       .audit_days = config.audit_retention_days,
       .interval = std::chrono::milliseconds(static_cast<int64_t>(config.jobs_sweep_interval_seconds * 1000)),
       .blobs = &store->blobs()});

  NodePresence presence(*store, *models, scheduler, {.node_id = node_id, .role = config.node_role});
  presence_ptr = &presence;
  api::ApiContext ctx{config,   *store, scheduler, *models,        *store,
                      *store,   *store, metrics,   store->blobs(), runs_models ? &lifecycle : nullptr,
                      &presence};
  api::configureServer(ctx);
  drogon::app().registerBeginningAdvice([&config] {
    auto listeners = drogon::app().getListeners();
    log::info("statim: listening", {{"address", listeners.empty() ? "" : listeners.front().toIpPort()},
                                    {"version", STATIM_VERSION},
                                    {"models_dir", config.models_dir.string()},
                                    {"data_dir", config.data_dir.string()}});
  });
  // SIGTERM / SIGINT: the scheduler stops first while HTTP keeps serving, so running jobs
  // stream to their clients until they end (new work is refused with 503 meanwhile); only then
  // do the I/O loops stop. Stopping them first would leave streams writing to dead loops.
  std::once_flag stop_once;
  std::thread stopper;
  bool clean = true;
  auto stop = [&] {
    std::call_once(stop_once, [&] {
      stopper = std::thread([&] {
        log::info("statim: stopping; waiting for running jobs", {{"grace_s", config.jobs_shutdown_grace_seconds}});
        lifecycle.stop();
        presence.stop();  // other nodes stop sending this one work as soon as they read it
        clean = scheduler.shutdown(
            std::chrono::milliseconds(static_cast<int64_t>(config.jobs_shutdown_grace_seconds * 1000)));
        drogon::app().quit();
      });
    });
  };
  drogon::app().setTermSignalHandler(stop).setIntSignalHandler(stop);
  drogon::app().run();  // returns once `stop` has quit it
  if (stopper.joinable()) stopper.join();
  presence_ptr = nullptr;  // the presence goes before the bus and the scheduler that ask it
  std::signal(SIGHUP, SIG_IGN);
  g_lifecycle = nullptr;
  log::info("statim: stopped", {{"all_jobs_finished", clean}});
  return 0;
}

}  // namespace statim::cli
