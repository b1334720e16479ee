// The scheduler: admission (bounded per-model queues), worker threads per model, leases and
// graceful shutdown. All threads and locks of the job engine live here and in the store.
//
// The queue itself is the store (JobStore::claim picks the highest priority, then oldest, QUEUED
// jobs), so queued work survives restarts and, with a shared store, is shared between nodes. The
// scheduler keeps only counters for admission and wakes its workers on submission.
//
// Commits stay off the workers' critical path: a job submitted while its model has a free slot
// and nothing queued is stored already claimed (one commit, no claim of its own) and handed to
// the next free worker; a job's end is committed on the store's writer while its worker goes on,
// and observers hear of the end (the terminal event) from that commit's callback. A model whose
// jobs take less time than a claim's round trip claims several queued jobs at once (claimSize).
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "events/event_bus.h"
#include "events/in_process/in_process_bus.h"
#include "models/model_registry.h"
#include "scheduler/compute_budget.h"
#include "scheduler/job_metrics.h"
#include "statim/error.h"
#include "statim/job.h"
#include "store/blob_store.h"
#include "store/job_store.h"

namespace statim {

struct SchedulerOptions {
  std::chrono::milliseconds lease{60000};         // a running job's lease, renewed every lease/3
  int max_attempts = 3;                           // starts before an interrupted job is FAILED
  std::chrono::milliseconds poll_interval{1000};  // idle workers re-check the store this often
  // A running batch waits this long at most, between steps, for a job claimed at submission whose
  // creation is still being committed (about one commit), so that it joins the next step rather
  // than the one after. Never waits when no such job is on its way.
  std::chrono::microseconds join_wait{2000};
  std::string node_id;                            // lease owner prefix; generated when empty
  // The store is shared with other nodes: they claim jobs too, so the admission counters are
  // re-read from the store every lease period, and idle workers poll it (poll_interval).
  bool shared_store = false;
  // False on an API node (node.role = api): it admits and stores jobs; worker nodes run them.
  bool runs_models = true;
  // Set (jobs.reject_unserved): whether some live node serves a model; a job for one that none
  // serves is refused with kModelUnavailable instead of waiting.
  std::function<bool(const std::string& model)> served;
  JobMetrics* metrics = nullptr;                  // optional; outlives the scheduler
  EventBus* events = nullptr;                     // where job events go; outlives the scheduler. Null: its own
  BlobStore* blobs = nullptr;                     // where backends' artifacts go; outlives the scheduler
  // Every Session::run and BatchSession::step runs inside it; outlives the scheduler. Null: calls
  // run directly on their worker (unit tests of the scheduler alone), where OpenMP regions get no
  // team (core/openmp.h): a ggml graph would run on one thread. `statim serve` always has one.
  ComputeBudget* compute = nullptr;
  // Called (on a store thread) when a job was queued for a model that is not loaded, so that it is
  // loaded on demand. Unset: such jobs wait until the model is loaded by other means.
  std::function<void(const std::string& model)> load_on_demand;
};

// A node id unique across restarts and machines: host name, pid and a random suffix.
std::string makeNodeId();

struct ModelQueueStats {
  std::int64_t queued = 0;
  int running = 0;
  int workers = 0;
  int capacity = 0;  // jobs it runs at once; 0 until it serves (its workers or batch session started)
  std::int64_t max_queue = 0;
};

class Scheduler {
 public:
  Scheduler(JobStore& store, ModelRegistry& models, SchedulerOptions options);
  ~Scheduler();  // shutdown(0) if not yet stopped

  // At start-up, before serving: requeues (or fails, after max_attempts) jobs left PROCESSING by
  // a previous run. `all_processing` treats every PROCESSING job as abandoned (one node owning
  // the store); otherwise only those whose lease expired. Then seeds the admission counters.
  Result<RequeueReport> recover(bool all_processing);

  // Starts the workers of a model once it is ready (ModelRegistry's on_ready hook).
  void startModel(const std::string& model_id);
  // Stops a model's workers so that its weights can be dropped: nothing more is claimed for it,
  // running jobs end (with `force`, they are cancelled and end CANCELLED with their partial
  // result), then its workers are joined. Queued jobs stay queued. Blocks; returns the number of
  // jobs that were running when it was called.
  int stopModel(const std::string& model_id, bool force);
  // The first half of stopModel, without waiting: from now on the model claims nothing (and with
  // `force` its running jobs are cancelled). Returns the number of running jobs. Idempotent.
  int retireModel(const std::string& model_id, bool force);
  // Fails every queued job of a model (its load failed, its manifest was removed) with `message`.
  void failQueued(const std::string& model_id, const std::string& message);
  // Makes room for a model added after start (a new manifest), or takes a changed max_queue.
  void addModel(const std::string& model_id, std::int64_t max_queue);

  using SubmitCallback = std::function<void(Result<Job>)>;
  // Admits and durably stores a job, then wakes a worker. `done` is called exactly once: inline
  // for admission errors, else on a store thread after the commit. Never blocks on I/O.
  // Errors: kShuttingDown, kModelNotFound, kModelUnavailable, kInvalidArgument (params),
  // kQueueFull, kStorage.
  void submit(NewJob job, SubmitCallback done);

  // Stops admitting and claiming; waits up to `grace` for running jobs to finish; then asks the
  // rest to stop (they stay PROCESSING and are requeued at the next start). Returns true when
  // every running job finished within the grace period. Idempotent.
  bool shutdown(std::chrono::milliseconds grace);

  // Cancels a job: a QUEUED one becomes CANCELLED at once; a PROCESSING one is asked to stop
  // (within one step; it then ends CANCELLED with its partial result); a finished one is
  // returned as it is. Errors: kNotFound.
  Result<Job> cancel(JobId id);

  // Live events of jobs (see events/event_bus.h).
  EventBus& events() { return events_; }

  ModelQueueStats stats(const std::string& model_id) const;
  // The compute budget's figures; none when the scheduler runs without one.
  std::optional<ComputeStats> computeStats() const {
    if (!options_.compute) return std::nullopt;
    return options_.compute->stats();
  }
  bool stopping() const { return stopping_.load(); }

 private:
  struct ModelQueue;
  class Control;
  // A job this node holds the lease of: claimed, maybe not started yet, maybe ending.
  struct Held {
    std::string owner;
    std::shared_ptr<Control> control;
  };
  // A claimed job on its way to a worker.
  struct Claimed {
    Job job;
    std::shared_ptr<Control> control;
  };
  void workerLoop(ModelQueue& q, std::shared_ptr<LoadedModel> model, int index);
  void batchLoop(ModelQueue& q, std::shared_ptr<LoadedModel> model);
  // Claims up to `max` queued jobs of q from the store (a commit; store errors are logged) and
  // returns the first `keep`; the rest go to q.ahead, in the same hold of mu_. `got`: how many
  // the store gave.
  std::vector<Claimed> claim(ModelQueue& q, int max, int keep = std::numeric_limits<int>::max(), int* got = nullptr);
  // How many jobs a free worker of q claims at once (mu_ held): one, and for a model whose jobs
  // run much faster than a claim's round trip, as many more as its slots would run during one
  // claim (at most kMaxClaimAhead), so that its slots do not spend more time waiting on the store
  // than running jobs. Those wait PROCESSING on this node, about one claim's time, for a worker.
  int claimSize(const ModelQueue& q) const;
  // Takes up to `max` of the jobs claimed for q at submission, then of those claimed ahead by a
  // worker (none after a hard stop). With a `wait`, when none is ready but one is being
  // committed, waits up to that long for it (options_.join_wait).
  std::vector<Claimed> takeReady(ModelQueue& q, int max,
                                 std::chrono::microseconds wait = std::chrono::microseconds::zero());
  // Registers a claimed job as held (mu_ held).
  Claimed hold(ModelQueue& q, Job job);
  // Waits until there is work for q (a queued submission, a job claimed at submission), the poll
  // interval passes, or the loop should end.
  void waitForWork(ModelQueue& q, std::uint64_t seen);
  // True when q's loops may end: stopping and no job claimed at submission is still on its way
  // (or the grace period is over). drainedLocked: the same with mu_ held.
  bool drained(ModelQueue& q);
  bool drainedLocked(const ModelQueue& q) const;
  // True when q's workers may claim from the store (mu_ held).
  bool claimsLocked(const ModelQueue& q) const;
  void began(const Job& job);
  // Runs one inference call of q's model inside the compute budget (options_.compute).
  void compute(const ModelQueue& q, ComputeUse use, const std::function<void()>& fn);
  // Records how a job ended (complete, fail, cancel, or leave it for requeue after a hard stop),
  // asynchronously: frees its slot and publishes its "result" at once, and the terminal event
  // once the store has committed the end; the worker goes on meanwhile.
  void finish(ModelQueue& q, const Job& job, Control& control, Result<nlohmann::json> result);
  // Frees a held job's slot and forgets it (mu_ held).
  void release(ModelQueue& q, JobId id);
  std::int64_t leaseMicros() const;
  void leaseLoop();
  // Renews the leases of `running` (learning of cancels made on other nodes) and requeues jobs
  // whose lease expired.
  void renewLeases(const std::map<JobId, Held>& running, Micros lease_us);
  // Re-reads the admission counters from a shared store.
  void resyncQueued();
  // A shared store: events from other nodes that concern this one (work queued for a model, a
  // cancel of a job running here), noted by the bus listener and acted on by the lease thread.
  void heardFromAnotherNode(const JobEvent& e);
  void actOnOtherNodes();

  JobStore& store_;
  ModelRegistry& models_;
  SchedulerOptions options_;
  InProcessEventBus own_events_;  // when options.events is null
  EventBus& events_;

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<ModelQueue>> queues_;  // guarded by mu_ (map shape fixed at construction)
  std::map<JobId, Held> running_;                              // guarded by mu_
  int claiming_ = 0;  // claims in flight (at submission or by a worker), not yet in running_; guarded by mu_
  int writes_ = 0;    // ends of jobs being committed (their callbacks use this); guarded by mu_
  std::condition_variable idle_cv_;                            // signalled when a job finishes
  std::atomic<bool> stopping_{false};
  std::atomic<bool> hard_stop_{false};  // grace period over: running jobs should stop now
  bool joined_ = false;                 // guarded by mu_

  std::condition_variable lease_cv_;
  std::thread lease_thread_;

  std::mutex remote_mu_;               // taken under the bus's lock; never with mu_
  std::set<std::string> remote_wake_;  // guarded by remote_mu_: models with work from other nodes
  std::vector<JobId> remote_cancels_;  // guarded by remote_mu_: cancels made on other nodes
  std::atomic<bool> remote_pending_{false};
  std::atomic<EventBus::Token> remote_token_{0};  // the subscription (shared store only)
};

}  // namespace statim
