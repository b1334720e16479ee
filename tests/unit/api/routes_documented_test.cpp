// Every route the server registers is in the OpenAPI document, and the document has no route
// the server lacks: the document cannot drift from the code.
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "api/openapi.h"
#include "api/routes.h"
#include "api/server.h"
#include "scheduler/scheduler.h"
#include "store/sqlite/sqlite_store.h"

namespace statim {
namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

TEST(OpenApiTest, EveryRegisteredRouteIsDocumentedAndNothingElse) {
  testing::TempDir dir;
  auto store = SqliteStore::open(dir.path() / "statim.db");
  ASSERT_TRUE(store);
  auto models = ModelRegistry::fromDirectory(dir.path(), 10);
  Scheduler scheduler(**store, *models, {});
  Config config;
  config.http_port = 0;
  Metrics metrics;
  api::ApiContext ctx{config, **store, scheduler, *models, **store, **store, **store, metrics, (*store)->blobs()};
  api::configureServer(ctx);

  auto doc = nlohmann::json::parse(api::openApiDocument());
  ASSERT_EQ(doc["openapi"], "3.1.0");
  std::set<std::string> documented;
  for (auto& [path, item] : doc["paths"].items()) {
    for (auto& [method, op] : item.items()) {
      if (method == "parameters" || method == "summary" || method == "description") continue;
      documented.insert(lower(method) + " " + path);
    }
  }
  std::set<std::string> registered;
  for (auto& r : api::registeredRoutes()) registered.insert(lower(api::methodName(r.method)) + " " + r.path);
  for (auto& r : registered) EXPECT_TRUE(documented.contains(r)) << r << " is registered but not in openapi.json";
  for (auto& d : documented) EXPECT_TRUE(registered.contains(d)) << d << " is documented but not registered";
  EXPECT_GE(registered.size(), 20u);

  // Public routes are exactly those the document marks `security: []`.
  for (auto& r : api::registeredRoutes()) {
    auto& op = doc["paths"][r.path][lower(api::methodName(r.method))];
    bool open = op.contains("security") && op["security"].empty();
    EXPECT_EQ(open, r.access == api::Access::kPublic) << r.path;
  }
}

}  // namespace
}  // namespace statim
