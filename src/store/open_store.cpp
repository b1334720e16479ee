#include "store/open_store.h"

#include "store/postgres/postgres_store.h"
#include "store/sqlite/sqlite_store.h"

namespace statim {

Result<OpenedStore> openStore(const Config& config) {
  std::filesystem::path files = config.store_files_dir.empty() ? config.data_dir / "files" : config.store_files_dir;
  if (config.store_url.starts_with("postgres")) {
    auto s = PostgresStore::open({.url = config.store_url, .files_dir = files});
    if (!s) return fail(s.error());
    return OpenedStore{std::move(*s), redactPgUrl(config.store_url), true};
  }
  std::filesystem::path path = config.store_url.starts_with("sqlite:")
                                   ? std::filesystem::path(config.store_url.substr(7))
                                   : config.data_dir / "statim.db";
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path().empty() ? "." : path.parent_path(), ec);
  auto s = SqliteStore::open(path);
  if (!s) return fail(Error{s.error().code, path.string() + ": " + s.error().message, {}});
  return OpenedStore{std::move(*s), path.string(), false};
}

}  // namespace statim
