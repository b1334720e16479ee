#include "scheduler/scheduler.h"
#include "core/strings.h"

#include <format>
#include <limits>
#include <random>

#include <unistd.h>

#include "core/clock.h"
#include "core/logging.h"

namespace statim {

struct Scheduler::ModelQueue {
  std::string id;
  std::int64_t max_queue = 0;
  std::int64_t queued = 0;       // admitted and not yet claimed (admission counter)
  std::uint64_t generation = 0;  // bumped on every submission: wakes idle workers without races
  int running = 0;
  std::condition_variable cv;
  std::vector<std::thread> workers;
};

// What a backend sees of its job: its own cancel flag, the shutdown deadline, and the event hub.
class Scheduler::Control final : public JobControl {
 public:
  Control(JobId id, const std::atomic<bool>& hard_stop, JobEvents& events, BlobStore* blobs)
      : id_(id), hard_stop_(hard_stop), events_(events), blobs_(blobs) {}
  bool cancelled() const override {
    return cancel_.load(std::memory_order_relaxed) || hard_stop_.load(std::memory_order_relaxed);
  }
  void progress(const nlohmann::json& event) override {
    events_.publish({id_, event.value("type", "progress"), event});
  }
  Result<JobFile> saveArtifact(const std::string& name, const std::string& content_type,
                               std::string_view bytes) override {
    if (!blobs_) return fail(Error::internal("this scheduler has no file store"));
    if (std::ranges::any_of(artifacts_, [&](const JobFile& f) { return f.name == name; })) {
      return fail(Error::internal(std::format("the backend saved two artifacts named '{}'", name)));
    }
    auto f = blobs_->put(name, content_type, bytes);
    if (f) artifacts_.push_back(*f);
    return f;
  }
  const std::vector<JobFile>& artifacts() const { return artifacts_; }
  void requestCancel() { cancel_ = true; }
  bool cancelRequested() const { return cancel_.load(); }

 private:
  JobId id_;
  std::atomic<bool> cancel_{false};
  const std::atomic<bool>& hard_stop_;
  JobEvents& events_;
  BlobStore* blobs_;
  std::vector<JobFile> artifacts_;  // only touched from the job's own thread
};

namespace {

std::string makeNodeId() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  return std::format("{}-{}-{:04x}", host, getpid(), rd() & 0xffff);
}

// Input files: present exactly when the backend takes them, and of a type it reads.
Result<void> checkInputs(const ModelEntry& entry, const NewJob& job) {
  auto types = entry.backend->inputTypes(job.type);
  if (types.empty()) {
    if (job.inputs.empty()) return ok();
    return fail(Error::invalid(std::format("model '{}' ({} jobs) takes no input files", job.model, job.type), "inputs"));
  }
  if (job.inputs.empty()) {
    return fail(Error::invalid(
        std::format("model '{}' needs an input file ({}): send it as multipart/form-data or in 'inputs' (base64)",
                    job.model, joinNames(types)),
        "inputs"));
  }
  for (auto& f : job.inputs) {
    if (std::ranges::find(types, f.content_type) == types.end()) {
      return fail(Error{ErrorCode::kUnsupportedMediaType,
                        std::format("input '{}' is {}; model '{}' reads {}", f.name, f.content_type, job.model,
                                    joinNames(types)),
                        "inputs." + f.name});
    }
    if (entry.manifest.max_input_bytes > 0 && f.bytes > entry.manifest.max_input_bytes) {
      return fail(Error{ErrorCode::kPayloadTooLarge,
                        std::format("input '{}' has {} bytes; model '{}' takes at most {} (max_input_bytes)", f.name,
                                    f.bytes, job.model, entry.manifest.max_input_bytes),
                        "inputs." + f.name});
    }
  }
  return ok();
}

}  // namespace

Scheduler::Scheduler(JobStore& store, ModelRegistry& models, SchedulerOptions options)
    : store_(store), models_(models), options_(std::move(options)) {
  if (options_.node_id.empty()) options_.node_id = makeNodeId();
  for (auto& e : models_.list()) {
    auto q = std::make_unique<ModelQueue>();
    q->id = e.manifest.id;
    q->max_queue = e.manifest.max_queue;
    queues_.emplace(q->id, std::move(q));
  }
  lease_thread_ = std::thread([this] { leaseLoop(); });
}

Scheduler::~Scheduler() { shutdown(std::chrono::milliseconds(0)); }

Result<RequeueReport> Scheduler::recover(bool all_processing) {
  Micros before = all_processing ? std::numeric_limits<Micros>::max() : nowMicros();
  auto report = store_.requeueAbandoned(before, options_.max_attempts);
  if (!report) return report;
  if (!report->requeued.empty() || !report->failed.empty()) {
    log::warn("scheduler: recovered interrupted jobs",
              {{"requeued", report->requeued}, {"failed_after_max_attempts", report->failed}});
  }
  auto counts = store_.queuedByModel();
  if (!counts) return fail(counts.error());
  std::lock_guard lock(mu_);
  for (auto& [model, n] : *counts) {
    if (auto it = queues_.find(model); it != queues_.end()) it->second->queued = n;
  }
  return report;
}

void Scheduler::startModel(const std::string& model_id) {
  auto entry = models_.find(model_id);
  if (!entry || !entry->loaded) return;
  std::lock_guard lock(mu_);
  auto it = queues_.find(model_id);
  if (stopping_ || it == queues_.end() || !it->second->workers.empty()) return;
  ModelQueue& q = *it->second;
  if (entry->loaded->batched()) {
    // One thread drives the model's batch; `parallel` is its capacity.
    q.workers.emplace_back([this, &q, loaded = entry->loaded] { batchLoop(q, loaded); });
    return;
  }
  for (int i = 0; i < entry->manifest.parallel; ++i) {
    q.workers.emplace_back([this, &q, loaded = entry->loaded, i] { workerLoop(q, loaded, i); });
  }
}

void Scheduler::submit(NewJob job, SubmitCallback done) {
  if (stopping_)
    return done(fail(ErrorCode::kShuttingDown, "the server is shutting down; retry on another instance or later"));
  auto entry = models_.find(job.model);
  if (!entry) {
    std::string list = joinNames(models_.ids());
    return done(fail(Error{
        ErrorCode::kModelNotFound,
        std::format("unknown model '{}'; available models: {}", job.model, list.empty() ? "(none)" : list), "model"}));
  }
  if (entry->state == ModelState::kFailed) {
    return done(fail(Error{ErrorCode::kModelUnavailable,
                           std::format("model '{}' failed to load: {}", job.model, entry->reason), "model"}));
  }
  auto served = entry->backend->servedTypes(entry->manifest.type);
  if (job.type.empty()) job.type = entry->manifest.type;
  if (std::ranges::find(served, job.type) == served.end()) {
    std::string list = joinNames(served);
    return done(fail(Error::invalid(
        std::format("model '{}' does not serve {} jobs (it serves: {})", job.model, job.type, list), "model")));
  }
  if (auto r = entry->backend->validateParams(job.type, job.params); !r) return done(fail(r.error()));
  if (auto r = checkInputs(*entry, job); !r) return done(fail(r.error()));
  if (entry->loaded) {
    if (auto r = entry->loaded->checkJob(job); !r) return done(fail(r.error()));
  }

  ModelQueue* q = nullptr;
  std::optional<Error> replay_when_full;
  {
    std::lock_guard lock(mu_);
    q = queues_.at(job.model).get();
    if (q->queued >= q->max_queue) {
      Error full{ErrorCode::kQueueFull,
                 std::format("model '{}' has {} queued jobs (max_queue {}); retry later", job.model, q->queued,
                             q->max_queue),
                 {}};
      if (job.idempotency_key.empty()) return done(fail(std::move(full)));
      replay_when_full = std::move(full);
    } else {
      ++q->queued;  // reserved before the write, so concurrent submissions cannot overshoot
    }
  }
  // A full queue does not refuse the retry of a job that is already in: it gets that job back.
  if (replay_when_full) {
    auto earlier = store_.findIdempotent(job.owner ? job.owner->key_id : 0, job.idempotency_key);
    if (!earlier) return done(fail(earlier.error()));
    if (!*earlier) return done(fail(std::move(*replay_when_full)));
    auto& [found, hash] = **earlier;
    if (hash != job.request_hash) {
      return done(fail(Error{ErrorCode::kConflict,
                             std::format("Idempotency-Key '{}' was already used with a different request (job {})",
                                         job.idempotency_key, found.id),
                             "Idempotency-Key"}));
    }
    found.replayed = true;
    return done(std::move(found));
  }
  store_.createAsync(std::move(job), [this, q, done = std::move(done)](Result<Job> r) {
    {
      std::lock_guard lock(mu_);
      if (r && !r->replayed)
        ++q->generation;
      else
        --q->queued;  // failed, or an idempotent retry that found its earlier job
    }
    if (r && !r->replayed) {
      if (options_.metrics) options_.metrics->submitted(*r);
      q->cv.notify_one();
      events_.publish({r->id, "queued"});
      log::debug("job: queued", {{"job_id", r->id}, {"model", r->model}});
    }
    done(std::move(r));
  });
}

std::optional<Job> Scheduler::claim(ModelQueue& q, const std::string& owner) {
  {
    // Counted until began() registers the job (or the claim comes back empty), so shutdown never
    // mistakes a job between the store and running_ for an idle worker.
    std::lock_guard lock(mu_);
    ++claiming_;
  }
  auto lease = std::chrono::duration_cast<std::chrono::microseconds>(options_.lease).count();
  auto claimed = store_.claimNext(q.id, owner, lease);
  if (!claimed) log::error("scheduler: claim failed", {{"model", q.id}, {"error", claimed.error().message}});
  if (!claimed || !*claimed) {
    {
      std::lock_guard lock(mu_);
      --claiming_;
    }
    idle_cv_.notify_all();
    return std::nullopt;
  }
  return std::move(**claimed);
}

void Scheduler::waitForWork(ModelQueue& q, std::uint64_t seen) {
  std::unique_lock lock(mu_);
  q.cv.wait_for(lock, options_.poll_interval, [&] { return stopping_ || q.generation != seen; });
}

void Scheduler::workerLoop(ModelQueue& q, std::shared_ptr<LoadedModel> model, int index) {
  const std::string owner = std::format("{}/{}/{}", options_.node_id, q.id, index);
  auto session = model->newSession();
  if (!session) {
    log::error("scheduler: worker could not open a session", {{"model", q.id}, {"error", session.error().message}});
    return;
  }
  while (!stopping_) {
    std::uint64_t seen;
    {
      std::lock_guard lock(mu_);
      seen = q.generation;
    }
    if (auto job = claim(q, owner)) {
      Control control(job->id, hard_stop_, events_, options_.blobs);
      began(q, *job, owner, control);
      Result<nlohmann::json> result = fail(Error::internal("not run"));
      try {
        result = (*session)->run(*job, control);
      } catch (const std::exception& e) {
        result = fail(Error::internal(std::format("backend threw: {}", e.what())));
      }
      finish(q, *job, owner, control, std::move(result));
      continue;
    }
    waitForWork(q, seen);
  }
}

void Scheduler::batchLoop(ModelQueue& q, std::shared_ptr<LoadedModel> model) {
  const std::string owner = std::format("{}/{}/batch", options_.node_id, q.id);
  auto session = model->newBatchSession();
  if (!session) {
    log::error("scheduler: could not open a batch session", {{"model", q.id}, {"error", session.error().message}});
    return;
  }
  BatchSession& batch = **session;
  struct Active {
    Job job;
    std::unique_ptr<Control> control;
  };
  std::map<JobId, Active> active;
  // Claims cost a store write: try only when a submission was committed since the last empty
  // claim, or when the poll interval has passed (work queued through another node).
  auto next_poll = std::chrono::steady_clock::now();
  std::uint64_t empty_at = std::numeric_limits<std::uint64_t>::max();
  while (true) {
    std::uint64_t seen;
    bool want_claim;
    {
      std::lock_guard lock(mu_);
      seen = q.generation;
      want_claim = q.generation != empty_at || std::chrono::steady_clock::now() >= next_poll;
    }
    // Between steps: fill free slots (new jobs join the running batch).
    while (want_claim && !stopping_ && batch.active() < batch.capacity()) {
      auto job = claim(q, owner);
      if (!job) {
        empty_at = seen;
        next_poll = std::chrono::steady_clock::now() + options_.poll_interval;
        break;
      }
      auto control = std::make_unique<Control>(job->id, hard_stop_, events_, options_.blobs);
      began(q, *job, owner, *control);
      if (auto r = batch.add(*job, *control); !r) {
        finish(q, *job, owner, *control, fail(r.error()));
        continue;
      }
      JobId id = job->id;
      active.emplace(id, Active{std::move(*job), std::move(control)});
    }
    if (active.empty()) {
      if (stopping_) return;
      waitForWork(q, seen);
      continue;
    }
    if (hard_stop_) {
      // Grace period over: leave the rest PROCESSING; the next start requeues them.
      for (auto& [id, a] : active) finish(q, a.job, owner, *a.control, fail(Error::internal("interrupted")));
      return;
    }
    std::vector<BatchOutcome> outcomes;
    try {
      outcomes = batch.step();
    } catch (const std::exception& e) {
      // A throwing step poisons the whole batch: fail its jobs, keep serving.
      for (auto& [id, a] : active)
        outcomes.push_back({id, fail(Error::internal(std::format("backend threw: {}", e.what())))});
    }
    for (auto& o : outcomes) {
      auto it = active.find(o.id);
      if (it == active.end()) continue;
      finish(q, it->second.job, owner, *it->second.control, std::move(o.result));
      active.erase(it);
    }
  }
}

void Scheduler::began(ModelQueue& q, const Job& job, const std::string& owner, Control& control) {
  {
    std::lock_guard lock(mu_);
    if (q.queued > 0) --q.queued;
    ++q.running;
    --claiming_;
    running_[job.id] = {owner, &control};
  }
  // A cancel may have been requested between the claim and now (or on another node).
  if (job.cancel_requested) control.requestCancel();
  if (options_.metrics) options_.metrics->started(job);
  events_.publish({job.id, "started", {{"attempt", job.attempts}}});
  log::info("job: started", {{"job_id", job.id}, {"model", job.model}, {"attempt", job.attempts}});
}

void Scheduler::finish(ModelQueue& q, const Job& job, const std::string& owner, Control& control,
                       Result<nlohmann::json> result) {
  const char* event = nullptr;
  if (hard_stop_ && !control.cancelRequested()) {
    log::warn("job: interrupted by shutdown, will be requeued", {{"job_id", job.id}, {"model", job.model}});
  } else if (control.cancelRequested()) {
    nlohmann::json partial = result ? *result : nlohmann::json(nullptr);
    if (auto r = store_.finishCancelled(job.id, owner, partial); !r) {
      log::error("job: could not record cancellation", {{"job_id", job.id}, {"error", r.error().message}});
    } else {
      event = "cancelled";
      log::info("job: cancelled", {{"job_id", job.id}, {"model", job.model}});
    }
  } else if (result) {
    if (!control.artifacts().empty() && result->is_object()) {
      nlohmann::json list = nlohmann::json::array();
      for (auto& f : control.artifacts()) {
        list.push_back({{"name", f.name}, {"content_type", f.content_type}, {"bytes", f.bytes}, {"sha256", f.sha256}});
      }
      (*result)["artifacts"] = std::move(list);
    }
    if (auto r = store_.complete(job.id, owner, *result, control.artifacts()); !r) {
      log::error("job: could not record completion", {{"job_id", job.id}, {"error", r.error().message}});
    } else {
      event = "completed";
      log::info("job: completed", {{"job_id", job.id}, {"model", job.model}});
    }
  } else {
    if (result.error().message.empty()) result.error().message = "the backend failed without saying why";
    if (auto r = store_.fail(job.id, owner, result.error().message); !r) {
      log::error("job: could not record failure", {{"job_id", job.id}, {"error", r.error().message}});
    } else {
      event = "failed";
    }
    log::warn("job: failed", {{"job_id", job.id}, {"model", job.model}, {"error", result.error().message}});
  }
  if (event) {
    auto final_job = store_.get(job.id);
    if (final_job && options_.metrics) options_.metrics->finished(*final_job);
    if (final_job) events_.publish({job.id, event, {{"status", toString(final_job->status)}}, std::move(*final_job)});
  }
  {
    std::lock_guard lock(mu_);
    --q.running;
    running_.erase(job.id);
  }
  idle_cv_.notify_all();
}

Result<Job> Scheduler::cancel(JobId id) {
  auto outcome = store_.requestCancel(id);
  if (!outcome) return fail(outcome.error());
  auto& job = outcome->job;
  if (outcome->before == JobStatus::kQueued) {
    // It was QUEUED: release its queue slot and tell observers.
    {
      std::lock_guard lock(mu_);
      if (auto it = queues_.find(job.model); it != queues_.end() && it->second->queued > 0) --it->second->queued;
    }
    if (options_.metrics) options_.metrics->finished(job);
    events_.publish({id, "cancelled", {{"status", "CANCELLED"}}, job});
    log::info("job: cancelled before it started", {{"job_id", id}, {"model", job.model}});
  } else if (outcome->before == JobStatus::kProcessing) {
    std::lock_guard lock(mu_);
    if (auto it = running_.find(id); it != running_.end()) it->second.control->requestCancel();
  }
  return job;
}

void Scheduler::leaseLoop() {
  const auto period = std::max(options_.lease / 3, std::chrono::milliseconds(10));
  const Micros lease_us = std::chrono::duration_cast<std::chrono::microseconds>(options_.lease).count();
  std::unique_lock lock(mu_);
  while (!joined_) {
    lease_cv_.wait_for(lock, period, [&] { return joined_; });
    if (joined_) break;
    auto running = running_;
    lock.unlock();
    for (auto& [id, run] : running) {
      auto r = store_.heartbeat(id, run.owner, lease_us);
      if (!r && r.error().code != ErrorCode::kConflict) {
        log::error("scheduler: lease renewal failed", {{"job_id", id}, {"error", r.error().message}});
      }
      if (r && *r) {
        // Cancelled through another node sharing the store.
        std::lock_guard relock(mu_);
        if (auto it = running_.find(id); it != running_.end()) it->second.control->requestCancel();
      }
    }
    // Jobs whose worker vanished (another node crashed) go back to the queue.
    if (auto r = store_.requeueAbandoned(nowMicros(), options_.max_attempts); r && !r->requeued.empty()) {
      log::warn("scheduler: requeued jobs with expired leases", {{"jobs", r->requeued}});
    }
    lock.lock();
  }
}

bool Scheduler::shutdown(std::chrono::milliseconds grace) {
  stopping_ = true;
  std::unique_lock lock(mu_);
  if (joined_) return true;
  for (auto& [id, q] : queues_) q->cv.notify_all();
  bool finished = idle_cv_.wait_for(lock, grace, [&] { return running_.empty() && claiming_ == 0; });
  if (!finished) {
    log::warn("scheduler: grace period over, stopping running jobs", {{"running", running_.size()}});
    hard_stop_ = true;
  }
  std::vector<std::thread> workers;
  for (auto& [id, q] : queues_) {
    for (auto& t : q->workers) workers.push_back(std::move(t));
    q->workers.clear();
  }
  joined_ = true;
  lease_cv_.notify_all();
  lock.unlock();
  for (auto& t : workers) t.join();
  if (lease_thread_.joinable()) lease_thread_.join();
  return finished;
}

ModelQueueStats Scheduler::stats(const std::string& model_id) const {
  std::lock_guard lock(mu_);
  auto it = queues_.find(model_id);
  if (it == queues_.end()) return {};
  auto& q = *it->second;
  return {q.queued, q.running, static_cast<int>(q.workers.size()), q.max_queue};
}

}  // namespace statim
