// GET /models, GET /models/{id} (a key restricted to some models sees only those);
// POST /models/{id}/load and /models/{id}/unload (admin keys); GET /model, the original
// statim-ai-server's list.
#include <drogon/HttpAppFramework.h>

#include "api/errors.h"
#include "api/filters/auth.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"
#include "core/clock.h"

namespace statim::api {
namespace {

nlohmann::json timeOrNull(Micros t) { return t > 0 ? nlohmann::json(formatIsoUtc(t)) : nlohmann::json(nullptr); }

// The nodes that serve model `id` (live ones that run models), and its best state among them.
struct Served {
  nlohmann::json nodes = nlohmann::json::array();
  std::optional<std::string> best_state;
  int running = 0;
};
Served servedBy(const ApiContext& ctx, const std::string& id) {
  Served out;
  if (!ctx.presence) return out;
  // ready > loading > unloading > unloaded > failed
  auto rank = [](const std::string& st) {
    for (int i = 0; auto* name : {"failed", "unloaded", "unloading", "loading", "ready"}) {
      if (st == name) return i;
      ++i;
    }
    return -1;
  };
  for (auto& n : ctx.presence->cached()) {
    if (!n.alive || !n.record.models.contains(id)) continue;
    const auto& m = n.record.models[id];
    std::string state = m.value("state", "");
    out.nodes.push_back({{"id", n.record.id},
                         {"role", n.record.role},
                         {"state", state},
                         {"running", m.value("running", 0)},
                         {"capacity", m.value("capacity", 0)}});
    out.running += m.value("running", 0);
    if (!out.best_state || rank(state) > rank(*out.best_state)) out.best_state = state;
  }
  return out;
}

nlohmann::json modelJson(const ApiContext& ctx, const ModelEntry& e) {
  auto stats = ctx.scheduler.stats(e.manifest.id);
  const auto& m = e.manifest;
  auto served = servedBy(ctx, m.id);
  // An API node runs no model: its state and running count are the worker nodes'.
  const bool api_node = ctx.config.node_role == "api";
  std::string state(toString(e.state));
  if (api_node) state = served.best_state.value_or(std::string(toString(ModelState::kUnloaded)));
  nlohmann::json j = {
      {"id", m.id},
      {"backend", m.backend},
      {"type", m.type},
      {"description", m.description},
      {"state", state},
      {"reason", e.reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.reason)},
      {"required", m.required},
      {"preload", m.preload},
      {"keep_alive", e.keepAlive()},
      {"parallel", m.parallel},
      {"max_queue", m.max_queue},
      {"queued", stats.queued},
      {"running", api_node ? served.running : stats.running},
      {"memory",
       {{"estimated_bytes", e.memory_estimate},
        {"measured_bytes", e.loaded_at > 0 ? nlohmann::json(e.memory_measured) : nlohmann::json(nullptr)}}},
      {"loaded_at", timeOrNull(e.loaded_at)},
      {"load_seconds", e.loaded_at > 0 ? nlohmann::json(e.load_seconds) : nlohmann::json(nullptr)},
      {"last_used_at", timeOrNull(e.last_used_at)},
  };
  // The jobs it takes: each type with the content types of the files it reads (none: a prompt)
  // and its params (JSON Schema properties, the manifest's defaults shown).
  nlohmann::json types = nlohmann::json::object();
  if (e.backend) {
    for (auto& t : e.backend->servedTypes(m.type)) {
      types[t] = {{"input_types", e.backend->inputTypes(t)}, {"params", e.backend->paramsSchema(t, m.params)}};
    }
  }
  j["job_types"] = std::move(types);
  if (e.loaded) j["details"] = e.loaded->describe();
  if (ctx.presence) j["nodes"] = std::move(served.nodes);  // a shared store: every node serving it
  return j;
}

// The model named by the path, if the caller may see it (else the same 404 as an unknown model).
Result<ModelEntry> visibleModel(const ApiContext& ctx, const drogon::HttpRequest& req, const std::string& id) {
  auto e = ctx.models.find(id);
  if (!e || e->removed || !principalOf(req).listsModel(id)) {
    return fail(Error{ErrorCode::kModelNotFound, std::format("unknown model '{}'", id), "model"});
  }
  return *e;
}

// Answers with the model: at once (202 while it is loading or unloading), or with ?wait=true once
// it has settled (200).
void answer(const ApiContext& ctx, const drogon::HttpRequest& req, const std::string& id, Callback&& cb) {
  auto wait = queryBool(req, "wait");
  if (!wait) return cb(errorResponse(wait.error()));
  auto shared = std::make_shared<Callback>(std::move(cb));
  auto respond = [&ctx, shared](const ModelEntry& e) {
    bool settled = e.state != ModelState::kLoading && e.state != ModelState::kUnloading;
    (*shared)(jsonResponse(modelJson(ctx, e), settled ? 200 : 202));
  };
  // The model can be gone by now only if a reload removed it meanwhile.
  bool found = false;
  if (*wait) {
    found = ctx.models.whenSettled(id, respond);
  } else if (auto e = ctx.models.find(id)) {
    found = true;
    respond(*e);
  }
  if (!found)
    (*shared)(errorResponse(Error{ErrorCode::kModelNotFound, std::format("unknown model '{}'", id), "model"}));
}

}  // namespace

void registerModelRoutes(const ApiContext& ctx) {
  // The original server's list, in its shape: [{"id", "result_type"}] for the models that can
  // serve. Its result types were TEXT and IMAGE; a speech model's is AUDIO.
  auto originalList = [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    if (auto r = onlyKnownQuery(*req, {}); !r) return cb(errorResponse(r.error()));
    Principal who = principalOf(*req);
    nlohmann::ordered_json models = nlohmann::ordered_json::array();
    for (auto& e : ctx.models.list()) {
      if (e.state == ModelState::kFailed || e.removed || !who.listsModel(e.manifest.id)) continue;
      const std::string& type = e.manifest.type;
      models.push_back({{"id", e.manifest.id},
                        {"result_type", type == "image"    ? "IMAGE"
                                        : type == "speech" ? "AUDIO"
                                                           : "TEXT"}});
    }
    cb(orderedJsonResponse(models));
  };
  addRoute("/model", drogon::Get, Access::kUser, originalList);
  addRoute("/model/", drogon::Get, Access::kUser, originalList);  // the original's own spelling
  auto listModels = [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    Principal who = principalOf(*req);
    nlohmann::json models = nlohmann::json::array();
    for (auto& e : ctx.models.list()) {
      if (!e.removed && who.listsModel(e.manifest.id)) models.push_back(modelJson(ctx, e));
    }
    cb(jsonResponse({{"models", std::move(models)}}));
  };
  addRoute("/models", drogon::Get, Access::kUser, listModels);
  addRoute("/models/reload", drogon::Post, Access::kAdmin, [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    if (auto r = onlyKnownQuery(*req, {}); !r) return cb(errorResponse(r.error()));
    if (!ctx.lifecycle) return cb(errorResponse(Error{ErrorCode::kModelUnavailable, "no model lifecycle"}));
    auto report = ctx.lifecycle->reload();
    cb(jsonResponse({{"added", report.added}, {"changed", report.changed}, {"removed", report.removed}}));
  });
  addRoute("/models/{id}", drogon::Get, Access::kUser,
           [&ctx, listModels](const drogon::HttpRequestPtr& req, Callback&& cb, const std::string& id) {
             if (id.empty()) return listModels(req, std::move(cb));  // "/models/"
             auto e = visibleModel(ctx, *req, id);
             if (!e) return cb(errorResponse(e.error()));
             cb(jsonResponse(modelJson(ctx, *e)));
           });
  addRoute("/models/{id}/load", drogon::Post, Access::kAdmin,
           [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb, const std::string& id) {
             if (auto r = onlyKnownQuery(*req, {"wait"}); !r) return cb(errorResponse(r.error()));
             if (!ctx.lifecycle) return cb(errorResponse(Error{ErrorCode::kModelUnavailable, "no model lifecycle"}));
             auto e = visibleModel(ctx, *req, id);
             if (!e) return cb(errorResponse(e.error()));
             if (auto r = ctx.lifecycle->load(id); !r) return cb(errorResponse(r.error()));
             answer(ctx, *req, id, std::move(cb));
           });
  addRoute("/models/{id}/unload", drogon::Post, Access::kAdmin,
           [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb, const std::string& id) {
             if (auto r = onlyKnownQuery(*req, {"wait", "force"}); !r) return cb(errorResponse(r.error()));
             auto force = queryBool(*req, "force");
             if (!force) return cb(errorResponse(force.error()));
             if (!ctx.lifecycle) return cb(errorResponse(Error{ErrorCode::kModelUnavailable, "no model lifecycle"}));
             auto e = visibleModel(ctx, *req, id);
             if (!e) return cb(errorResponse(e.error()));
             // Unloading an unloaded model is done already; anything else that is not ready is a conflict.
             if (e->state != ModelState::kUnloaded) {
               if (auto r = ctx.lifecycle->unload(id, *force); !r) return cb(errorResponse(r.error()));
             }
             answer(ctx, *req, id, std::move(cb));
           });
}

}  // namespace statim::api
