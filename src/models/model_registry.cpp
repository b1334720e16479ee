#include "models/model_registry.h"
#include "core/strings.h"

#include <algorithm>
#include <format>
#include <fstream>
#include <sstream>

#include "backends/registry.h"
#include "core/logging.h"

namespace statim {

std::string_view toString(ModelState s) {
  switch (s) {
    case ModelState::kLoading: return "loading";
    case ModelState::kReady: return "ready";
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
  e.reason = std::move(reason);
  return e;
}

// Resolves the backend and checks what can be checked without loading. A model that fails here
// keeps its manifest (so GET /models and /readyz still show `required`, the backend, the type).
ModelEntry prepare(ModelManifest m, int cores) {
  ModelEntry e;
  auto failed = [&](std::string reason) {
    e.backend = nullptr;
    e.manifest = std::move(m);
    e.state = ModelState::kFailed;
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
  if (auto r = e.backend->validateConfig(e.manifest.backendConfig(cores)); !r) {
    e.state = ModelState::kFailed;
    e.reason = r.error().message;
  }
  return e;
}

}  // namespace

std::unique_ptr<ModelRegistry> ModelRegistry::fromDirectory(const std::filesystem::path& dir,
                                                            std::int64_t default_max_queue, int cores) {
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
      continue;
    }
    auto dup = std::ranges::find_if(entries, [&](auto& e) { return e.manifest.id == m->id; });
    if (dup != entries.end()) {
      entries.push_back(failedEntry(
          m->id + "@" + f.filename().string(), f,
          std::format("duplicate model id '{}' (also in {})", m->id, dup->manifest.source.filename().string())));
      continue;
    }
    entries.push_back(prepare(std::move(*m), cores));
  }
  return std::make_unique<ModelRegistry>(std::move(entries), cores);
}

ModelRegistry::ModelRegistry(std::vector<ModelEntry> entries, int cores)
    : entries_(std::move(entries)), cores_(std::max(1, cores)) {
  std::ranges::sort(entries_, {}, [](auto& e) { return e.manifest.id; });
}

ModelRegistry::~ModelRegistry() { stopLoading(); }

void ModelRegistry::stopLoading() {
  {
    std::lock_guard lock(mu_);
    stop_loading_ = true;
  }
  if (loader_.joinable()) loader_.join();
}

void ModelRegistry::loadAll(std::function<void(const std::string&)> on_ready) {
  std::vector<ModelEntry> todo;
  {
    std::lock_guard lock(mu_);
    for (auto& e : entries_) {
      if (e.state == ModelState::kLoading) todo.push_back(e);
    }
    loader_running_ = true;
  }
  loader_ = std::thread([this, todo = std::move(todo), on_ready = std::move(on_ready)] {
    for (auto& e : todo) {
      const auto& m = e.manifest;
      {
        std::lock_guard lock(mu_);
        if (stop_loading_) break;
      }
      log::info("models: loading", {{"model", m.id}, {"backend", m.backend}, {"file", m.file.string()}});
      Result<std::shared_ptr<LoadedModel>> loaded = fail(Error::internal("not loaded"));
      try {
        loaded = e.backend->load(m.backendConfig(cores_));
      } catch (const std::exception& ex) {
        loaded = fail(Error::backend(std::format("load threw: {}", ex.what())));
      }
      if (!loaded) {
        log::error("models: failed to load", {{"model", m.id}, {"reason", loaded.error().message}});
        setState(m.id, ModelState::kFailed, loaded.error().message, nullptr);
        continue;
      }
      setState(m.id, ModelState::kReady, "", *loaded);
      log::info("models: ready", {{"model", m.id}});
      bool stopped;
      {
        std::lock_guard lock(mu_);
        stopped = stop_loading_;
      }
      if (on_ready && !stopped) on_ready(m.id);
    }
    {
      std::lock_guard lock(mu_);
      loader_running_ = false;
    }
    cv_.notify_all();
  });
}

void ModelRegistry::setState(const std::string& id, ModelState state, std::string reason,
                             std::shared_ptr<LoadedModel> loaded) {
  {
    std::lock_guard lock(mu_);
    for (auto& e : entries_) {
      if (e.manifest.id != id) continue;
      e.state = state;
      e.reason = std::move(reason);
      e.loaded = std::move(loaded);
    }
  }
  cv_.notify_all();
}

void ModelRegistry::waitLoaded() {
  std::unique_lock lock(mu_);
  cv_.wait(lock,
           [&] { return std::ranges::none_of(entries_, [](auto& e) { return e.state == ModelState::kLoading; }); });
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
  for (auto& e : entries_) out.push_back(e.manifest.id);
  return out;
}

}  // namespace statim
