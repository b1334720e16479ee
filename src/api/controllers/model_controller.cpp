// GET /models
#include <drogon/HttpAppFramework.h>

#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"

namespace statim::api {

void registerModelRoutes(const ApiContext& ctx) {
  addRoute("/models", drogon::Get, [&ctx](const drogon::HttpRequestPtr&, Callback&& cb) {
    nlohmann::json models = nlohmann::json::array();
    for (auto& e : ctx.models.list()) {
      auto stats = ctx.scheduler.stats(e.manifest.id);
      nlohmann::json m = {
          {"id", e.manifest.id},
          {"backend", e.manifest.backend},
          {"type", e.manifest.type},
          {"description", e.manifest.description},
          {"state", toString(e.state)},
          {"reason", e.reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.reason)},
          {"required", e.manifest.required},
          {"parallel", e.manifest.parallel},
          {"max_queue", e.manifest.max_queue},
          {"queued", stats.queued},
          {"running", stats.running},
      };
      if (e.loaded) m["details"] = e.loaded->describe();
      models.push_back(std::move(m));
    }
    cb(jsonResponse({{"models", std::move(models)}}));
  });
}

}  // namespace statim::api
