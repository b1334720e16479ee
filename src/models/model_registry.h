// The models this instance serves: one entry per manifest in the models dir, each with its load
// state. Loads run one at a time on the registry's loader thread, so the server answers while
// models load; a model that fails to load is listed as failed with the reason and never blocks the
// others.
//
//   unloaded --requestLoad--> loading --ok--> ready --beginUnload--> unloading --finishUnload--> unloaded
//                                     \--error--> failed --requestLoad--> loading ...
//
// The registry holds states and the loaded models; who may unload what, and when (keep_alive,
// the memory budget, an admin's request), is decided by scheduler/model_lifecycle.h, which also
// stops a model's workers before its weights are dropped.
//
// Thread-safety: all methods may be called from any thread. Hooks are called on the loader thread
// without the registry's lock held.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "models/manifest.h"
#include "statim/backend.h"

namespace statim {

enum class ModelState { kUnloaded, kLoading, kReady, kUnloading, kFailed };
std::string_view toString(ModelState s);  // "unloaded", "loading", "ready", "unloading", "failed"

struct ModelEntry {
  ModelManifest manifest;
  const Backend* backend = nullptr;  // null when the manifest names an unknown backend
  ModelState state = ModelState::kUnloaded;
  std::string reason;                    // why it failed
  bool loadable = true;                  // false: the manifest itself is wrong; no load can succeed
  std::shared_ptr<LoadedModel> loaded;   // set when ready (and while unloading)
  std::int64_t memory_estimate = 0;      // bytes: the size of its files (known before loading)
  std::int64_t memory_measured = 0;      // bytes: the process's RSS growth across its last load
  Micros last_used_at = 0;               // a job of it started or ended; 0: never
  Micros loaded_at = 0;                  // when it became ready; 0: not loaded
  double load_seconds = 0;               // how long its last load took
  bool load_after_unload = false;        // a load was asked for while it was unloading
  bool removed = false;                  // its manifest is gone: it takes no jobs and goes once unloaded
  std::shared_ptr<ModelEntry> next;      // its changed manifest, applied once it is unloaded
  std::string fingerprint;               // the manifest's text and its file's time and size
  std::optional<double> keep_alive_set;  // a job's keep_alive, over the manifest's until it is unloaded
  double keepAlive() const { return keep_alive_set ? *keep_alive_set : manifest.keep_alive; }
};

class ModelRegistry {
 public:
  struct Hooks {
    std::function<void(const std::string&)> on_ready;                       // start its workers
    std::function<void(const std::string&, const std::string&)> on_failed;  // id, reason
    // Before a load: make room for `bytes` more of model memory. Returns an error naming the
    // numbers when it cannot (the load then fails with it). Unset: no budget.
    std::function<Result<void>(const std::string& id, std::int64_t bytes)> make_room;
  };

  // Reads every *.toml under `dir` (not recursive). Unreadable or invalid manifests become failed
  // entries named after their file, so the operator sees them in GET /models. `cores` is the
  // process's compute budget, handed to backends (ModelConfig::cores).
  static std::unique_ptr<ModelRegistry> fromDirectory(const std::filesystem::path& dir, std::int64_t default_max_queue,
                                                      int cores = 1);
  // For tests: a registry over given manifests.
  explicit ModelRegistry(std::vector<ModelEntry> entries, int cores = 1);
  ~ModelRegistry();  // stops the loader thread

  // Starts the loader thread with these hooks and asks it to load every model with preload = true
  // (in id order). Call once.
  void start(Hooks hooks);
  void loadAll(std::function<void(const std::string&)> on_ready) { start({.on_ready = std::move(on_ready)}); }
  // Asks for a model to be loaded: an unloaded or failed one becomes loading and is queued for the
  // loader; a loading or ready one is left as it is; an unloading one is loaded again once
  // unloaded. Errors: kModelNotFound, kModelUnavailable (its manifest is unusable).
  Result<ModelEntry> requestLoad(const std::string& id);
  // Blocks until no model is loading or queued for loading (every on_ready/on_failed returned).
  void waitLoaded();
  // Loads nothing more, makes no more hook calls, and waits for the loader thread. Call before
  // whatever the hooks refer to goes away. Idempotent.
  void stopLoading();

  // ready -> unloading; returns the entry. Errors: kModelNotFound, kConflict (not ready).
  Result<ModelEntry> beginUnload(const std::string& id);
  // unloading -> unloaded: drops the registry's reference to the weights (they are freed when the
  // last worker holding them has gone). Returns true when a load was asked for meanwhile.
  bool finishUnload(const std::string& id);
  void touch(const std::string& id);                         // last_used_at = now
  void setKeepAlive(const std::string& id, double seconds);  // until it is unloaded

  // Calls `fn` once the model is neither loading nor unloading (at once if it is not), on the
  // loader's or the unloader's thread, or on this one. Returns false (and never calls `fn`) when
  // there is no such model.
  bool whenSettled(const std::string& id, std::function<void(const ModelEntry&)> fn);

  // Reads the models dir again (fromDirectory's registries only). New manifests become unloaded
  // entries; a changed manifest replaces an unloaded or failed entry at once, and waits in `next`
  // for a loaded one to be unloaded; a manifest that is gone marks its entry removed. Loading,
  // unloading and forgetting are the caller's (ModelLifecycle::reload).
  struct Rescan {
    std::vector<std::string> added, changed, removed;
  };
  Rescan rescan();
  // Drops a removed entry that holds nothing (unloaded or failed). Returns true when it did.
  bool forget(const std::string& id);

  std::optional<ModelEntry> find(const std::string& id) const;
  std::vector<ModelEntry> list() const;  // sorted by id
  std::vector<std::string> ids() const;  // without removed entries
  // Bytes of the models that hold memory now (ready, unloading, loading): measured, else estimated.
  std::int64_t memoryInUse() const;

 private:
  void loaderLoop();
  void settledLocked(ModelEntry& e, std::vector<std::function<void()>>& calls);
  ModelEntry* entryLocked(const std::string& id);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ModelEntry> entries_;                                                      // guarded by mu_
  std::deque<std::string> to_load_;                                                      // guarded by mu_
  bool loading_one_ = false;                                                             // guarded by mu_
  bool stop_loading_ = false;                                                            // guarded by mu_
  bool started_ = false;                                                                 // guarded by mu_
  std::vector<std::pair<std::string, std::function<void(const ModelEntry&)>>> waiters_;  // guarded by mu_
  Hooks hooks_;
  std::filesystem::path dir_;  // set by fromDirectory; empty: rescan() finds nothing
  std::int64_t default_max_queue_ = 1000;
  std::thread loader_;
  const int cores_;
};

// The resident set size of this process, in bytes (from /proc/self/statm); 0 where unknown.
std::int64_t residentBytes();

}  // namespace statim
