// The job's life table: what the scheduler and the stores take their statuses, events and
// messages from.
#include <algorithm>
#include <iterator>
#include <set>

#include <gtest/gtest.h>

#include "statim/job.h"

namespace statim {
namespace {

constexpr JobStep kSteps[] = {
    JobStep::kQueued, JobStep::kQueuedForLoad,    JobStep::kStarted,         JobStep::kCancelling, JobStep::kCompleted,
    JobStep::kFailed, JobStep::kCancelledRunning, JobStep::kCancelledQueued, JobStep::kRequeued,   JobStep::kAbandoned};

TEST(JobLife, EveryEndIsAnnouncedByItsStatusEvent) {
  for (JobStep step : kSteps) {
    const JobTransition& t = transition(step);
    EXPECT_FALSE(t.message.empty()) << static_cast<int>(step);
    if (t.terminal()) {
      EXPECT_EQ(t.event, eventName(t.status)) << static_cast<int>(step);
    }
  }
  EXPECT_EQ(transition(JobStep::kCompleted).status, JobStatus::kCompleted);
  EXPECT_EQ(transition(JobStep::kCancelledQueued).status, JobStatus::kCancelled);
  EXPECT_EQ(transition(JobStep::kAbandoned).status, JobStatus::kFailed);
  EXPECT_EQ(transition(JobStep::kRequeued).status, JobStatus::kQueued);
  EXPECT_EQ(transition(JobStep::kCancelling).status, JobStatus::kProcessing);
  EXPECT_EQ(transition(JobStep::kCancelling).event, "");  // no event until it has stopped
}

TEST(JobLife, WebhookEventsAreExactlyTheEventsOfTheTable) {
  std::set<std::string_view> from_table;
  for (JobStep step : kSteps) {
    if (!transition(step).event.empty()) from_table.insert(transition(step).event);
  }
  std::set<std::string_view> listed(std::begin(kJobEvents), std::end(kJobEvents));
  EXPECT_EQ(from_table, listed);
  for (auto s :
       {JobStatus::kQueued, JobStatus::kProcessing, JobStatus::kCompleted, JobStatus::kFailed, JobStatus::kCancelled}) {
    EXPECT_TRUE(listed.contains(eventName(s))) << toString(s);
    EXPECT_EQ(parseJobStatus(toString(s)), s);
  }
}

}  // namespace
}  // namespace statim
