// GET /healthz, GET /readyz, GET /version (public), GET /metrics (admin)
#include <drogon/HttpAppFramework.h>

#include "api/errors.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"

namespace statim::api {
namespace {

// Gauges read from the scheduler and the registry at scrape time.
void sampleGauges(const ApiContext& ctx) {
  Metrics& m = ctx.metrics;
  for (auto& e : ctx.models.list()) {
    const std::string& id = e.manifest.id;
    auto stats = ctx.scheduler.stats(id);
    m.set("statim_queue_depth", {{"model", id}}, static_cast<double>(stats.queued));
    m.set("statim_jobs_running", {{"model", id}}, stats.running);
    for (auto state : {ModelState::kUnloaded, ModelState::kLoading, ModelState::kReady, ModelState::kUnloading,
                       ModelState::kFailed}) {
      m.set("statim_model_state", {{"model", id}, {"state", std::string(toString(state))}}, e.state == state ? 1 : 0);
    }
  }
  if (auto c = ctx.scheduler.computeStats()) {
    m.set("statim_compute_cores", {}, c->cores);
    m.set("statim_compute_busy_cores", {}, c->busy);
    m.set("statim_compute_waiting_calls", {}, c->waiting);
    for (auto& [model, seconds] : c->seconds_by_model)
      m.set("statim_compute_model_seconds", {{"model", model}}, seconds);
  }
}

}  // namespace

void registerSystemRoutes(const ApiContext& ctx) {
  ctx.metrics.declareGauge("statim_build_info", "The running statim's version (always 1).");
  ctx.metrics.declareGauge("statim_queue_depth", "QUEUED jobs, by model.");
  ctx.metrics.declareGauge("statim_jobs_running", "PROCESSING jobs on this node, by model.");
  ctx.metrics.declareGauge("statim_model_state",
                           "1 for the model's current load state (unloaded, loading, ready, unloading, failed).");
  ctx.metrics.declareGauge("statim_compute_cores", "Cores all models share (compute.cores).");
  ctx.metrics.declareGauge("statim_compute_busy_cores", "Cores held by inference calls now.");
  ctx.metrics.declareGauge("statim_compute_waiting_calls", "Inference calls waiting in line for cores now.");
  ctx.metrics.declareGauge("statim_compute_model_seconds",
                           "Wall seconds of inference calls so far, by model (only grows while the model runs).");
  ctx.metrics.set("statim_build_info", {{"version", STATIM_VERSION}}, 1);

  addRoute("/healthz", drogon::Get, Access::kPublic, [&ctx](const drogon::HttpRequestPtr&, Callback&& cb) {
    // A read through the store proves the database answers.
    auto probe = ctx.store.list({.limit = 1});
    if (!probe) return cb(jsonResponse({{"status", "unhealthy"}, {"store", probe.error().message}}, 503));
    cb(jsonResponse({{"status", ctx.scheduler.stopping() ? "stopping" : "ok"}}));
  });

  // Ready to take traffic: the store answers, every `required` model is loaded, not stopping.
  addRoute("/readyz", drogon::Get, Access::kPublic, [&ctx](const drogon::HttpRequestPtr&, Callback&& cb) {
    nlohmann::json reasons = nlohmann::json::array();
    auto probe = ctx.store.list({.limit = 1});
    if (!probe) reasons.push_back("the store does not answer: " + probe.error().message);
    auto problem = ctx.store.writeProblem();
    if (problem) reasons.push_back("the store cannot write: " + problem->message);
    if (ctx.scheduler.stopping()) reasons.push_back("the server is shutting down");
    nlohmann::json models = nlohmann::json::object();
    for (auto& e : ctx.models.list()) {
      models[e.manifest.id] = toString(e.state);
      // An API node runs no model: worker nodes load the required ones.
      if (e.manifest.required && e.state != ModelState::kReady && ctx.config.node_role != "api") {
        reasons.push_back(std::format("model '{}' is required and is {}{}", e.manifest.id, toString(e.state),
                                      e.reason.empty() ? "" : ": " + e.reason));
      }
    }
    bool ready = reasons.empty();
    cb(jsonResponse({{"status", ready ? "ready" : "not_ready"},
                     {"store", !probe    ? "error"
                               : problem ? "not_writable"
                                         : "ok"},
                     {"models", std::move(models)},
                     {"reasons", std::move(reasons)}},
                    ready ? 200 : 503));
  });

  addRoute("/version", drogon::Get, Access::kPublic, [](const drogon::HttpRequestPtr&, Callback&& cb) {
    cb(jsonResponse({{"name", "statim"}, {"version", STATIM_VERSION}}));
  });

  addRoute("/metrics", drogon::Get, Access::kAdmin, [&ctx](const drogon::HttpRequestPtr&, Callback&& cb) {
    sampleGauges(ctx);
    auto resp = drogon::HttpResponse::newHttpResponse();
    resp->setContentTypeString("text/plain; version=0.0.4; charset=utf-8");
    resp->setBody(ctx.metrics.render());
    cb(resp);
  });
}

}  // namespace statim::api
