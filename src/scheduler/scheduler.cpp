#include "scheduler/scheduler.h"
#include "core/strings.h"

#include <deque>
#include <format>
#include <limits>
#include <random>

#include <unistd.h>

#include "core/clock.h"
#include "core/logging.h"
#include "core/openmp.h"
#include "core/thread_name.h"

namespace statim {

struct Scheduler::ModelQueue {
  std::string id;
  std::string owner;  // the lease owner of this node's jobs of the model
  std::int64_t max_queue = 0;
  std::int64_t queued = 0;       // admitted and not yet claimed (admission counter)
  std::uint64_t generation = 0;  // bumped on every queued submission: wakes idle workers without races
  int capacity = 0;              // jobs it runs at once, once serving (0 until then: every job queues)
  int running = 0;               // slots in use: jobs claimed (or being claimed at submission) that their
                                 // worker has not yet ended (an ended job may still be committing)
  int starting = 0;              // of those, claimed at submission and not yet taken by a worker
  std::deque<Claimed> ready;     // claimed at submission, for the next free worker
  std::deque<Claimed> ahead;     // claimed by a worker beyond its own job (claimSize), for the next free
                                 // worker; not counted in `running` until one takes it
  // Moving averages, in µs, of a worker's claim round trip and of a job's run (workers only; a
  // lost update is harmless). 0: not measured yet.
  std::atomic<double> claim_us = 0;
  std::atomic<double> run_us = 0;
  bool retiring = false;         // stopModel: its workers end once idle, and claim nothing more
  std::condition_variable cv;
  std::vector<std::thread> workers;
};

// What a backend sees of its job: its own cancel flag, the shutdown deadline, and the event hub.
class Scheduler::Control final : public JobControl {
 public:
  Control(JobId id, const std::atomic<bool>& hard_stop, EventBus& events, BlobStore* blobs)
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
  EventBus& events_;
  BlobStore* blobs_;
  std::vector<JobFile> artifacts_;  // only touched from the job's own thread
};

std::string makeNodeId() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  return std::format("{}-{}-{:04x}", host, getpid(), rd() & 0xffff);
}

namespace {

// A lifecycle event's data, with the job's owner: GET /events shows a key only its own jobs, and
// an event from another node may carry no job.
nlohmann::json owned(const Job& job, nlohmann::json data) {
  if (job.owner_key_id) data["key_id"] = *job.owner_key_id;
  return data;
}

// Input files: present exactly when the backend takes them, and of a type it reads.
Result<void> checkInputs(const ModelEntry& entry, const NewJob& job) {
  auto types = entry.backend->inputTypes(job.type);
  if (types.empty()) {
    if (job.inputs.empty()) return ok();
    return fail(Error::invalid(std::format("model '{}' ({} jobs) takes no input files", job.model, job.type), "inputs"));
  }
  if (job.inputs.empty()) {
    if (entry.backend->inputsOptional(job.type)) return ok();
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

// At most this many jobs claimed ahead of a free slot (see Scheduler::claimSize).
constexpr int kMaxClaimAhead = 32;

void addSample(std::atomic<double>& average, std::chrono::steady_clock::duration took) {
  double us = std::chrono::duration<double, std::micro>(took).count();
  double was = average.load(std::memory_order_relaxed);
  average.store(was == 0 ? us : 0.8 * was + 0.2 * us, std::memory_order_relaxed);
}

// When a worker should try to claim from the queue, which costs a commit: when a queued
// submission was committed since its last empty claim, or once the poll interval has passed
// (work queued through another node). Jobs claimed at submission need no claim.
class ClaimGate {
 public:
  bool open(std::uint64_t generation) const {
    return generation != empty_at_ || std::chrono::steady_clock::now() >= next_poll_;
  }
  void sawEmpty(std::uint64_t generation, std::chrono::milliseconds poll) {
    empty_at_ = generation;
    next_poll_ = std::chrono::steady_clock::now() + poll;
  }

 private:
  std::uint64_t empty_at_ = std::numeric_limits<std::uint64_t>::max();
  std::chrono::steady_clock::time_point next_poll_{};
};

}  // namespace

Scheduler::Scheduler(JobStore& store, ModelRegistry& models, SchedulerOptions options)
    : store_(store),
      models_(models),
      options_(std::move(options)),
      events_(options_.events ? *options_.events : own_events_) {
  if (options_.node_id.empty()) options_.node_id = makeNodeId();
  for (auto& e : models_.list()) {
    auto q = std::make_unique<ModelQueue>();
    q->id = e.manifest.id;
    q->owner = std::format("{}/{}", options_.node_id, q->id);
    q->max_queue = e.manifest.max_queue;
    queues_.emplace(q->id, std::move(q));
  }
  if (options_.shared_store) {
    remote_token_ = events_.subscribeAll([this](const JobEvent& e) {
      heardFromAnotherNode(e);
      return true;
    });
  }
  lease_thread_ = std::thread([this] { leaseLoop(); });
}

Scheduler::~Scheduler() { shutdown(std::chrono::milliseconds(0)); }

Result<RequeueReport> Scheduler::recover(bool all_processing) {
  Micros before = all_processing ? std::numeric_limits<Micros>::max() : nowMicros();
  Result<RequeueReport> report = RequeueReport{};
  if (auto problem = store_.writeProblem()) {
    // Nothing can be requeued now; the lease loop requeues them once the store takes writes
    // again and their leases have expired.
    log::warn("scheduler: interrupted jobs stay as they are until the store takes writes",
              {{"error", problem->message}});
  } else {
    report = store_.requeueAbandoned(before, options_.max_attempts);
  }
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
  std::lock_guard lock(mu_);
  // Read under mu_: an unload that began before this is seen here (the model is not ready), and
  // one that begins after retires the workers started here.
  auto entry = models_.find(model_id);
  if (!entry || !entry->loaded || entry->state != ModelState::kReady) return;
  auto it = queues_.find(model_id);
  if (stopping_ || it == queues_.end() || !it->second->workers.empty()) return;
  ModelQueue& q = *it->second;
  if (entry->loaded->batched()) {
    // One thread drives the model's batch; `parallel` is its capacity (set once its session is open).
    q.workers.emplace_back([this, &q, loaded = entry->loaded] { batchLoop(q, loaded); });
    return;
  }
  q.capacity = entry->manifest.parallel;
  // Measured afresh for this load of the model (its settings, and so its speed, may differ).
  q.claim_us = 0;
  q.run_us = 0;
  for (int i = 0; i < entry->manifest.parallel; ++i) {
    q.workers.emplace_back([this, &q, loaded = entry->loaded, i] { workerLoop(q, loaded, i); });
  }
}

int Scheduler::retireModel(const std::string& model_id, bool force) {
  std::lock_guard lock(mu_);
  auto it = queues_.find(model_id);
  if (it == queues_.end()) return 0;
  ModelQueue* q = it->second.get();
  q->retiring = true;
  q->capacity = 0;  // nothing more is claimed at submission: new jobs queue
  if (force) {
    // Jobs claimed ahead are not cancelled: they are short by design and run before the
    // workers end (they would have stayed queued but for the claim).
    std::set<JobId> ahead;
    for (auto& c : q->ahead) ahead.insert(c.job.id);
    for (auto& [id, held] : running_) {
      if (held.owner == q->owner && !ahead.contains(id)) held.control->requestCancel();
    }
  }
  q->cv.notify_all();
  return q->running + static_cast<int>(q->ahead.size());
}

int Scheduler::stopModel(const std::string& model_id, bool force) {
  std::vector<std::thread> workers;
  int running = retireModel(model_id, force);
  ModelQueue* q = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = queues_.find(model_id);
    if (it == queues_.end()) return 0;
    q = it->second.get();
    workers = std::move(q->workers);
    q->workers.clear();
    q->cv.notify_all();
  }
  for (auto& t : workers) t.join();  // each ends once its jobs (and those on their way) have ended
  std::lock_guard lock(mu_);
  q->retiring = false;
  q->capacity = 0;  // a batch session opened while it retired set it again: no workers, no slots
  return running;
}

void Scheduler::addModel(const std::string& model_id, std::int64_t max_queue) {
  std::lock_guard lock(mu_);
  auto& q = queues_[model_id];
  if (!q) {
    q = std::make_unique<ModelQueue>();
    q->id = model_id;
    q->owner = std::format("{}/{}", options_.node_id, q->id);
  }
  q->max_queue = max_queue;
}

void Scheduler::failQueued(const std::string& model_id, const std::string& message) {
  ModelQueue* q = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = queues_.find(model_id);
    if (it == queues_.end() || stopping_) return;
    q = it->second.get();
  }
  while (true) {
    auto claimed = claim(*q, 64);
    if (claimed.empty()) break;
    for (auto& c : claimed) finish(*q, c.job, *c.control, fail(Error::backend(message)));
  }
}

void Scheduler::submit(NewJob job, SubmitCallback done) {
  if (stopping_)
    return done(fail(ErrorCode::kShuttingDown, "the server is shutting down; retry on another instance or later"));
  auto entry = models_.find(job.model);
  if (!entry || entry->removed) {
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
  if (options_.served && !options_.served(job.model)) {
    return done(fail(Error{ErrorCode::kModelUnavailable,
                           std::format("no live node serves model '{}' (jobs.reject_unserved is on): start a worker "
                                       "node with its manifest, or retry later",
                                       job.model),
                           "model"}));
  }
  if (job.keep_alive) models_.setKeepAlive(job.model, *job.keep_alive);
  // A model that is not loaded is loaded for the job, which waits for it in the queue (on a node
  // that runs no model, the job waits for a worker node that serves it).
  const bool load_first =
      options_.runs_models && (entry->state == ModelState::kUnloaded || entry->state == ModelState::kUnloading);
  if (options_.runs_models && entry->state != ModelState::kReady) {
    job.status_message = transition(JobStep::kQueuedForLoad).message;
  }

  ModelQueue* q = nullptr;
  std::optional<Error> replay_when_full;
  bool start_now = false;  // a slot is free and nothing waits: store it claimed
  {
    std::lock_guard lock(mu_);
    q = queues_.at(job.model).get();
    if (q->capacity > 0 && q->queued == 0 && q->ahead.empty() && q->running < q->capacity) {
      start_now = true;
      ++q->running;  // the slot is reserved before the write, as the queue place below
      ++q->starting;
      ++claiming_;
    } else if (q->queued >= q->max_queue) {
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
    auto replayed = replayOf(std::move(*earlier), job);
    if (!replayed) return done(fail(replayed.error()));
    if (!*replayed) return done(fail(std::move(*replay_when_full)));
    if (job.answered_at_end) return done(std::move(**replayed));
    // Answered now, it names the earlier job: flushed first, as a replay through the store is.
    return store_.syncAsync([done = std::move(done), replay = std::move(**replayed)](Result<void> synced) mutable {
      if (!synced) return done(fail(synced.error()));
      done(std::move(replay));
    });
  }
  std::optional<LeaseRequest> start;
  if (start_now) start = LeaseRequest{q->owner, leaseMicros()};
  store_.createAsync(std::move(job), std::move(start),
                     [this, q, start_now, load_first, done = std::move(done)](Result<Job> r) {
                       bool created = r && !r->replayed;
                       if (created) {
                         // Before a worker can see the job, so that "queued" comes before "started".
                         if (options_.metrics) options_.metrics->submitted(*r);
                         // Other nodes wake a worker for the model, unless this node runs it already.
                         events_.publish({r->id, std::string(transition(JobStep::kQueued).event),
                                          owned(*r, {{"model", r->model}, {"claimed", start_now}})});
                         log::debug("job: queued", {{"job_id", r->id}, {"model", r->model}, {"started", start_now}});
                       }
                       {
                         std::lock_guard lock(mu_);
                         if (start_now) {
                           --claiming_;
                           if (created && !joined_) {
                             q->ready.push_back(hold(*q, *r));
                           } else {
                             // Failed, an idempotent retry that found its earlier job, or too late (the workers are
                             // gone; a job stored claimed is requeued at the next start).
                             --q->running;
                             --q->starting;
                           }
                           q->cv.notify_one();  // one idle worker takes it
                           idle_cv_.notify_all();
                         } else if (created) {
                           ++q->generation;
                           q->cv.notify_one();
                         } else {
                           --q->queued;  // failed, or an idempotent retry that found its earlier job
                         }
                       }
                       if (created && load_first && options_.load_on_demand) options_.load_on_demand(q->id);
                       done(std::move(r));
                     });
}

std::int64_t Scheduler::leaseMicros() const {
  return std::chrono::duration_cast<std::chrono::microseconds>(options_.lease).count();
}

Scheduler::Claimed Scheduler::hold(ModelQueue& q, Job job) {
  auto control = std::make_shared<Control>(job.id, hard_stop_, events_, options_.blobs);
  // A cancel may have been requested before the claim (or on another node).
  if (job.cancel_requested) control->requestCancel();
  running_[job.id] = {q.owner, control};
  return {std::move(job), std::move(control)};
}

void Scheduler::release(ModelQueue& q, JobId id) {
  --q.running;
  running_.erase(id);
  idle_cv_.notify_all();
}

std::vector<Scheduler::Claimed> Scheduler::claim(ModelQueue& q, int max, int keep, int* got) {
  {
    // Counted until the jobs are held (or the claim comes back empty), so shutdown never
    // mistakes a job between the store and running_ for an idle worker.
    std::lock_guard lock(mu_);
    ++claiming_;
  }
  auto jobs = store_.claim(q.id, {q.owner, leaseMicros()}, max);
  // While the store cannot write (its readiness says why), every claim fails the same way.
  if (!jobs && !store_.writeProblem()) {
    log::error("scheduler: claim failed", {{"model", q.id}, {"error", jobs.error().message}});
  }
  std::vector<Claimed> out;
  std::lock_guard lock(mu_);
  --claiming_;
  if (got) *got = jobs ? static_cast<int>(jobs->size()) : 0;
  if (jobs) {
    for (auto& job : *jobs) {
      if (q.queued > 0) --q.queued;
      if (running_.contains(job.id)) {
        // Running here already: the database undid its claim (a crash of its server: claims do
        // not wait for the WAL flush) and this node claimed it again, with the same owner and
        // attempt. The run in progress is its run; its end passes the store's fence.
        log::warn("scheduler: claimed a job this node is running (its claim was undone)",
                  {{"job_id", job.id}, {"model", q.id}});
        continue;
      }
      if (static_cast<int>(out.size()) < keep) {
        ++q.running;
        out.push_back(hold(q, std::move(job)));
      } else {
        q.ahead.push_back(hold(q, std::move(job)));  // for the next free worker
      }
    }
    if (!q.ahead.empty()) q.cv.notify_all();
  }
  idle_cv_.notify_all();
  return out;
}

std::vector<Scheduler::Claimed> Scheduler::takeReady(ModelQueue& q, int max, std::chrono::microseconds wait) {
  std::vector<Claimed> out;
  std::unique_lock lock(mu_);
  if (max > 0 && wait > std::chrono::microseconds::zero()) {
    q.cv.wait_for(lock, wait, [&] { return hard_stop_ || !q.ready.empty() || q.starting == 0; });
  }
  while (!hard_stop_ && !q.ready.empty() && static_cast<int>(out.size()) < max) {
    out.push_back(std::move(q.ready.front()));
    q.ready.pop_front();
    --q.starting;
  }
  while (!hard_stop_ && !q.ahead.empty() && static_cast<int>(out.size()) < max) {
    out.push_back(std::move(q.ahead.front()));
    q.ahead.pop_front();
    ++q.running;
  }
  return out;
}

int Scheduler::claimSize(const ModelQueue& q) const {
  double claim_us = q.claim_us.load(std::memory_order_relaxed);
  double run_us = q.run_us.load(std::memory_order_relaxed);
  if (claim_us <= 0 || run_us <= 0) return 1;
  double meanwhile = q.capacity * claim_us / run_us;  // jobs the slots would run during one claim
  return 1 + static_cast<int>(std::min<double>(kMaxClaimAhead, meanwhile));
}

bool Scheduler::drainedLocked(const ModelQueue& q) const {
  return hard_stop_ || ((stopping_ || q.retiring) && q.starting == 0 && q.ahead.empty());
}

bool Scheduler::claimsLocked(const ModelQueue& q) const { return !stopping_ && !q.retiring; }

bool Scheduler::drained(ModelQueue& q) {
  std::lock_guard lock(mu_);
  return drainedLocked(q);
}

void Scheduler::waitForWork(ModelQueue& q, std::uint64_t seen) {
  std::unique_lock lock(mu_);
  q.cv.wait_for(lock, options_.poll_interval,
                [&] { return drainedLocked(q) || q.generation != seen || !q.ready.empty() || !q.ahead.empty(); });
}

void Scheduler::workerLoop(ModelQueue& q, std::shared_ptr<LoadedModel> model, int index) {
  nameThisThread("run:" + q.id);
  confineOpenMpToThisThread();  // OpenMP calls go through the compute budget's thread
  auto session = model->newSession();
  if (!session) {
    log::error("scheduler: worker could not open a session",
               {{"model", q.id}, {"worker", index}, {"error", session.error().message}});
    std::lock_guard lock(mu_);
    --q.capacity;  // one worker fewer takes jobs claimed at submission
    return;
  }
  const ComputeUse use = model->computeUse();
  ClaimGate gate;
  while (true) {
    auto next = takeReady(q, 1);
    std::uint64_t seen;
    bool want_claim;
    int want = 1;
    {
      std::lock_guard lock(mu_);
      seen = q.generation;
      want_claim = next.empty() && claimsLocked(q) && gate.open(seen);
      if (want_claim) want = claimSize(q);
    }
    if (want_claim) {
      auto claimed_at = std::chrono::steady_clock::now();
      int got = 0;
      next = claim(q, want, 1, &got);  // the rest wait in q.ahead for the next free worker
      addSample(q.claim_us, std::chrono::steady_clock::now() - claimed_at);
      if (got < want) gate.sawEmpty(seen, options_.poll_interval);
    }
    if (next.empty()) {
      if (drained(q)) return;
      waitForWork(q, seen);
      continue;
    }
    auto& [job, control] = next.front();
    began(job);
    Result<nlohmann::json> result = fail(Error::internal("not run"));
    if (control->cancelled()) {
      result = fail(Error::internal("cancelled before it started"));  // recorded as CANCELLED
    } else {
      auto started_at = std::chrono::steady_clock::now();
      compute(q, use, [&] {
        try {
          result = (*session)->run(job, *control);
        } catch (const std::exception& e) {
          result = fail(Error::internal(std::format("backend threw: {}", e.what())));
        }
      });
      addSample(q.run_us, std::chrono::steady_clock::now() - started_at);
    }
    finish(q, job, *control, std::move(result));
  }
}

void Scheduler::batchLoop(ModelQueue& q, std::shared_ptr<LoadedModel> model) {
  nameThisThread("batch:" + q.id);
  confineOpenMpToThisThread();  // OpenMP calls go through the compute budget's thread
  auto open = [&]() -> std::unique_ptr<BatchSession> {
    auto session = model->newBatchSession();
    std::lock_guard lock(mu_);
    if (!session) {
      log::error("scheduler: could not open a batch session", {{"model", q.id}, {"error", session.error().message}});
      q.capacity = 0;  // nothing more is claimed at submission for it
      return nullptr;
    }
    q.capacity = (*session)->capacity();
    return std::move(*session);
  };
  auto batch = open();
  if (!batch) return;
  const ComputeUse use = model->computeUse();
  std::map<JobId, Claimed> active;
  auto join = [&](Claimed c) {
    began(c.job);
    if (auto r = batch->add(c.job, *c.control); !r) return finish(q, c.job, *c.control, fail(r.error()));
    JobId id = c.job.id;
    active.emplace(id, std::move(c));
  };
  // Called inside the step, as each job ends: its slot is free and its stream ends while the
  // step goes on.
  auto ended = [&](BatchOutcome o) {
    auto it = active.find(o.id);
    if (it == active.end()) return;
    finish(q, it->second.job, *it->second.control, std::move(o.result));
    active.erase(it);
  };
  ClaimGate gate;
  while (true) {
    // Between steps, new jobs join the running batch: first those claimed at submission (with a
    // short wait for one whose creation is being committed, rather than a whole step), then
    // free slots are filled from the queue.
    auto wait = active.empty() ? std::chrono::microseconds::zero() : options_.join_wait;
    for (auto& c : takeReady(q, batch->capacity() - batch->active(), wait)) join(std::move(c));
    std::uint64_t seen;
    int free;
    bool claims;
    {
      std::lock_guard lock(mu_);
      seen = q.generation;
      free = batch->capacity() - batch->active() - q.starting;  // minus slots promised at submission
      claims = claimsLocked(q);
    }
    if (free > 0 && claims && gate.open(seen)) {
      auto claimed = claim(q, free);
      if (static_cast<int>(claimed.size()) < free) gate.sawEmpty(seen, options_.poll_interval);
      for (auto& c : claimed) join(std::move(c));
    }
    if (active.empty()) {
      if (drained(q)) return;
      waitForWork(q, seen);
      continue;
    }
    if (hard_stop_) {
      // Grace period over: leave the rest PROCESSING; the next start requeues them.
      for (auto& [id, a] : active) finish(q, a.job, *a.control, fail(Error::internal("interrupted")));
      return;
    }
    try {
      compute(q, use, [&] { batch->step(ended); });
      if (options_.metrics) options_.metrics->stepped(q.id, batch->takeStepTimes());
    } catch (const std::exception& e) {
      // A throwing step leaves the session's sequences in an unknown state: fail the batch's
      // jobs and go on with a new session.
      for (auto& [id, a] : active)
        finish(q, a.job, *a.control, fail(Error::internal(std::format("backend threw: {}", e.what()))));
      active.clear();
      batch.reset();
      batch = open();
      if (!batch) return;
    }
  }
}

void Scheduler::began(const Job& job) {
  models_.touch(job.model);
  if (options_.metrics) options_.metrics->started(job);
  events_.publish({job.id, std::string(transition(JobStep::kStarted).event),
                   owned(job, {{"model", job.model}, {"attempt", job.attempts}})});
  log::info("job: started", {{"job_id", job.id}, {"model", job.model}, {"attempt", job.attempts}});
}

void Scheduler::compute(const ModelQueue& q, ComputeUse use, const std::function<void()>& fn) {
  if (options_.compute) return options_.compute->run(q.id, use, fn);
  fn();
}

void Scheduler::finish(ModelQueue& q, const Job& job, Control& control, Result<nlohmann::json> result) {
  if (hard_stop_ && !control.cancelRequested()) {
    log::warn("job: interrupted by shutdown, will be requeued", {{"job_id", job.id}, {"model", job.model}});
    std::lock_guard lock(mu_);
    release(q, job.id);
    return;
  }
  JobOutcome outcome;
  outcome.ended_at = nowMicros();  // before its slot is freed
  if (control.cancelRequested()) {
    outcome.status = JobStatus::kCancelled;
    if (result) outcome.result = std::move(*result);
  } else if (result) {
    if (!control.artifacts().empty() && result->is_object()) {
      nlohmann::json list = nlohmann::json::array();
      for (auto& f : control.artifacts()) {
        list.push_back({{"name", f.name}, {"content_type", f.content_type}, {"bytes", f.bytes}, {"sha256", f.sha256}});
      }
      (*result)["artifacts"] = std::move(list);
    }
    outcome.result = std::move(*result);
    outcome.artifacts = control.artifacts();
  } else {
    if (result.error().message.empty()) result.error().message = "the backend failed without saying why";
    outcome.status = JobStatus::kFailed;
    outcome.error = result.error().message;
    log::warn("job: failed", {{"job_id", job.id}, {"model", job.model}, {"error", outcome.error}});
  }
  models_.touch(job.model);
  {
    // The slot is free before anyone hears of the end: a client that sends its next job on
    // hearing of this one finds it free.
    std::lock_guard lock(mu_);
    --q.running;
    ++writes_;
  }
  // Those who need the outcome but not its commit (an OpenAI stream's last chunks) have it now.
  events_.publish({job.id, "result", {{"status", toString(outcome.status)}}, endedJob(job, outcome)});
  store_.finishAsync(job, q.owner, std::move(outcome), [this, id = job.id](Result<Job> r) {
    {
      std::lock_guard lock(mu_);
      running_.erase(id);
    }
    if (!r && r.error().code == ErrorCode::kConflict) {
      // Our lease expired (this node stalled) and the job was claimed again: the newer run stands.
      log::warn("job: lease lost before its end was recorded; its newer run stands",
                {{"job_id", id}, {"error", r.error().message}});
    } else if (!r) {
      log::error("job: could not record its end", {{"job_id", id}, {"error", r.error().message}});
    } else {
      // ("job: failed" was logged with its error when the worker reported it.)
      if (r->status == JobStatus::kCompleted) log::info("job: completed", {{"job_id", id}, {"model", r->model}});
      if (r->status == JobStatus::kCancelled) log::info("job: cancelled", {{"job_id", id}, {"model", r->model}});
      if (options_.metrics) options_.metrics->finished(*r);
      events_.publish(
          {id, std::string(eventName(r->status)), owned(*r, {{"status", toString(r->status)}}), std::move(*r)});
    }
    std::lock_guard lock(mu_);
    --writes_;
    idle_cv_.notify_all();  // under the lock: shutdown may destroy this object once writes_ is 0
  });
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
    events_.publish({id, std::string(eventName(job.status)), owned(job, {{"status", toString(job.status)}}), job});
    log::info("job: cancelled before it started", {{"job_id", id}, {"model", job.model}});
  } else if (outcome->before == JobStatus::kProcessing) {
    bool here = false;
    {
      std::lock_guard lock(mu_);
      if (auto it = running_.find(id); it != running_.end()) {
        it->second.control->requestCancel();
        here = true;
      }
    }
    // Running on another node: tell it now (its next lease renewal would learn it too).
    if (!here && options_.shared_store) events_.publish({id, std::string(kCancellingEvent)});
  }
  return job;
}

void Scheduler::heardFromAnotherNode(const JobEvent& e) {
  // On the publisher's thread, under the bus's lock: only note it; the lease thread acts.
  if (!e.remote) return;
  bool wake = false;
  {
    std::lock_guard lock(remote_mu_);
    if (e.type == transition(JobStep::kQueued).event && !e.data.value("claimed", false)) {
      wake = remote_wake_.insert(e.data.value("model", "")).second || wake;
    } else if (e.type == kCancellingEvent) {
      remote_cancels_.push_back(e.job_id);
      wake = true;
    }
    if (wake) remote_pending_ = true;
  }
  if (wake) lease_cv_.notify_all();
}

void Scheduler::actOnOtherNodes() {
  std::set<std::string> models;
  std::vector<JobId> cancels;
  {
    std::lock_guard lock(remote_mu_);
    models.swap(remote_wake_);
    cancels.swap(remote_cancels_);
    remote_pending_ = false;
  }
  std::lock_guard lock(mu_);
  for (auto& m : models) {
    // Work queued through another node: an idle worker claims it now.
    if (auto it = queues_.find(m); it != queues_.end()) {
      ++it->second->generation;
      it->second->cv.notify_one();
    }
  }
  for (JobId id : cancels) {
    if (auto it = running_.find(id); it != running_.end()) it->second.control->requestCancel();
  }
}

void Scheduler::leaseLoop() {
  nameThisThread("leases");
  const auto period = std::max(options_.lease / 3, std::chrono::milliseconds(10));
  // With a shared store the admission counters are re-read more often than leases are renewed:
  // other nodes claim (and submit) jobs of the same queues.
  const auto tick = options_.shared_store
                        ? std::min(period, std::max(options_.poll_interval, std::chrono::milliseconds(10)))
                        : period;
  const Micros lease_us = std::chrono::duration_cast<std::chrono::microseconds>(options_.lease).count();
  auto next_renewal = std::chrono::steady_clock::now() + period;
  auto next_tick = std::chrono::steady_clock::now() + tick;
  std::unique_lock lock(mu_);
  while (!joined_) {
    lease_cv_.wait_for(lock, tick, [&] { return joined_ || remote_pending_.load(); });
    if (joined_) break;
    lock.unlock();
    if (remote_pending_) {
      actOnOtherNodes();
      // Woken for that only: the timers below keep their pace.
      if (std::chrono::steady_clock::now() < next_tick) {
        lock.lock();
        continue;
      }
    }
    next_tick = std::chrono::steady_clock::now() + tick;
    lock.lock();
    auto running = running_;
    lock.unlock();
    if (options_.shared_store) resyncQueued();
    if (std::chrono::steady_clock::now() >= next_renewal) {
      next_renewal = std::chrono::steady_clock::now() + period;
      renewLeases(running, lease_us);
    }
    lock.lock();
  }
}

void Scheduler::renewLeases(const std::map<JobId, Held>& running, Micros lease_us) {
  std::vector<std::pair<JobId, std::string>> held;
  for (auto& [id, run] : running) held.emplace_back(id, run.owner);
  if (auto r = store_.renewLeases(held, lease_us); !r) {
    log::error("scheduler: lease renewal failed", {{"jobs", held.size()}, {"error", r.error().message}});
  } else if (!r->cancel_requested.empty()) {
    // Cancelled through another node sharing the store.
    std::lock_guard lock(mu_);
    for (JobId id : r->cancel_requested) {
      if (auto it = running_.find(id); it != running_.end()) it->second.control->requestCancel();
    }
  }
  // Jobs whose worker vanished (another node crashed) go back to the queue.
  if (auto r = store_.requeueAbandoned(nowMicros(), options_.max_attempts); r && !r->requeued.empty()) {
    log::warn("scheduler: requeued jobs with expired leases", {{"jobs", r->requeued}});
  }
}

void Scheduler::resyncQueued() {
  auto counts = store_.queuedByModel();
  if (!counts) return;
  std::lock_guard lock(mu_);
  for (auto& [id, q] : queues_) {
    auto it = counts->find(id);
    std::int64_t n = it == counts->end() ? 0 : it->second;
    if (n > q->queued) {
      // Work queued through another node: idle workers claim it now rather than at their next poll.
      ++q->generation;
      q->cv.notify_all();
    }
    q->queued = n;
  }
}

bool Scheduler::shutdown(std::chrono::milliseconds grace) {
  stopping_ = true;
  if (auto token = remote_token_.exchange(0)) events_.unsubscribe(token);
  std::unique_lock lock(mu_);
  if (joined_) return true;
  for (auto& [id, q] : queues_) q->cv.notify_all();
  bool finished = idle_cv_.wait_for(lock, grace, [&] { return running_.empty() && claiming_ == 0; });
  if (!finished) {
    log::warn("scheduler: grace period over, stopping running jobs", {{"running", running_.size()}});
    hard_stop_ = true;
    for (auto& [id, q] : queues_) q->cv.notify_all();
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
  lock.lock();
  // Store callbacks still to come use this object: wait for them (commits, not jobs: short).
  idle_cv_.wait(lock, [&] { return writes_ == 0 && claiming_ == 0; });
  // Jobs claimed at submission that no worker took stay PROCESSING; the next start requeues them.
  for (auto& [id, q] : queues_) {
    for (auto& c : q->ready) release(*q, c.job.id);
    q->ready.clear();
    q->starting = 0;
    for (auto& c : q->ahead) running_.erase(c.job.id);
    q->ahead.clear();
  }
  return finished;
}

ModelQueueStats Scheduler::stats(const std::string& model_id) const {
  std::lock_guard lock(mu_);
  auto it = queues_.find(model_id);
  if (it == queues_.end()) return {};
  auto& q = *it->second;
  // Jobs claimed ahead count as running: they are PROCESSING here, and start within about a claim.
  return {q.queued, q.running + static_cast<int>(q.ahead.size()), static_cast<int>(q.workers.size()), q.capacity,
          q.max_queue};
}

}  // namespace statim
