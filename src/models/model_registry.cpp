#include "models/model_registry.h"
#include "core/strings.h"

#include <algorithm>
#include <format>
#include <fstream>
#include <set>
#include <sstream>

#include <unistd.h>

#include "backends/registry.h"
#include "core/logging.h"
#include "core/openmp.h"
#include "core/thread_name.h"

namespace statim {

std::string_view toString(ModelState s) {
  switch (s) {
    case ModelState::kUnloaded: return "unloaded";
    case ModelState::kLoading: return "loading";
    case ModelState::kReady: return "ready";
    case ModelState::kUnloading: return "unloading";
    case ModelState::kFailed: return "failed";
  }
  return "failed";
}

namespace {

ModelEntry failedEntry(std::string id, const std::filesystem::path& source, std::string reason) {
  ModelEntry e;
  e.manifest.id = std::move(id);
  e.manifest.source = source;
  e.state = ModelState::kFailed;
  e.loadable = false;
  e.reason = std::move(reason);
  return e;
}

// What a model's files take on disk: the weights a load maps or reads (a folder: every file in it).
std::int64_t filesBytes(const std::filesystem::path& file) {
  std::error_code ec;
  if (file.empty()) return 0;
  if (std::filesystem::is_regular_file(file, ec))
    return static_cast<std::int64_t>(std::filesystem::file_size(file, ec));
  std::int64_t total = 0;
  if (std::filesystem::is_directory(file, ec)) {
    for (auto& de : std::filesystem::recursive_directory_iterator(file, ec)) {
      if (de.is_regular_file(ec)) total += static_cast<std::int64_t>(de.file_size(ec));
    }
  }
  return total;
}

// Resolves the backend and checks what can be checked without loading. A model that fails here
// keeps its manifest (so GET /models and /readyz still show `required`, the backend, the type).
ModelEntry prepare(ModelManifest m, int cores) {
  ModelEntry e;
  auto failed = [&](std::string reason) {
    e.backend = nullptr;
    e.manifest = std::move(m);
    e.state = ModelState::kFailed;
    e.loadable = false;
    e.reason = std::move(reason);
    return std::move(e);
  };
  e.backend = findBackend(m.backend);
  if (!e.backend) return failed(std::format("unknown backend '{}' (available: {})", m.backend, backendList()));
  auto types = e.backend->jobTypes();
  if (m.type.empty()) m.type = types.front();
  if (std::ranges::find(types, m.type) == types.end()) {
    return failed(std::format("backend '{}' has no job type '{}' (it serves: {})", m.backend, m.type, joinNames(types)));
  }
  e.manifest = std::move(m);
  e.memory_estimate = filesBytes(e.manifest.file);
  if (auto r = e.backend->validateConfig(e.manifest.backendConfig(cores)); !r) {
    e.state = ModelState::kFailed;
    e.loadable = false;
    e.reason = r.error().message;
  }
  return e;
}

// What identifies a manifest's content: a changed one (or changed weights) reloads its model.
std::string fingerprint(const std::string& text, const std::filesystem::path& file) {
  std::error_code ec;
  std::string out = text;
  if (!file.empty() && std::filesystem::exists(file, ec)) {
    auto t = std::filesystem::last_write_time(file, ec).time_since_epoch().count();
    out += std::format("\n#file {} {}", t,
                       std::filesystem::is_regular_file(file, ec) ? std::filesystem::file_size(file, ec) : 0);
  }
  return out;
}

std::vector<ModelEntry> readDirectory(const std::filesystem::path& dir, std::int64_t default_max_queue, int cores) {
  std::vector<ModelEntry> entries;
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (auto& de : std::filesystem::directory_iterator(dir, ec)) {
    if (de.path().extension() == ".toml") files.push_back(de.path());
  }
  if (ec) log::error("models: cannot read models dir", {{"dir", dir.string()}, {"error", ec.message()}});
  std::ranges::sort(files);
  for (auto& f : files) {
    std::ifstream in(f);
    std::stringstream text;
    text << in.rdbuf();
    auto m = parseManifest(text.str(), std::filesystem::absolute(f), default_max_queue);
    if (!m) {
      entries.push_back(failedEntry(f.stem().string(), f, m.error().message));
      entries.back().fingerprint = text.str();
      continue;
    }
    auto dup = std::ranges::find_if(entries, [&](auto& e) { return e.manifest.id == m->id; });
    if (dup != entries.end()) {
      entries.push_back(failedEntry(
          m->id + "@" + f.filename().string(), f,
          std::format("duplicate model id '{}' (also in {})", m->id, dup->manifest.source.filename().string())));
      continue;
    }
    auto file = m->file;
    entries.push_back(prepare(std::move(*m), cores));
    entries.back().fingerprint = fingerprint(text.str(), file);
  }
  return entries;
}

}  // namespace

std::unique_ptr<ModelRegistry> ModelRegistry::fromDirectory(const std::filesystem::path& dir,
                                                            std::int64_t default_max_queue, int cores) {
  auto registry = std::make_unique<ModelRegistry>(readDirectory(dir, default_max_queue, cores), cores);
  registry->dir_ = dir;
  registry->default_max_queue_ = default_max_queue;
  return registry;
}

ModelRegistry::Rescan ModelRegistry::rescan() {
  Rescan report;
  if (dir_.empty()) return report;
  auto fresh = readDirectory(dir_, default_max_queue_, cores_);
  std::set<std::string> present;
  for (auto& f : fresh) present.insert(f.manifest.id);
  std::lock_guard lock(mu_);
  for (auto& f : fresh) {
    ModelEntry* e = entryLocked(f.manifest.id);
    if (!e) {
      report.added.push_back(f.manifest.id);
      entries_.push_back(std::move(f));
      continue;
    }
    if (e->fingerprint == f.fingerprint && !e->removed) continue;
    report.changed.push_back(f.manifest.id);
    if (e->state == ModelState::kUnloaded || e->state == ModelState::kFailed) {
      f.last_used_at = e->last_used_at;
      *e = std::move(f);
    } else {
      e->removed = false;
      e->next = std::make_shared<ModelEntry>(std::move(f));  // applied once it is unloaded
    }
  }
  for (auto& e : entries_) {
    if (!present.contains(e.manifest.id) && !e.removed) {
      e.removed = true;
      e.next.reset();
      report.removed.push_back(e.manifest.id);
    }
  }
  std::ranges::sort(entries_, {}, [](auto& e) { return e.manifest.id; });
  return report;
}

bool ModelRegistry::forget(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = std::ranges::find_if(entries_, [&](auto& e) { return e.manifest.id == id; });
  if (it == entries_.end() || !it->removed ||
      (it->state != ModelState::kUnloaded && it->state != ModelState::kFailed)) {
    return false;
  }
  entries_.erase(it);
  return true;
}

ModelRegistry::ModelRegistry(std::vector<ModelEntry> entries, int cores)
    : entries_(std::move(entries)), cores_(std::max(1, cores)) {
  std::ranges::sort(entries_, {}, [](auto& e) { return e.manifest.id; });
  for (auto& e : entries_) {
    if (e.state == ModelState::kFailed) e.loadable = false;
  }
}

ModelRegistry::~ModelRegistry() { stopLoading(); }

std::int64_t residentBytes() {
  std::ifstream in("/proc/self/statm");
  std::int64_t pages = 0, resident = 0;
  if (!(in >> pages >> resident)) return 0;
  return resident * static_cast<std::int64_t>(sysconf(_SC_PAGESIZE));
}

void ModelRegistry::start(Hooks hooks) {
  {
    std::lock_guard lock(mu_);
    if (started_) return;
    started_ = true;
    hooks_ = std::move(hooks);
    for (auto& e : entries_) {
      if (e.state == ModelState::kUnloaded && e.manifest.preload) {
        e.state = ModelState::kLoading;
        to_load_.push_back(e.manifest.id);
      }
    }
  }
  loader_ = std::thread([this] { loaderLoop(); });
}

void ModelRegistry::stopLoading() {
  {
    std::lock_guard lock(mu_);
    stop_loading_ = true;
    started_ = true;  // no start() after a stop
  }
  cv_.notify_all();
  if (loader_.joinable()) loader_.join();
}

ModelEntry* ModelRegistry::entryLocked(const std::string& id) {
  auto it = std::ranges::find_if(entries_, [&](auto& e) { return e.manifest.id == id; });
  return it == entries_.end() ? nullptr : &*it;
}

Result<ModelEntry> ModelRegistry::requestLoad(const std::string& id) {
  std::unique_lock lock(mu_);
  ModelEntry* e = entryLocked(id);
  if (!e) return fail(Error{ErrorCode::kModelNotFound, std::format("unknown model '{}'", id), "model"});
  if (!e->loadable) {
    return fail(
        Error{ErrorCode::kModelUnavailable, std::format("model '{}' cannot be loaded: {}", id, e->reason), "model"});
  }
  switch (e->state) {
    case ModelState::kUnloaded:
    case ModelState::kFailed:
      e->state = ModelState::kLoading;
      e->reason.clear();
      to_load_.push_back(id);
      cv_.notify_all();
      break;
    case ModelState::kUnloading: e->load_after_unload = true; break;
    case ModelState::kLoading:
    case ModelState::kReady: break;
  }
  return *e;
}

void ModelRegistry::loaderLoop() {
  nameThisThread("model-loader");
  confineOpenMpToThisThread();  // a backend's load must not give this thread an OpenMP pool
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_loading_ || !to_load_.empty(); });
    if (stop_loading_) break;
    std::string id = std::move(to_load_.front());
    to_load_.pop_front();
    ModelEntry* e = entryLocked(id);
    if (!e || e->state != ModelState::kLoading) continue;
    loading_one_ = true;
    ModelEntry copy = *e;
    lock.unlock();

    const auto& m = copy.manifest;
    Result<std::shared_ptr<LoadedModel>> loaded = fail(Error::internal("not loaded"));
    if (auto room = hooks_.make_room ? hooks_.make_room(id, copy.memory_estimate) : Result<void>{}; !room) {
      loaded = fail(room.error());
    } else {
      log::info("models: loading", {{"model", m.id}, {"backend", m.backend}, {"file", m.file.string()}});
      auto rss_before = residentBytes();
      auto t0 = std::chrono::steady_clock::now();
      try {
        loaded = copy.backend->load(m.backendConfig(cores_));
      } catch (const std::exception& ex) {
        loaded = fail(Error::backend(std::format("load threw: {}", ex.what())));
      }
      copy.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      copy.memory_measured = std::max<std::int64_t>(0, residentBytes() - rss_before);
    }
    std::vector<std::function<void()>> calls;
    lock.lock();
    e = entryLocked(id);
    if (!e) {
      loading_one_ = false;
      cv_.notify_all();
      continue;
    }
    if (loaded) {
      e->state = ModelState::kReady;
      e->loaded = *loaded;
      e->loaded_at = nowMicros();
      e->load_seconds = copy.load_seconds;
      // Mapped weights count only as they are touched: memoryInUse() takes the larger of this and the files.
      e->memory_measured = copy.memory_measured;
      log::info("models: ready", {{"model", id}, {"seconds", copy.load_seconds}});
      if (hooks_.on_ready && !stop_loading_) calls.push_back([this, id] { hooks_.on_ready(id); });
    } else {
      e->state = ModelState::kFailed;
      e->reason = loaded.error().message;
      log::error("models: failed to load", {{"model", id}, {"reason", e->reason}});
      if (hooks_.on_failed && !stop_loading_) {
        calls.push_back([this, id, reason = e->reason] { hooks_.on_failed(id, reason); });
      }
    }
    settledLocked(*e, calls);
    lock.unlock();
    for (auto& c : calls) c();
    lock.lock();
    loading_one_ = false;
    cv_.notify_all();
  }
  // Stopped: what was queued stays unloaded.
  for (auto& id : to_load_) {
    if (ModelEntry* e = entryLocked(id); e && e->state == ModelState::kLoading) e->state = ModelState::kUnloaded;
  }
  to_load_.clear();
  std::vector<std::function<void()>> calls;
  for (auto& e : entries_) settledLocked(e, calls);
  lock.unlock();
  for (auto& c : calls) c();
  cv_.notify_all();
}

void ModelRegistry::settledLocked(ModelEntry& e, std::vector<std::function<void()>>& calls) {
  if (e.state == ModelState::kLoading || e.state == ModelState::kUnloading) return;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->first == e.manifest.id) {
      calls.push_back([fn = std::move(it->second), copy = e] { fn(copy); });
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
}

bool ModelRegistry::whenSettled(const std::string& id, std::function<void(const ModelEntry&)> fn) {
  std::unique_lock lock(mu_);
  ModelEntry* e = entryLocked(id);
  if (!e) return false;
  if (e->state != ModelState::kLoading && e->state != ModelState::kUnloading) {
    ModelEntry copy = *e;
    lock.unlock();
    fn(copy);
    return true;
  }
  waiters_.emplace_back(id, std::move(fn));
  return true;
}

Result<ModelEntry> ModelRegistry::beginUnload(const std::string& id) {
  std::lock_guard lock(mu_);
  ModelEntry* e = entryLocked(id);
  if (!e) return fail(Error{ErrorCode::kModelNotFound, std::format("unknown model '{}'", id), "model"});
  if (e->state != ModelState::kReady) {
    return fail(Error{ErrorCode::kConflict,
                      std::format("model '{}' is {}; only a ready model can be unloaded", id, toString(e->state)),
                      "model"});
  }
  e->state = ModelState::kUnloading;
  e->load_after_unload = false;
  return *e;
}

bool ModelRegistry::finishUnload(const std::string& id) {
  std::vector<std::function<void()>> calls;
  std::shared_ptr<LoadedModel> dropped;  // freed below, outside the lock (freeing weights takes a while)
  bool again = false;
  {
    std::lock_guard lock(mu_);
    ModelEntry* e = entryLocked(id);
    if (!e || e->state != ModelState::kUnloading) return false;
    e->state = ModelState::kUnloaded;
    dropped = std::move(e->loaded);
    e->keep_alive_set.reset();
    e->loaded_at = 0;
    again = e->load_after_unload;
    e->load_after_unload = false;
    if (e->next) {
      // A manifest that changed while the model was loaded takes effect now; it loads again.
      ModelEntry next = std::move(*e->next);
      next.last_used_at = e->last_used_at;
      *e = std::move(next);
      again = again || e->manifest.preload;
    }
    settledLocked(*e, calls);
  }
  dropped.reset();
  for (auto& c : calls) c();
  return again;
}

void ModelRegistry::setKeepAlive(const std::string& id, double seconds) {
  std::lock_guard lock(mu_);
  if (ModelEntry* e = entryLocked(id)) e->keep_alive_set = seconds;
}

void ModelRegistry::touch(const std::string& id) {
  std::lock_guard lock(mu_);
  if (ModelEntry* e = entryLocked(id)) e->last_used_at = nowMicros();
}

std::int64_t ModelRegistry::memoryInUse() const {
  std::lock_guard lock(mu_);
  std::int64_t total = 0;
  for (auto& e : entries_) {
    if (e.state == ModelState::kReady || e.state == ModelState::kUnloading || e.state == ModelState::kLoading) {
      total += std::max(e.memory_measured, e.memory_estimate);
    }
  }
  return total;
}

void ModelRegistry::waitLoaded() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] {
    return stop_loading_ || (to_load_.empty() && !loading_one_ &&
                             std::ranges::none_of(entries_, [](auto& e) { return e.state == ModelState::kLoading; }));
  });
}

std::optional<ModelEntry> ModelRegistry::find(const std::string& id) const {
  std::lock_guard lock(mu_);
  for (auto& e : entries_) {
    if (e.manifest.id == id) return e;
  }
  return std::nullopt;
}

std::vector<ModelEntry> ModelRegistry::list() const {
  std::lock_guard lock(mu_);
  return entries_;
}

std::vector<std::string> ModelRegistry::ids() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (auto& e : entries_) {
    if (!e.removed) out.push_back(e.manifest.id);
  }
  return out;
}

}  // namespace statim
