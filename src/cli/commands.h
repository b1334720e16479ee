// `statim` subcommands.
#pragma once

#include <optional>
#include <string>

#include "core/config.h"

namespace statim::cli {

int serve(const Config& config);

struct KeyOptions {
  std::string name;
  std::string scope = "user";
  std::optional<std::string> models;  // comma-separated ids
  std::string rate;                   // "10/s"; empty = unlimited
  std::optional<std::int64_t> max_queued;
};
int keysCreate(const Config& config, const KeyOptions& options);
int keysList(const Config& config, bool json);
int keysRevoke(const Config& config, const std::string& name_or_id);

}  // namespace statim::cli
