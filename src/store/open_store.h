// Opens the store the configuration names (store.url): SQLite in the data dir by default, or a
// PostgreSQL database several nodes share.
#pragma once

#include <memory>

#include "core/config.h"
#include "store/store.h"

namespace statim {

struct OpenedStore {
  std::unique_ptr<Store> store;
  std::string description;  // for logs: the file, or the URL without its password
  bool shared = false;      // several nodes may use it (PostgreSQL)
};

Result<OpenedStore> openStore(const Config& config);

}  // namespace statim
