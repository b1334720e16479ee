#include "api/follow.h"

#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <trantor/net/EventLoopThread.h>

#include "../test_util.h"
#include "events/in_process/in_process_bus.h"
#include "store/sqlite/sqlite_store.h"

namespace statim::api {
namespace {

bool releasedWithin(const std::weak_ptr<int>& watch, std::chrono::seconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!watch.expired() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return watch.expired();
}

class AwaitJobEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_thread_.run();
    auto store = SqliteStore::open(dir_.path() / "jobs.db");
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
    auto job = store_->create({.model = "m", .type = "echo", .prompt = "p"});
    ASSERT_TRUE(job) << job.error().message;
    job_ = *job;
  }

  // Waits on the loop for job_'s end, at most `seconds`; `keep` stands for what a route's answer
  // holds (its request, the request's body).
  std::future<Result<Job>> wait(double seconds, std::shared_ptr<int> keep) {
    auto answered = std::make_shared<std::promise<Result<Job>>>();
    auto future = answered->get_future();
    loop()->runInLoop([this, seconds, keep = std::move(keep), answered] {
      auto r = awaitJobEnd(
          *store_, bus_, job_.id, seconds, loop(), [keep, answered](Result<Job> j) { answered->set_value(j); }, &job_);
      ASSERT_TRUE(r) << r.error().message;
    });
    return future;
  }

  trantor::EventLoop* loop() { return loop_thread_.getLoop(); }

  testing::TempDir dir_;
  trantor::EventLoopThread loop_thread_;
  InProcessEventBus bus_;
  std::unique_ptr<SqliteStore> store_;
  Job job_;
};

// An answered wait lets go of what its answer held at once, not when its 30 s timer would have
// fired: trantor keeps an invalidated timer, and its callback, until then, so a busy server kept
// every waited request (a file job's upload included) for the whole wait.
TEST_F(AwaitJobEndTest, AnAnsweredWaitKeepsNothingOfItsRequest) {
  auto keep = std::make_shared<int>(1);
  std::weak_ptr<int> watch = keep;
  auto answer = wait(30, std::move(keep));
  bus_.publish({job_.id, "started"});  // not the end: no answer yet
  EXPECT_EQ(answer.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  Job done = job_;
  done.status = JobStatus::kCompleted;
  done.result = {{"text", "p"}};
  bus_.publish({job_.id, "completed", {}, done});
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto job = answer.get();
  ASSERT_TRUE(job) << job.error().message;
  EXPECT_EQ(job->status, JobStatus::kCompleted);
  EXPECT_EQ(job->result["text"], "p");
  EXPECT_TRUE(releasedWithin(watch, std::chrono::seconds(2)));
  EXPECT_EQ(bus_.listeners(), 0u);
}

// A wait that runs out answers the job as it is then, and lets go likewise.
TEST_F(AwaitJobEndTest, AWaitThatRunsOutAnswersTheJobAsItIs) {
  auto keep = std::make_shared<int>(1);
  std::weak_ptr<int> watch = keep;
  auto answer = wait(0.05, std::move(keep));
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto job = answer.get();
  ASSERT_TRUE(job) << job.error().message;
  EXPECT_EQ(job->id, job_.id);
  EXPECT_EQ(job->status, JobStatus::kQueued);
  EXPECT_TRUE(releasedWithin(watch, std::chrono::seconds(2)));
  EXPECT_EQ(bus_.listeners(), 0u);
}

}  // namespace
}  // namespace statim::api
