// The models this instance serves: one entry per manifest in the models dir, each with its
// load state. Loading happens on a background thread so the server answers while models load;
// a model that fails to load is listed as failed with the reason and never blocks the others.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "models/manifest.h"
#include "statim/backend.h"

namespace statim {

enum class ModelState { kLoading, kReady, kFailed };
std::string_view toString(ModelState s);  // "loading", "ready", "failed"

struct ModelEntry {
  ModelManifest manifest;
  const Backend* backend = nullptr;  // null when the manifest names an unknown backend
  ModelState state = ModelState::kLoading;
  std::string reason;                   // why it failed
  std::shared_ptr<LoadedModel> loaded;  // set when ready
};

class ModelRegistry {
 public:
  // Reads every *.toml under `dir` (not recursive). Unreadable or invalid manifests become failed
  // entries named after their file, so the operator sees them in GET /models.
  // `cores` is the process's compute budget, handed to backends (ModelConfig::cores).
  static std::unique_ptr<ModelRegistry> fromDirectory(const std::filesystem::path& dir, std::int64_t default_max_queue,
                                                      int cores = 1);
  // For tests: a registry over given manifests.
  explicit ModelRegistry(std::vector<ModelEntry> entries, int cores = 1);
  ~ModelRegistry();  // waits for the loader thread

  // Starts loading every model not yet failed, one after another on a background thread, and
  // calls on_ready(id) (on that thread) as each one becomes ready.
  void loadAll(std::function<void(const std::string&)> on_ready);
  // Blocks until the loader is done: every model ready or failed, every on_ready call returned.
  void waitLoaded();
  // Skips models not yet loaded, makes no more on_ready calls, and waits for the loader thread.
  // Call before whatever on_ready refers to goes away. Idempotent.
  void stopLoading();

  std::optional<ModelEntry> find(const std::string& id) const;
  std::vector<ModelEntry> list() const;  // sorted by id
  std::vector<std::string> ids() const;

 private:
  void setState(const std::string& id, ModelState state, std::string reason, std::shared_ptr<LoadedModel> loaded);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ModelEntry> entries_;  // guarded by mu_
  bool loader_running_ = false;      // guarded by mu_
  bool stop_loading_ = false;        // guarded by mu_
  std::thread loader_;
  const int cores_;
};

}  // namespace statim
