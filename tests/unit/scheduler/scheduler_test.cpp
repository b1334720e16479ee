#include "scheduler/scheduler.h"

#include <format>
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <omp.h>
#include <sqlite3.h>

#include "../test_util.h"
#include "backends/echo/echo_backend.h"
#include "store/sqlite/sqlite_store.h"

namespace statim {
namespace {

using namespace std::chrono_literals;

ModelEntry echoEntry(std::string id, int parallel, std::int64_t max_queue) {
  ModelEntry e;
  e.manifest.id = std::move(id);
  e.manifest.backend = "echo";
  e.manifest.type = "completion";
  e.manifest.parallel = parallel;
  e.manifest.max_queue = max_queue;
  e.backend = &echoBackend();
  return e;
}

// The size of the team a parallel region without a thread count of its own gets on this thread,
// as a library opens it (ggml's AMX weight conversion when a model loads).
int defaultOpenMpTeam() {
  // Written by the calling thread itself (the team's primary): TSan does not see libgomp's
  // barriers, and would call another team thread's write to this stack a race.
  int team = 0;
#pragma omp parallel
  {
#pragma omp masked
    team = omp_get_num_threads();
  }
  return team;
}

// The same for a region that names its thread count, as tesseract's LSTM does (4 threads).
int namedOpenMpTeam(int threads) {
  int team = 0;
#pragma omp parallel num_threads(threads)
  {
#pragma omp masked
    team = omp_get_num_threads();
  }
  return team;
}

// A batched backend for the scheduler's batch loop. A job runs params.steps steps (1 by
// default; each step takes 2 ms) and ends with {"text": prompt, "joined": k, "ended": n}: the
// number of steps its session had taken when it joined, and the step it ended in. A job with
// params.throw makes every step it is in throw.
class StepSession final : public BatchSession {
 public:
  explicit StepSession(int capacity) : capacity_(capacity) {}
  int capacity() const override { return capacity_; }
  int active() const override { return static_cast<int>(slots_.size()); }
  Result<void> add(const Job& job, JobControl& control) override {
    slots_.push_back({job.id, job.prompt, job.params.value("steps", 1), steps_, job.params.value("throw", false),
                      &control});
    return ok();
  }
  void step(const EndSink& ended) override {
    ++steps_;
    std::this_thread::sleep_for(2ms);
    if (std::ranges::any_of(slots_, [](const Slot& s) { return s.throws; })) throw std::runtime_error("step broke");
    for (auto it = slots_.begin(); it != slots_.end();) {
      if (--it->left > 0 && !it->control->cancelled()) {
        ++it;
        continue;
      }
      Slot s = *it;
      it = slots_.erase(it);
      ended({s.id, nlohmann::json{{"text", s.text}, {"joined", s.joined}, {"ended", steps_}}});
    }
  }

 private:
  struct Slot {
    JobId id;
    std::string text;
    int left;
    int joined;
    bool throws;
    JobControl* control;
  };
  int capacity_;
  int steps_ = 0;
  std::vector<Slot> slots_;
};

class StepModel final : public LoadedModel {
 public:
  explicit StepModel(int capacity) : capacity_(capacity) {}
  bool batched() const override { return true; }
  Result<std::unique_ptr<BatchSession>> newBatchSession() override {
    ++sessions;
    session_named_team = namedOpenMpTeam(4);
    session_team = defaultOpenMpTeam();  // last: the test waits for it
    return std::unique_ptr<BatchSession>(std::make_unique<StepSession>(capacity_));
  }
  std::atomic<int> sessions = 0;
  std::atomic<int> session_team = 0;  // the OpenMP team a default-sized region got on the batch thread
  std::atomic<int> session_named_team = 0;  // and a region that asks for 4 threads

 private:
  int capacity_;
};

class StepBackend final : public Backend {
 public:
  std::string_view name() const override { return "steps"; }
  std::vector<std::string> jobTypes() const override { return {"completion"}; }
  Result<void> validateParams(std::string_view, const nlohmann::json&) const override { return ok(); }
  Result<std::shared_ptr<LoadedModel>> load(const ModelConfig& config) const override {
    load_team = defaultOpenMpTeam();
    load_named_team = namedOpenMpTeam(4);
    auto model = std::make_shared<StepModel>(config.parallel);
    loaded = model;
    return std::shared_ptr<LoadedModel>(model);
  }
  mutable std::shared_ptr<StepModel> loaded;
  mutable std::atomic<int> load_team = 0;  // the same, on the loader thread
  mutable std::atomic<int> load_named_team = 0;
};

ModelEntry stepEntry(const StepBackend& backend, std::string id, int parallel) {
  ModelEntry e = echoEntry(std::move(id), parallel, 100);
  e.manifest.backend = "steps";
  e.backend = &backend;
  return e;
}

class SchedulerTest : public ::testing::Test {
 protected:
  void start(std::vector<ModelEntry> entries) {
    auto s = SqliteStore::open(dir_.path() / "jobs.db");
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
    registry_ = std::make_unique<ModelRegistry>(std::move(entries));
    scheduler_ =
        std::make_unique<Scheduler>(*store_, *registry_,
                                    SchedulerOptions{.lease = 2000ms, .poll_interval = poll_, .join_wait = join_wait_});
    ASSERT_TRUE(scheduler_->recover(true));
    registry_->loadAll([this](const std::string& id) { scheduler_->startModel(id); });
    registry_->waitLoaded();
    // Loaded models start serving just after (the registry's hook): wait for that too.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    for (auto& id : registry_->ids()) {
      auto e = registry_->find(id);
      if (!e || !e->loaded) continue;
      while (scheduler_->stats(id).capacity == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
      }
      ASSERT_GT(scheduler_->stats(id).capacity, 0) << id;
    }
  }
  void TearDown() override {
    if (scheduler_) scheduler_->shutdown(10s);
    if (registry_) registry_->stopLoading();  // before the scheduler its hook calls goes away
  }

  Result<Job> submit(std::string model, std::string prompt, nlohmann::json params = nlohmann::json::object(),
                     int priority = 0) {
    std::promise<Result<Job>> p;
    scheduler_->submit(
        {.model = std::move(model), .prompt = std::move(prompt), .params = std::move(params), .priority = priority},
        [&](Result<Job> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  Job waitFor(JobId id, JobStatus status, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto j = store_->get(id);
      EXPECT_TRUE(j);
      if (j && j->status == status) return *j;
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "job " << id << " did not reach " << toString(status) << " (is "
                      << (j ? toString(j->status) : "?") << ")";
        return j ? *j : Job{};
      }
      std::this_thread::sleep_for(5ms);
    }
  }

  // Waits until the scheduler itself counts the job as running (its admission counter has
  // released the job's queue slot), which can be a moment after the store shows PROCESSING.
  void waitRunning(const std::string& model, int n) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (scheduler_->stats(model).running != n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(2ms);
    }
    ASSERT_EQ(scheduler_->stats(model).running, n);
  }

  std::chrono::milliseconds poll_ = 200ms;  // idle workers re-check the store this often
  std::chrono::microseconds join_wait_ = 2ms;
  testing::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, RunsASubmittedJobToCompletion) {
  start({echoEntry("echo", 1, 10)});
  auto job = submit("echo", "A cat in space");
  ASSERT_TRUE(job) << job.error().message;
  // The worker is free: the job is stored already claimed, and answered as PROCESSING.
  EXPECT_EQ(job->status, JobStatus::kProcessing);
  EXPECT_EQ(job->attempts, 1);
  EXPECT_EQ(job->started_at, job->created_at);
  EXPECT_EQ(job->type, "completion");
  auto done = waitFor(job->id, JobStatus::kCompleted);
  EXPECT_EQ(done.result["text"], "A cat in space");
  EXPECT_EQ(done.attempts, 1);
  EXPECT_EQ(done.started_at, job->created_at);
}

// A job submitted to a free worker costs two commits: its creation (claimed in the same write)
// and its end. Claiming it separately would make three, plus an empty claim after each job.
TEST_F(SchedulerTest, AJobOnAFreeSlotCostsTwoCommits) {
  poll_ = 60s;  // no polling claims during the test
  start({echoEntry("echo", 1, 10)});
  constexpr int kJobs = 10;
  auto before = store_->commitCount();
  for (int i = 0; i < kJobs; ++i) {
    auto job = submit("echo", std::format("job {}", i));
    ASSERT_TRUE(job) << job.error().message;
    EXPECT_EQ(job->status, JobStatus::kProcessing) << i;
    EXPECT_EQ(waitFor(job->id, JobStatus::kCompleted).result["text"], std::format("job {}", i));
    waitRunning("echo", 0);  // the slot is free again once the end is committed
  }
  auto commits = store_->commitCount() - before;
  // The worker's one claim at start-up may land in the window too.
  EXPECT_GE(commits, 2 * kJobs);
  EXPECT_LE(commits, 2 * kJobs + 1);
}

// A busy model queues the job, and a later job does not overtake one that is queued.
TEST_F(SchedulerTest, ABusyModelQueuesAndTheQueueKeepsItsOrder) {
  start({echoEntry("echo", 1, 10)});
  auto blocker = submit("echo", "block", {{"delay_ms", 300}});
  ASSERT_EQ(blocker->status, JobStatus::kProcessing);
  auto first = submit("echo", "first");
  ASSERT_EQ(first->status, JobStatus::kQueued);
  auto done = waitFor(blocker->id, JobStatus::kCompleted);
  auto second = submit("echo", "second");  // perhaps while "first" still waits: it must not start first
  auto a = waitFor(first->id, JobStatus::kCompleted);
  auto b = waitFor(second->id, JobStatus::kCompleted);
  EXPECT_LE(*done.finished_at, *a.started_at);
  EXPECT_LE(*a.finished_at, *b.started_at);
}

// Jobs that run faster than a claim's round trip are claimed several at once (they share their
// started_at, the claim's time), still best first; slow ones one at a time, when a slot is free.
TEST_F(SchedulerTest, ShortJobsAreClaimedSeveralAtOnceAndSlowOnesOneByOne) {
  poll_ = 60s;
  start({echoEntry("echo", 1, 1000)});
  auto startedAt = [&](const std::vector<JobId>& ids) {
    std::vector<Micros> at;
    for (JobId id : ids) {
      auto j = waitFor(id, JobStatus::kCompleted, 30s);
      EXPECT_EQ(j.result["text"], j.prompt);
      EXPECT_EQ(j.attempts, 1);
      at.push_back(j.started_at.value_or(0));
    }
    return at;
  };
  auto distinct = [](std::vector<Micros> v) {
    std::ranges::sort(v);
    return std::ranges::distance(v.begin(), std::ranges::unique(v).begin());
  };

  auto blocker = submit("echo", "block", {{"delay_ms", 300}});
  ASSERT_EQ(blocker->status, JobStatus::kProcessing);
  std::vector<JobId> quick;
  for (int i = 0; i < 300; ++i) {
    auto j = submit("echo", std::format("quick {}", i));
    ASSERT_TRUE(j) << j.error().message;
    ASSERT_EQ(j->status, JobStatus::kQueued);
    quick.push_back(j->id);
  }
  auto quick_at = startedAt(quick);
  EXPECT_TRUE(std::ranges::is_sorted(quick_at)) << "claimed oldest first";
  // One claim per job until the worker has seen that they run in less than a claim (the
  // blocker's 300 ms fade from the average within a few dozen jobs), then up to 33 per claim.
  EXPECT_LT(distinct(quick_at), 150);

  blocker = submit("echo", "block", {{"delay_ms", 300}});
  ASSERT_EQ(blocker->status, JobStatus::kProcessing);
  std::vector<JobId> slow;
  for (int i = 0; i < 6; ++i) slow.push_back(submit("echo", std::format("slow {}", i), {{"delay_ms", 50}})->id);
  auto slow_at = startedAt(slow);
  EXPECT_EQ(distinct(slow_at), 6) << "each claimed when the slot is free";
  EXPECT_TRUE(std::ranges::is_sorted(slow_at));
  EXPECT_EQ(scheduler_->stats("echo").queued, 0);
}

TEST_F(SchedulerTest, UnknownModelListsTheAvailableOnes) {
  start({echoEntry("a", 1, 10), echoEntry("b", 1, 10)});
  auto r = submit("c", "x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kModelNotFound);
  EXPECT_EQ(r.error().message, "unknown model 'c'; available models: a, b");
}

TEST_F(SchedulerTest, InvalidParamsAreRejectedBeforeStoring) {
  start({echoEntry("echo", 1, 10)});
  auto r = submit("echo", "x", {{"delay_ms", "soon"}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message, "'params.delay_ms' must be an integer");
  r = submit("echo", "x", {{"colour", 1}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "unknown field 'params.colour' (allowed: delay_ms, fail)");
  EXPECT_EQ(store_->list({})->total, 0);
}

TEST_F(SchedulerTest, FailedModelIsUnavailable) {
  auto broken = echoEntry("broken", 1, 10);
  broken.state = ModelState::kFailed;
  broken.reason = "model file not found: /x.gguf";
  start({std::move(broken)});
  auto r = submit("broken", "x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kModelUnavailable);
  EXPECT_EQ(r.error().message, "model 'broken' failed to load: model file not found: /x.gguf");
}

TEST_F(SchedulerTest, BoundedQueueRejectsWhenFullAndRecovers) {
  start({echoEntry("echo", 1, 2)});
  auto blocker = submit("echo", "block", {{"delay_ms", 400}});
  ASSERT_TRUE(blocker);
  waitRunning("echo", 1);
  auto q1 = submit("echo", "q1");
  ASSERT_TRUE(q1);
  ASSERT_TRUE(submit("echo", "q2"));
  auto full = submit("echo", "q3");
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, ErrorCode::kQueueFull);
  EXPECT_EQ(full.error().message, "model 'echo' has 2 queued jobs (max_queue 2); retry later");
  // Room opens once the worker has claimed a queued job, not when the blocker finishes.
  waitFor(q1->id, JobStatus::kCompleted);
  auto later = submit("echo", "q4");
  ASSERT_TRUE(later) << later.error().message;
  waitFor(later->id, JobStatus::kCompleted);
}

TEST_F(SchedulerTest, HigherPriorityRunsFirstThenFifo) {
  start({echoEntry("echo", 1, 100)});
  auto blocker = submit("echo", "block", {{"delay_ms", 300}});
  waitFor(blocker->id, JobStatus::kProcessing);
  std::vector<JobId> ids;
  for (auto [name, prio] : {std::pair{"low-a", 0}, {"high-a", 5}, {"low-b", 0}, {"high-b", 5}, {"urgent", 9}}) {
    ids.push_back(submit("echo", name, nlohmann::json::object(), prio)->id);
  }
  std::vector<std::pair<Micros, std::string>> started;
  for (auto id : ids) {
    auto j = waitFor(id, JobStatus::kCompleted);
    started.emplace_back(*j.started_at, j.prompt);
  }
  std::ranges::sort(started);
  std::vector<std::string> order;
  for (auto& [t, p] : started) order.push_back(p);
  EXPECT_EQ(order, (std::vector<std::string>{"urgent", "high-a", "high-b", "low-a", "low-b"}));
}

TEST_F(SchedulerTest, AFailingJobDoesNotStopTheWorker) {
  start({echoEntry("echo", 1, 10)});
  auto bad = submit("echo", "x", {{"fail", "boom"}});
  auto good = submit("echo", "after");
  EXPECT_EQ(waitFor(bad->id, JobStatus::kFailed).error, "boom");
  EXPECT_EQ(waitFor(good->id, JobStatus::kCompleted).result["text"], "after");
}

TEST_F(SchedulerTest, ShutdownLetsRunningJobsFinishAndLeavesQueuedOnes) {
  start({echoEntry("echo", 1, 10)});
  auto running = submit("echo", "running", {{"delay_ms", 300}});
  waitFor(running->id, JobStatus::kProcessing);
  auto queued = submit("echo", "queued");
  EXPECT_TRUE(scheduler_->shutdown(10s));
  EXPECT_EQ(store_->get(running->id)->status, JobStatus::kCompleted);
  EXPECT_EQ(store_->get(queued->id)->status, JobStatus::kQueued);
  auto refused = submit("echo", "late");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kShuttingDown);
}

TEST_F(SchedulerTest, ShutdownGraceOverLeavesTheJobForRequeue) {
  start({echoEntry("echo", 1, 10)});
  auto slow = submit("echo", "slow", {{"delay_ms", 60000}});
  waitFor(slow->id, JobStatus::kProcessing);
  EXPECT_FALSE(scheduler_->shutdown(100ms));
  auto j = store_->get(slow->id);
  EXPECT_EQ(j->status, JobStatus::kProcessing);
  // The next start requeues it.
  scheduler_.reset();
  registry_ = std::make_unique<ModelRegistry>(std::vector<ModelEntry>{echoEntry("echo", 1, 10)});
  Scheduler next(*store_, *registry_, {});
  auto report = next.recover(true);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->requeued, std::vector<JobId>{slow->id});
  EXPECT_EQ(next.stats("echo").queued, 1);
}

// Load for the sanitizers: many submitters, two models, several workers each.
TEST_F(SchedulerTest, ManyConcurrentSubmissionsAllComplete) {
  start({echoEntry("a", 3, 100000), echoEntry("b", 2, 100000)});
  constexpr int kThreads = 8, kPerThread = 60;
  std::mutex mu;
  std::vector<JobId> ids;
  std::atomic<int> callbacks{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        scheduler_->submit({.model = (i % 2) ? "a" : "b", .prompt = std::format("{}-{}", t, i)}, [&](Result<Job> r) {
          EXPECT_TRUE(r) << r.error().message;
          std::lock_guard l(mu);
          if (r) ids.push_back(r->id);
          ++callbacks;
        });
      }
    });
  }
  for (auto& th : threads) th.join();
  while (callbacks < kThreads * kPerThread) std::this_thread::sleep_for(1ms);
  for (auto id : ids) {
    auto j = waitFor(id, JobStatus::kCompleted, 30s);
    EXPECT_EQ(j.result["text"], j.prompt);
  }
  // A worker leaves the running count just after the completion's commit: allow it that moment.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((scheduler_->stats("a").running > 0 || scheduler_->stats("b").running > 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(scheduler_->stats("a").queued, 0);
  EXPECT_EQ(scheduler_->stats("b").queued, 0);
  EXPECT_EQ(scheduler_->stats("a").running, 0);
  EXPECT_EQ(scheduler_->stats("b").running, 0);
}

TEST_F(SchedulerTest, CancelQueuedAndRunningJobs) {
  start({echoEntry("echo", 1, 10)});
  auto running = submit("echo", "running", {{"delay_ms", 60000}});
  waitRunning("echo", 1);
  auto queued = submit("echo", "queued");
  std::vector<std::string> events;
  std::mutex mu;
  scheduler_->events().subscribe(running->id, [&](const JobEvent& e) {
    // ("started" may come before or after this subscription: the slot is counted at submission.)
    if (e.type == "started") return true;
    std::lock_guard l(mu);
    events.push_back(e.type);
    return true;
  });
  auto c = scheduler_->cancel(queued->id);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->status, JobStatus::kCancelled);
  EXPECT_EQ(scheduler_->stats("echo").queued, 0);  // its queue slot is free again
  c = scheduler_->cancel(running->id);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->status_message, "cancelling");
  auto done = waitFor(running->id, JobStatus::kCancelled);
  EXPECT_EQ(done.status_message, "cancelled while running");
  // The worker is free for the next job.
  auto next = submit("echo", "next");
  EXPECT_EQ(waitFor(next->id, JobStatus::kCompleted).result["text"], "next");
  std::lock_guard l(mu);
  // The outcome first (the slot is free), then the end once it is stored.
  EXPECT_EQ(events, (std::vector<std::string>{"result", "cancelled"}));
  auto unknown = scheduler_->cancel(4242);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

// A library's parallel region, opened while a model loads (as ggml converts weights for AMX) or on
// a model's own thread (tesseract's LSTM, 4 threads), runs on that thread alone, whether or not it
// names a thread count: a team there would give the process a second OpenMP pool, which throttles
// the compute thread's for good (an LLM at a quarter of its speed on an AMX Xeon).
TEST_F(SchedulerTest, ModelThreadsGetNoOpenMpTeamOfTheirOwn) {
  if (omp_get_max_threads() < 2) GTEST_SKIP() << "one CPU: every default team has one thread anyway";
  StepBackend backend;
  start({stepEntry(backend, "steps", 4)});
  EXPECT_EQ(backend.load_team.load(), 1) << "the loader thread opened an OpenMP team";
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (backend.loaded->session_team == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(backend.loaded->session_team.load(), 1) << "the batch thread opened an OpenMP team";
  // Regions that name their thread count (tesseract's) get no team there either.
  EXPECT_EQ(backend.load_named_team.load(), 1) << "the loader thread opened a 4-thread OpenMP team";
  EXPECT_EQ(backend.loaded->session_named_team.load(), 1) << "the batch thread opened a 4-thread OpenMP team";
  EXPECT_GE(defaultOpenMpTeam(), 2) << "this test thread keeps the default";
  if (omp_get_thread_limit() >= 4 && !omp_get_dynamic()) {  // (OMP_THREAD_LIMIT, OMP_DYNAMIC unset)
    EXPECT_EQ(namedOpenMpTeam(4), 4) << "this test thread keeps its teams";
  }
}

// A claim the database undoes (PostgreSQL's claims do not wait for the WAL flush, so a crash of
// its server can) leaves the job queued with its attempt count as before; when the node that is
// still running it claims it again (same owner, same attempt), it does not start a second run:
// the run in progress ends the job, once.
TEST_F(SchedulerTest, AJobClaimedAgainWhileItRunsHereIsNotRunTwice) {
  poll_ = 20ms;  // the idle worker looks at the queue soon after the claim is undone
  start({echoEntry("echo", 2, 10)});
  auto job = submit("echo", "once", {{"delay_ms", 600}});
  ASSERT_TRUE(job) << job.error().message;
  waitRunning("echo", 1);
  {
    // What the database server's crash recovery leaves: the claim is gone.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_.path() / "jobs.db").c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    auto sql = std::format(
        "UPDATE jobs SET status = 'QUEUED', status_message = 'queued', attempts = attempts - 1, started_at = NULL,"
        " lease_owner = '', lease_expires_at = NULL WHERE id = {}",
        job->id);
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }
  auto again = waitFor(job->id, JobStatus::kProcessing);  // the other worker claimed it again
  EXPECT_EQ(again.attempts, 1);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(scheduler_->stats("echo").running, 1) << "a second run of the same job started";
  auto done = waitFor(job->id, JobStatus::kCompleted);
  EXPECT_EQ(done.result["text"], "once");
  EXPECT_EQ(done.attempts, 1);
  waitRunning("echo", 0);
}

// A job of a batch ends inside the step: its "result" (the final job) is published before its end
// is stored, with its slot already free; the terminal event follows the commit. A job submitted
// on hearing of that end (as a streaming client sends its next request) joins the very next step,
// the batch waiting for its creation's commit; a batch with nothing on its way never waits.
TEST_F(SchedulerTest, ABatchJobsEndIsHeardInsideTheStepAndTheNextJobJoinsTheNextStep) {
  join_wait_ = 20s;  // long enough to be deterministic; no wait at all is expected otherwise
  StepBackend backend;
  start({stepEntry(backend, "b", 2)});
  auto longer = submit("b", "longer", {{"steps", 1000000}});
  ASSERT_TRUE(longer) << longer.error().message;
  auto job = submit("b", "first", {{"steps", 25}});
  ASSERT_TRUE(job) << job.error().message;
  struct Seen {
    std::string type;
    std::optional<JobStatus> stored;  // the store's status at the "result" event
    int running = -1;
    std::optional<Job> job;
  };
  std::mutex mu;
  std::vector<Seen> seen;
  std::promise<Result<Job>> next;
  scheduler_->events().subscribe(job->id, [&](const JobEvent& e) {
    if (e.type != "result" && !e.terminal()) return true;
    std::lock_guard l(mu);
    Seen s{e.type};
    s.job = e.job;
    if (e.type == "result") {
      if (auto j = store_->get(e.job_id)) s.stored = j->status;
      s.running = scheduler_->stats("b").running;
      scheduler_->submit({.model = "b", .prompt = "next", .params = {{"steps", 3}}},
                         [&](Result<Job> r) { next.set_value(std::move(r)); });
    }
    seen.push_back(std::move(s));
    return true;
  });
  auto done = waitFor(job->id, JobStatus::kCompleted);
  auto second = next.get_future().get();
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->status, JobStatus::kProcessing);  // the freed slot was its at once
  auto after = waitFor(second->id, JobStatus::kCompleted);
  EXPECT_EQ(after.result["joined"], done.result["ended"]);  // no step went by before it joined
  EXPECT_EQ(after.result["ended"].get<int>(), done.result["ended"].get<int>() + 3);
  ASSERT_TRUE(scheduler_->cancel(longer->id));
  EXPECT_EQ(waitFor(longer->id, JobStatus::kCancelled).status_message, "cancelled while running");

  std::lock_guard l(mu);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].type, "result");
  EXPECT_EQ(seen[0].stored, JobStatus::kProcessing);  // heard before it is stored
  EXPECT_EQ(seen[0].running, 1);                      // its slot already free: only "longer" holds one
  ASSERT_TRUE(seen[0].job);
  EXPECT_EQ(seen[0].job->status, JobStatus::kCompleted);
  EXPECT_EQ(seen[0].job->result["text"], "first");
  EXPECT_EQ(seen[1].type, "completed");
  ASSERT_TRUE(seen[1].job);
  EXPECT_EQ(seen[1].job->result, seen[0].job->result);
  EXPECT_GT(seen[1].job->finished_at, 0);
}

// A step that throws fails the jobs in it, and the batch goes on with a new session.
TEST_F(SchedulerTest, ABatchStepThatThrowsFailsItsJobsAndTheBatchGoesOn) {
  StepBackend backend;
  start({stepEntry(backend, "b", 2)});
  auto broken = submit("b", "broken", {{"throw", true}});
  ASSERT_TRUE(broken) << broken.error().message;
  EXPECT_EQ(waitFor(broken->id, JobStatus::kFailed).error, "backend threw: step broke");
  auto fine = submit("b", "fine", {{"steps", 2}});
  ASSERT_TRUE(fine) << fine.error().message;
  EXPECT_EQ(waitFor(fine->id, JobStatus::kCompleted).result["text"], "fine");
  EXPECT_EQ(backend.loaded->sessions, 2);
}

}  // namespace
}  // namespace statim
