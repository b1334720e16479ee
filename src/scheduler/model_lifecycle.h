// When models are loaded and unloaded: at start (preload), on demand (a job for an unloaded model),
// on an admin's request, after keep_alive seconds idle, and to make room under the memory budget
// (models.max_memory, least recently used idle models first). The registry holds the states; the
// scheduler runs and stops each model's workers; this ties them together.
//
// Unloading a model: its state becomes `unloading` at once (new jobs queue), its workers finish
// their running jobs (or cancel them, with force) and are joined, then the registry drops the
// weights (freed once the last worker's reference is gone) and the state becomes `unloaded`. Jobs
// queued meanwhile load it again.
//
// Thread-safety: every public method may be called from any thread. Unloads run on this object's
// own thread, evictions on the registry's loader thread; neither runs on an HTTP thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "models/model_registry.h"
#include "scheduler/scheduler.h"

namespace statim {

struct LifecycleOptions {
  std::int64_t max_memory = 0;                    // bytes the loaded models may take; <= 0: no budget
  std::chrono::milliseconds sweep_interval{500};  // how often keep_alive is checked
};

class ModelLifecycle {
 public:
  ModelLifecycle(ModelRegistry& models, Scheduler& scheduler, LifecycleOptions options);
  ~ModelLifecycle();  // stop()

  // Wires the registry's hooks to the scheduler (ready: start the workers; failed: fail the jobs
  // waiting for it; before a load: make room) and the scheduler's on-demand loads to the registry,
  // then loads the preload models and starts the keep_alive sweeper. Call once, after
  // Scheduler::recover().
  void start();
  // Stops loading, unloading and sweeping (waits for an unload in progress). Call before the
  // scheduler shuts down. Idempotent.
  void stop();

  // Asks for a model to be loaded (ModelRegistry::requestLoad).
  Result<ModelEntry> load(const std::string& id);
  // Starts unloading a ready model; returns it in state `unloading`. With force, a model already
  // unloading cancels its running jobs instead of waiting for them. Errors: kModelNotFound,
  // kConflict (not ready). Unloads run one after another on this object's thread.
  Result<ModelEntry> unload(const std::string& id, bool force);

  // Reads the models dir again (POST /models/reload, SIGHUP): new models are added (and loaded
  // if preload), a changed model is reloaded once its running jobs have ended, a removed one takes
  // no more jobs, its queued jobs fail, and it goes once its running jobs have ended.
  ModelRegistry::Rescan reload();
  // Async-signal-safe: asks this object's thread to reload() (for SIGHUP).
  void requestReload() { reload_requested_ = true; }

  std::int64_t maxMemory() const { return options_.max_memory; }

 private:
  void threadLoop();
  void unloadNow(const std::string& id, bool force);  // blocking; the model is `unloading`
  Result<void> makeRoom(const std::string& id, std::int64_t bytes);
  void sweep();
  void forgetRemoved(const std::string& id);  // fails its queued jobs and drops its entry

  ModelRegistry& models_;
  Scheduler& scheduler_;
  LifecycleOptions options_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::string, bool>> to_unload_;  // guarded by mu_: (id, force)
  bool stop_ = false;                                   // guarded by mu_
  std::thread thread_;
  std::atomic<bool> reload_requested_{false};
};

// The physical memory this process may use: the machine's, capped by a cgroup v2 memory.max.
std::int64_t physicalMemoryBytes();

}  // namespace statim
