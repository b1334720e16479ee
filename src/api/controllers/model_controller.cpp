// GET /models (a key restricted to some models sees only those)
#include <drogon/HttpAppFramework.h>

#include "api/filters/auth.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"

namespace statim::api {

void registerModelRoutes(const ApiContext& ctx) {
  addRoute("/models", drogon::Get, Access::kUser, [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    Principal who = principalOf(*req);
    nlohmann::json models = nlohmann::json::array();
    for (auto& e : ctx.models.list()) {
      if (!who.listsModel(e.manifest.id)) continue;
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
