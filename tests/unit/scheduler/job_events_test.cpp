#include "scheduler/job_events.h"

#include <gtest/gtest.h>

namespace statim {
namespace {

TEST(JobEvents, LateSubscriberGetsTextSoFarThenDeltas) {
  JobEvents hub;
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

TEST(JobEvents, ListenerReturningFalseIsRemovedAndOthersKeepGetting) {
  JobEvents hub;
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

TEST(JobEvents, EventsOfOtherJobsAreNotDelivered) {
  JobEvents hub;
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

}  // namespace
}  // namespace statim
