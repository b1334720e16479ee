#include "api/model_access.h"

#include <format>

#include "api/filters/auth.h"
#include "scheduler/model_lifecycle.h"

namespace statim::api {

void withLoadedModel(const ApiContext& ctx, const drogon::HttpRequest& req, const std::string& id, WithModel fn) {
  auto e = ctx.models.find(id);
  if (!e || e->removed || !principalOf(req).listsModel(id)) {
    return fn(fail(Error{ErrorCode::kModelNotFound, std::format("unknown model '{}'", id.substr(0, 128)), "model"}));
  }
  auto settled = [fn](const ModelEntry& now) {
    if (now.state == ModelState::kReady && now.loaded) return fn(now.loaded);
    fn(fail(Error{ErrorCode::kModelUnavailable,
                  std::format("model '{}' is {}{}", now.manifest.id, toString(now.state),
                              now.reason.empty() ? "" : ": " + now.reason),
                  "model"}));
  };
  if (e->state == ModelState::kReady && e->loaded) return fn(e->loaded);
  if (ctx.config.node_role == "api" || !ctx.lifecycle) {
    return fn(fail(Error{
        ErrorCode::kModelUnavailable,
        std::format("this node runs no models (node.role = {}); ask a node that serves '{}'", ctx.config.node_role, id),
        "model"}));
  }
  if (e->state == ModelState::kUnloaded || e->state == ModelState::kFailed) {
    if (auto r = ctx.lifecycle->load(id); !r) return fn(fail(r.error()));
  }
  if (!ctx.models.whenSettled(id, settled)) {
    fn(fail(Error{ErrorCode::kModelNotFound, std::format("unknown model '{}'", id.substr(0, 128)), "model"}));
  }
}

}  // namespace statim::api
