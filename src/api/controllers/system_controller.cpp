// GET /healthz, GET /version
#include <drogon/HttpAppFramework.h>

#include "api/errors.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"

namespace statim::api {

void registerSystemRoutes(const ApiContext& ctx) {
  addRoute("/healthz", drogon::Get, [&ctx](const drogon::HttpRequestPtr&, Callback&& cb) {
    // A read through the store proves the database answers.
    auto probe = ctx.store.list({.limit = 1});
    if (!probe) return cb(jsonResponse({{"status", "unhealthy"}, {"store", probe.error().message}}, 503));
    cb(jsonResponse({{"status", ctx.scheduler.stopping() ? "stopping" : "ok"}}));
  });
  addRoute("/version", drogon::Get, [](const drogon::HttpRequestPtr&, Callback&& cb) {
    cb(jsonResponse({{"name", "statim"}, {"version", STATIM_VERSION}}));
  });
}

}  // namespace statim::api
