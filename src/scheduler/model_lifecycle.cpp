#include "scheduler/model_lifecycle.h"

#include <algorithm>
#include <format>
#include <fstream>

#include <malloc.h>
#include <unistd.h>

#include "core/logging.h"
#include "core/thread_name.h"

namespace statim {
namespace {

std::string mib(std::int64_t bytes) { return std::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20)); }

std::int64_t footprint(const ModelEntry& e) { return std::max(e.memory_measured, e.memory_estimate); }

bool holdsMemory(ModelState s) {
  return s == ModelState::kReady || s == ModelState::kLoading || s == ModelState::kUnloading;
}

}  // namespace

std::int64_t physicalMemoryBytes() {
  std::int64_t bytes = static_cast<std::int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  std::ifstream in("/sys/fs/cgroup/memory.max");
  std::string limit;
  if (in >> limit && limit != "max") {
    std::int64_t v = std::atoll(limit.c_str());
    if (v > 0) bytes = std::min(bytes, v);
  }
  return bytes;
}

ModelLifecycle::ModelLifecycle(ModelRegistry& models, Scheduler& scheduler, LifecycleOptions options)
    : models_(models), scheduler_(scheduler), options_(options) {}

ModelLifecycle::~ModelLifecycle() { stop(); }

void ModelLifecycle::start() {
  thread_ = std::thread([this] { threadLoop(); });
  models_.start({
      .on_ready = [this](const std::string& id) { scheduler_.startModel(id); },
      .on_failed =
          [this](const std::string& id, const std::string& reason) {
            scheduler_.failQueued(id, std::format("model '{}' failed to load: {}", id, reason));
          },
      .make_room = [this](const std::string& id, std::int64_t bytes) { return makeRoom(id, bytes); },
  });
}

void ModelLifecycle::stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  models_.stopLoading();
  if (thread_.joinable()) thread_.join();
}

Result<ModelEntry> ModelLifecycle::load(const std::string& id) { return models_.requestLoad(id); }

Result<ModelEntry> ModelLifecycle::unload(const std::string& id, bool force) {
  auto e = models_.beginUnload(id);
  if (!e) {
    // Already unloading and waiting for its jobs: force makes it cancel them now.
    auto now = models_.find(id);
    if (force && now && now->state == ModelState::kUnloading) {
      scheduler_.retireModel(id, true);
      return *now;
    }
    return e;
  }
  scheduler_.retireModel(id, force);  // claims nothing from now on, even before its turn below
  {
    std::lock_guard lock(mu_);
    to_unload_.emplace_back(id, force);
  }
  cv_.notify_all();
  return e;
}

void ModelLifecycle::threadLoop() {
  nameThisThread("model-idle");
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, options_.sweep_interval, [&] { return stop_ || !to_unload_.empty(); });
    if (stop_) break;
    while (!to_unload_.empty()) {
      auto [id, force] = to_unload_.front();
      to_unload_.pop_front();
      lock.unlock();
      unloadNow(id, force);
      lock.lock();
    }
    lock.unlock();
    if (reload_requested_.exchange(false)) reload();
    sweep();
    lock.lock();
  }
  // Unloads asked for but not done stay `unloading` in a process that is stopping anyway.
}

void ModelLifecycle::unloadNow(const std::string& id, bool force) {
  auto t0 = std::chrono::steady_clock::now();
  int running = scheduler_.stopModel(id, force);
  bool again = models_.finishUnload(id);
  malloc_trim(0);  // hand the freed heap (KV caches, buffers) back to the system, so that RSS shows it
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info("models: unloaded",
            {{"model", id}, {"seconds", seconds}, {"running_jobs_waited_for", running}, {"forced", force}});
  auto e = models_.find(id);
  if (e && e->removed) return forgetRemoved(id);
  if (e) scheduler_.addModel(id, e->manifest.max_queue);  // a changed manifest may change it
  // Jobs that came while it was unloading (or were queued before) load it again.
  if (again || scheduler_.stats(id).queued > 0) {
    log::info("models: loading again for the jobs waiting for it", {{"model", id}});
    (void)models_.requestLoad(id);
  }
}

ModelRegistry::Rescan ModelLifecycle::reload() {
  auto report = models_.rescan();
  log::info("models: reloaded the models dir",
            {{"added", report.added}, {"changed", report.changed}, {"removed", report.removed}});
  for (auto& id : report.added) {
    auto e = models_.find(id);
    if (!e) continue;
    scheduler_.addModel(id, e->manifest.max_queue);
    if (e->loadable && e->manifest.preload) (void)models_.requestLoad(id);
  }
  for (auto& id : report.changed) {
    auto e = models_.find(id);
    if (!e) continue;
    if (e->state == ModelState::kUnloaded || e->state == ModelState::kFailed) {
      // Replaced at once: load the new one if it wants to be, or if jobs wait for it.
      scheduler_.addModel(id, e->manifest.max_queue);
      if (e->loadable && (e->manifest.preload || scheduler_.stats(id).queued > 0)) (void)models_.requestLoad(id);
    }
    // A loaded one is unloaded by the sweep once idle (`next`), and loads again with the new manifest.
  }
  for (auto& id : report.removed) {
    auto e = models_.find(id);
    if (e && (e->state == ModelState::kUnloaded || e->state == ModelState::kFailed)) forgetRemoved(id);
  }
  cv_.notify_all();
  return report;
}

void ModelLifecycle::forgetRemoved(const std::string& id) {
  scheduler_.failQueued(id, std::format("model '{}' was removed from the models dir", id));
  if (models_.forget(id)) log::info("models: removed", {{"model", id}});
}

void ModelLifecycle::sweep() {
  const Micros now = nowMicros();
  // Manifests that changed or went: every such model stops claiming first, then each is unloaded
  // once its running jobs have ended (and loads anew, or goes).
  std::vector<std::string> stale;
  for (auto& e : models_.list()) {
    if (e.state != ModelState::kReady || !(e.removed || e.next) || !models_.beginUnload(e.manifest.id)) continue;
    scheduler_.retireModel(e.manifest.id, false);
    log::info(e.removed ? "models: manifest removed, unloading once its jobs end"
                        : "models: manifest changed, reloading once its jobs end",
              {{"model", e.manifest.id}});
    stale.push_back(e.manifest.id);
  }
  for (auto& id : stale) unloadNow(id, false);
  for (auto& e : models_.list()) {
    const auto& m = e.manifest;
    const double keep_alive = e.keepAlive();
    if (e.state != ModelState::kReady || m.required || keep_alive < 0) continue;
    Micros since = std::max(e.last_used_at, e.loaded_at);
    if (static_cast<double>(now - since) < keep_alive * 1e6) continue;
    auto stats = scheduler_.stats(m.id);
    if (stats.running > 0 || stats.queued > 0) continue;
    if (!models_.beginUnload(m.id)) continue;  // changed meanwhile
    log::info("models: idle for keep_alive, unloading", {{"model", m.id}, {"keep_alive_s", keep_alive}});
    unloadNow(m.id, false);
  }
}

Result<void> ModelLifecycle::makeRoom(const std::string& id, std::int64_t bytes) {
  const std::int64_t budget = options_.max_memory;
  if (budget <= 0) return ok();
  if (bytes > budget) {
    return fail(Error{ErrorCode::kModelUnavailable,
                      std::format("model '{}' needs about {} (its files) but models.max_memory is {}: it can never be "
                                  "loaded; raise models.max_memory",
                                  id, mib(bytes), mib(budget)),
                      "model"});
  }
  while (true) {
    auto all = models_.list();
    std::int64_t used = 0;
    for (auto& e : all) {
      if (e.manifest.id != id && holdsMemory(e.state)) used += footprint(e);
    }
    if (used + bytes <= budget) return ok();
    // The least recently used idle model that may go.
    const ModelEntry* victim = nullptr;
    for (auto& e : all) {
      if (e.manifest.id == id || e.state != ModelState::kReady || e.manifest.required) continue;
      auto stats = scheduler_.stats(e.manifest.id);
      if (stats.running > 0 || stats.queued > 0) continue;
      if (!victim || std::max(e.last_used_at, e.loaded_at) < std::max(victim->last_used_at, victim->loaded_at)) {
        victim = &e;
      }
    }
    if (!victim) {
      return fail(Error{ErrorCode::kModelUnavailable,
                        std::format("model '{}' needs about {} but {} of models.max_memory ({}) is taken by models "
                                    "that are busy or required; unload one, or raise models.max_memory",
                                    id, mib(bytes), mib(used), mib(budget)),
                        "model"});
    }
    std::string vid = victim->manifest.id;
    if (!models_.beginUnload(vid)) continue;
    log::info("models: unloading the least recently used idle model to make room",
              {{"model", vid}, {"for", id}, {"needed_mib", bytes >> 20}, {"budget_mib", budget >> 20}});
    unloadNow(vid, false);
  }
}

}  // namespace statim
