// A model manifest: one TOML file in the models dir describes one model.
//
//   id = "stories260k"                 # the name clients use ("model" in a job)
//   backend = "llama"                  # a name from src/backends/registry.cpp
//   file = "../../shared/models/llm/stories260K.gguf"   # relative to this manifest's folder
//   type = "completion"                # job type; default: the backend's first
//   description = "..."
//   max_queue = 1000                   # QUEUED jobs accepted before 429
//   parallel = 1                       # workers (sessions) running jobs at once
//   required = false                   # /readyz waits for it; never unloaded while idle
//   preload = true                     # load at start (false: on the first job, or POST /models/{id}/load)
//   keep_alive = -1                    # seconds idle before it is unloaded; -1: never
//   max_input_bytes = 26214400         # largest input file a job may send (413 above)
//   [params]                           # backend-specific
//   n_ctx = 512
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "statim/backend.h"
#include "statim/error.h"

namespace statim {

struct ModelManifest {
  std::string id;
  std::string backend;
  std::filesystem::path file;  // resolved; empty if none given
  std::string type;            // empty: the backend's default
  std::string description;
  std::int64_t max_queue = 1000;
  int parallel = 1;
  bool required = false;
  bool preload = true;
  double keep_alive = -1;  // seconds idle before unloading; < 0: never
  std::int64_t max_input_bytes = 25 << 20;
  nlohmann::json params = nlohmann::json::object();
  std::filesystem::path source;  // the manifest file

  // `cores`: the process's compute budget, the default of backends' thread counts.
  ModelConfig backendConfig(int cores = 1) const {
    return {id, type, file, params, parallel, source.parent_path(), cores};
  }
};

// Parses manifest text; `source` names the file in errors and anchors relative paths.
Result<ModelManifest> parseManifest(const std::string& text, const std::filesystem::path& source,
                                    std::int64_t default_max_queue);

}  // namespace statim
