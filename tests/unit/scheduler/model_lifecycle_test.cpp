// The model lifecycle under load: loads, unloads, on-demand loads and keep_alive racing with
// submissions from several threads (run under TSan by `make test-tsan`).
#include "scheduler/model_lifecycle.h"

#include <atomic>
#include <chrono>
#include <format>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "../test_util.h"
#include "backends/echo/echo_backend.h"
#include "store/sqlite/sqlite_store.h"

namespace statim {
namespace {

using namespace std::chrono_literals;

ModelEntry echoEntry(std::string id, bool preload = true, double keep_alive = -1) {
  ModelEntry e;
  e.manifest.id = std::move(id);
  e.manifest.backend = "echo";
  e.manifest.type = "completion";
  e.manifest.parallel = 2;
  e.manifest.max_queue = 10000;
  e.manifest.preload = preload;
  e.manifest.keep_alive = keep_alive;
  e.backend = &echoBackend();
  return e;
}

class ModelLifecycleTest : public ::testing::Test {
 protected:
  void start(std::vector<ModelEntry> entries) {
    auto s = SqliteStore::open(dir_.path() / "jobs.db");
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
    registry_ = std::make_unique<ModelRegistry>(std::move(entries));
    SchedulerOptions options{.lease = 5000ms, .poll_interval = 50ms};
    options.load_on_demand = [this](const std::string& id) { (void)registry_->requestLoad(id); };
    scheduler_ = std::make_unique<Scheduler>(*store_, *registry_, options);
    ASSERT_TRUE(scheduler_->recover(true));
    lifecycle_ = std::make_unique<ModelLifecycle>(*registry_, *scheduler_, LifecycleOptions{.sweep_interval = 20ms});
    lifecycle_->start();
    registry_->waitLoaded();
  }
  void TearDown() override {
    if (lifecycle_) lifecycle_->stop();
    if (scheduler_) scheduler_->shutdown(10s);
  }
  Result<Job> submit(const std::string& model, const std::string& prompt, nlohmann::json params = {}) {
    std::promise<Result<Job>> p;
    scheduler_->submit(
        {.model = model, .prompt = prompt, .params = params.is_null() ? nlohmann::json::object() : params},
        [&](Result<Job> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  Job waitEnded(JobId id) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (true) {
      auto j = store_->get(id);
      EXPECT_TRUE(j);
      if (!j || isTerminal(j->status) || std::chrono::steady_clock::now() > deadline) return j ? *j : Job{};
      std::this_thread::sleep_for(2ms);
    }
  }
  ModelState state(const std::string& id) { return registry_->find(id)->state; }
  void waitState(const std::string& id, ModelState want) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (state(id) != want && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
    ASSERT_EQ(toString(state(id)), toString(want)) << id;
  }

  testing::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ModelLifecycle> lifecycle_;
};

TEST_F(ModelLifecycleTest, EveryJobCompletesWhileTheModelIsUnloadedAndLoadedOverAndOver) {
  start({echoEntry("m"), echoEntry("lazy", false)});
  EXPECT_EQ(state("m"), ModelState::kReady);
  EXPECT_EQ(state("lazy"), ModelState::kUnloaded);
  std::atomic<bool> stop{false};
  std::vector<JobId> ids;
  std::mutex ids_mu;
  std::vector<std::thread> clients;
  for (int c = 0; c < 3; ++c) {
    clients.emplace_back([&, c] {
      for (int k = 0; !stop; ++k) {
        auto j = submit(k % 2 ? "m" : "lazy", std::format("c{} k{}", c, k), {{"delay_ms", k % 3}});
        ASSERT_TRUE(j) << j.error().message;
        std::lock_guard lock(ids_mu);
        ids.push_back(j->id);
      }
    });
  }
  // Meanwhile: unload and load both models again and again, forced or not.
  for (int round = 0; round < 20; ++round) {
    for (const char* id : {"m", "lazy"}) {
      (void)lifecycle_->unload(id, round % 3 == 0);
      std::this_thread::sleep_for(3ms);
      (void)lifecycle_->load(id);
    }
  }
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_GT(ids.size(), 20u);
  int completed = 0, cancelled = 0;
  for (JobId id : ids) {
    Job j = waitEnded(id);
    ASSERT_TRUE(j.status == JobStatus::kCompleted || j.status == JobStatus::kCancelled)
        << "job " << id << " " << toString(j.status) << " " << j.error;
    (j.status == JobStatus::kCompleted ? completed : cancelled)++;
    if (j.status == JobStatus::kCompleted) {
      EXPECT_EQ(j.result["text"], j.prompt);
    }
  }
  EXPECT_GT(completed, 0);
  // Both settle, and a last job on each still runs.
  for (const char* id : {"m", "lazy"}) {
    (void)lifecycle_->load(id);
    waitState(id, ModelState::kReady);
    auto j = submit(id, "last");
    ASSERT_TRUE(j);
    EXPECT_EQ(waitEnded(j->id).status, JobStatus::kCompleted);
  }
}

TEST_F(ModelLifecycleTest, KeepAliveUnloadsAnIdleModelAndAJobLoadsItAgain) {
  auto pinned = echoEntry("pinned", true, 0.05);
  pinned.manifest.required = true;
  start({echoEntry("brief", true, 0.05), pinned});
  waitState("brief", ModelState::kUnloaded);
  EXPECT_EQ(state("pinned"), ModelState::kReady);  // required: never unloaded for being idle
  EXPECT_FALSE(registry_->find("brief")->loaded);
  auto j = submit("brief", "again");
  ASSERT_TRUE(j);
  EXPECT_EQ(j->status_message, "loading model");
  EXPECT_EQ(waitEnded(j->id).result["text"], "again");
  EXPECT_GT(registry_->find("brief")->last_used_at, 0);
}

TEST_F(ModelLifecycleTest, AnUnloadWaitsForTheRunningJobUnlessForced) {
  start({echoEntry("m")});
  auto slow = submit("m", "slow", {{"delay_ms", 300}});
  ASSERT_TRUE(slow);
  auto t0 = std::chrono::steady_clock::now();
  while (scheduler_->stats("m").running == 0 && std::chrono::steady_clock::now() - t0 < 5s)
    std::this_thread::sleep_for(1ms);
  auto r = lifecycle_->unload("m", false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, ModelState::kUnloading);
  EXPECT_EQ(lifecycle_->unload("m", false).error().code, ErrorCode::kConflict);  // not ready any more
  waitState("m", ModelState::kUnloaded);
  EXPECT_EQ(waitEnded(slow->id).status, JobStatus::kCompleted);

  (void)lifecycle_->load("m");
  waitState("m", ModelState::kReady);
  auto forever = submit("m", "forever", {{"delay_ms", 60000}});
  ASSERT_TRUE(forever);
  t0 = std::chrono::steady_clock::now();
  while (scheduler_->stats("m").running == 0 && std::chrono::steady_clock::now() - t0 < 5s)
    std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(lifecycle_->unload("m", true));
  waitState("m", ModelState::kUnloaded);
  Job j = waitEnded(forever->id);
  EXPECT_EQ(j.status, JobStatus::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);
}

}  // namespace
}  // namespace statim
