// The kinds of store the conformance tests run on (store_test.h), and their instantiation.
#include "store_test.h"

#include <cstdlib>

#include "core/crypto.h"
#include "store/postgres/postgres_store.h"
#include "store/sqlite/sqlite_store.h"

namespace statim::testing {

// The PostgreSQL server the tests use (scripts/pg-test-server run ... sets it; make test does).
std::string testPostgresUrl() {
  const char* url = std::getenv("STATIM_TEST_POSTGRES_URL");
  return url ? url : "";
}

// `url` with its own schema for `dir` (created if needed): each test gets an empty database,
// and reopening the same dir finds the same one.
std::string postgresUrlFor(const std::filesystem::path& dir) {
  std::string schema = "t_" + crypto::sha256Hex(dir.string()).substr(0, 16);
  std::string url = testPostgresUrl();
  auto conn = PgConn::connect(url);
  if (conn) (void)(*conn)->run("CREATE SCHEMA IF NOT EXISTS " + schema);
  return url + (url.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema;
}

std::vector<StoreKind> storeKinds() {
  return {
      {"sqlite",
       [](const std::filesystem::path& dir) -> Result<std::unique_ptr<Store>> {
         auto s = SqliteStore::open(dir / "statim.db");
         if (!s) return fail(s.error());
         return std::unique_ptr<Store>(std::move(*s));
       }},
      {"postgresql",
       [](const std::filesystem::path& dir) -> Result<std::unique_ptr<Store>> {
         auto s = PostgresStore::open({.url = postgresUrlFor(dir), .files_dir = dir / "files"});
         if (!s) return fail(s.error());
         return std::unique_ptr<Store>(std::move(*s));
       },
       [] {
         return testPostgresUrl().empty()
                    ? std::string(
                          "no PostgreSQL server: set STATIM_TEST_POSTGRES_URL (make test starts one with "
                          "scripts/pg-test-server)")
                    : std::string();
       }},
  };
}

}  // namespace statim::testing
