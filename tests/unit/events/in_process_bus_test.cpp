#include "events/in_process/in_process_bus.h"

#include <deque>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace statim {
namespace {

TEST(InProcessEventBus, LateSubscriberGetsTextSoFarThenDeltas) {
  InProcessEventBus hub;
  hub.publish({7, "started"});
  hub.publish({7, "token", {{"text", "Hel"}}});
  hub.publish({7, "token", {{"text", "lo"}}});
  std::string seen;
  auto sub = hub.subscribe(7, [&](const JobEvent& e) {
    if (e.type == "token") seen += e.data["text"].get<std::string>();
    return true;
  });
  EXPECT_EQ(sub.text_so_far, "Hello");
  hub.publish({7, "token", {{"text", " world"}}});
  EXPECT_EQ(sub.text_so_far + seen, "Hello world");
  // An event named like an end but without the ended job (a backend's own event) ends nothing.
  hub.publish({7, "completed"});
  EXPECT_EQ(hub.listeners(), 1u);
  Job done;
  done.id = 7;
  done.status = JobStatus::kCompleted;
  hub.publish({7, "completed", {}, done});
  EXPECT_EQ(hub.listeners(), 0u);  // terminal events drop the job's listeners
}

TEST(InProcessEventBus, ASubscriptionAfterTheEndSaysSoAndOneBeforeItDoesNot) {
  InProcessEventBus hub;
  auto before = hub.subscribe(3, [](const JobEvent&) { return true; });
  EXPECT_FALSE(before.ended);
  Job done;
  done.id = 3;
  done.status = JobStatus::kFailed;
  hub.publish({3, "completed", {}, done});  // not the end: the event is not the job's status
  EXPECT_FALSE(hub.subscribe(3, [](const JobEvent&) { return true; }).ended);
  hub.publish({3, "failed", {}, done});
  auto after = hub.subscribe(3, [](const JobEvent&) { return true; });
  EXPECT_TRUE(after.ended);
  hub.unsubscribe(after.token);
  EXPECT_FALSE(hub.subscribe(4, [](const JobEvent&) { return true; }).ended);  // another job
  // Only the recent ends are remembered: thousands of later ones push the first out.
  for (JobId id = 100; id < 100 + 20000; ++id) {
    Job j;
    j.id = id;
    j.status = JobStatus::kCompleted;
    hub.publish({id, "completed", {}, j});
  }
  EXPECT_FALSE(hub.subscribe(3, [](const JobEvent&) { return true; }).ended);
  EXPECT_TRUE(hub.subscribe(100 + 19999, [](const JobEvent&) { return true; }).ended);
}

TEST(InProcessEventBus, ListenerReturningFalseIsRemovedAndOthersKeepGetting) {
  InProcessEventBus hub;
  int a = 0, b = 0;
  hub.subscribe(1, [&](const JobEvent&) {
    ++a;
    return false;
  });
  hub.subscribe(1, [&](const JobEvent&) {
    ++b;
    return true;
  });
  hub.publish({1, "started"});
  hub.publish({1, "token", {{"text", "x"}}});
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 2);
  EXPECT_EQ(hub.listeners(), 1u);
}

TEST(InProcessEventBus, EventsOfOtherJobsAreNotDelivered) {
  InProcessEventBus hub;
  int n = 0;
  auto sub = hub.subscribe(1, [&](const JobEvent&) {
    ++n;
    return true;
  });
  hub.publish({2, "started"});
  hub.publish({2, "completed"});
  EXPECT_EQ(n, 0);
  hub.unsubscribe(sub.token);
  hub.publish({1, "started"});
  EXPECT_EQ(n, 0);
}

TEST(InProcessEventBus, SubscribersToAllJobsSeeEveryJobUntilTheyLeave) {
  InProcessEventBus hub;
  std::vector<std::pair<JobId, std::string>> seen;
  auto token = hub.subscribeAll([&](const JobEvent& e) {
    seen.emplace_back(e.job_id, e.type);
    return true;
  });
  hub.publish({1, "queued"});
  hub.publish({2, "started"});
  Job done;
  done.id = 2;
  done.status = JobStatus::kFailed;
  hub.publish({2, "failed", {}, done});
  EXPECT_EQ(hub.listeners(), 1u);  // a job's end does not end a subscription to all jobs
  hub.unsubscribe(token);
  hub.publish({3, "queued"});
  EXPECT_EQ(seen, (std::vector<std::pair<JobId, std::string>>{{1, "queued"}, {2, "started"}, {2, "failed"}}));
  EXPECT_EQ(hub.listeners(), 0u);
}

TEST(InProcessEventBus, ASubscriptionToAllJobsHearsOnlyWhatItsFilterWants) {
  InProcessEventBus hub;
  std::vector<std::string> seen;
  std::vector<std::function<void()>> queued;  // the subscriber's loop: what was handed to it
  hub.subscribeAll(
      [&](const JobEvent& e) {
        seen.push_back(e.type);
        return true;
      },
      [&](std::function<void()> task) { queued.push_back(std::move(task)); },
      [](const JobEvent& e) { return e.type != "token"; });
  hub.publish({1, "queued"});
  for (int i = 0; i < 100; ++i) hub.publish({1, "token", {{"text", "x"}}});
  hub.publish({1, "started"});
  EXPECT_EQ(queued.size(), 2u) << "the tokens were never copied to the subscriber's loop";
  for (auto& t : queued) t();
  EXPECT_EQ(seen, (std::vector<std::string>{"queued", "started"}));
}

TEST(InProcessEventBus, AListenerThatThrowsIsRemovedAndThePublisherGoesOn) {
  InProcessEventBus hub;
  int calls = 0, others = 0;
  hub.subscribe(5, [&](const JobEvent&) -> bool {
    ++calls;
    throw std::runtime_error("a broken sink");
  });
  hub.subscribeAll([&](const JobEvent&) -> bool { throw 42; });
  hub.subscribe(5, [&](const JobEvent&) {
    ++others;
    return true;
  });
  EXPECT_NO_THROW(hub.publish({5, "started"}));
  EXPECT_NO_THROW(hub.publish({5, "token", {{"text", "x"}}}));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(others, 2);
  EXPECT_EQ(hub.listeners(), 1u);
}

// A subscription with an executor hears its events there (the subscriber's own loop), in order,
// and nothing after it said "no more".
TEST(InProcessEventBus, AnExecutorRunsTheListenerThereInOrderUntilItSaysNoMore) {
  InProcessEventBus hub;
  std::deque<std::function<void()>> loop;  // a loop that runs what it was handed when told
  auto on = [&loop](std::function<void()> task) { loop.push_back(std::move(task)); };
  std::vector<std::string> seen;
  hub.subscribe(
      3,
      [&](const JobEvent& e) {
        seen.push_back(e.type + (e.data.contains("text") ? ":" + e.data["text"].get<std::string>() : ""));
        return seen.size() < 3;
      },
      on);
  hub.publish({3, "started"});
  hub.publish({3, "token", {{"text", "a"}}});
  hub.publish({3, "token", {{"text", "b"}}});
  hub.publish({3, "token", {{"text", "c"}}});
  EXPECT_TRUE(seen.empty());  // not on the publisher's thread
  EXPECT_EQ(loop.size(), 4u);
  while (!loop.empty()) {
    auto task = std::move(loop.front());
    loop.pop_front();
    task();
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"started", "token:a", "token:b"}));
  EXPECT_EQ(hub.listeners(), 0u);  // it left the bus from its loop
  hub.publish({3, "token", {{"text", "d"}}});
  EXPECT_TRUE(loop.empty());
}

// A subscription to one job that wants only some events: the others are not handed to its loop
// at all (no task, so no wake-up), and it still ends with the job's end.
TEST(InProcessEventBus, AJobSubscriptionThatWantsOnlySomeEventsIsNotWokenByTheOthers) {
  InProcessEventBus hub;
  std::deque<std::function<void()>> loop;
  auto on = [&loop](std::function<void()> task) { loop.push_back(std::move(task)); };
  std::vector<std::string> seen;
  hub.subscribe(
      5,
      [&](const JobEvent& e) {
        seen.push_back(e.type);
        return true;
      },
      on, [](const JobEvent& e) { return e.type == "progress"; });
  hub.publish({5, "started"});
  hub.publish({5, "token", {{"text", "a"}}});
  hub.publish({5, "progress", {{"fraction", 0.5}}});
  hub.publish({5, "result"});
  EXPECT_EQ(loop.size(), 1u);  // only "progress" was handed over
  Job done;
  done.id = 5;
  done.status = JobStatus::kCompleted;
  hub.publish({5, "completed", {}, done});  // not wanted either: the subscription ends all the same
  EXPECT_EQ(hub.listeners(), 0u);
  while (!loop.empty()) {
    auto task = std::move(loop.front());
    loop.pop_front();
    task();
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"progress"}));
}

}  // namespace
}  // namespace statim
