// The kinds of store the conformance tests run on (store_test.h), and their instantiation.
#include "store_test.h"

#include "store/sqlite/sqlite_store.h"

namespace statim::testing {

std::vector<StoreKind> storeKinds() {
  return {
      {"sqlite",
       [](const std::filesystem::path& dir) -> Result<std::unique_ptr<Store>> {
         auto s = SqliteStore::open(dir / "statim.db");
         if (!s) return fail(s.error());
         return std::unique_ptr<Store>(std::move(*s));
       }},
  };
}

}  // namespace statim::testing
