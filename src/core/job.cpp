#include "statim/job.h"

#include <iterator>

namespace statim {

std::string_view toString(JobStatus s) {
  switch (s) {
    case JobStatus::kQueued: return "QUEUED";
    case JobStatus::kProcessing: return "PROCESSING";
    case JobStatus::kCompleted: return "COMPLETED";
    case JobStatus::kFailed: return "FAILED";
    case JobStatus::kCancelled: return "CANCELLED";
  }
  return "FAILED";
}

const JobTransition& transition(JobStep step) {
  using enum JobStatus;
  static constexpr JobTransition kTable[] = {
      /* kQueued */ {kQueued, "queued", "queued"},
      /* kQueuedForLoad */ {kQueued, "queued", "loading model"},
      /* kStarted */ {kProcessing, "started", "running"},
      /* kCancelling */ {kProcessing, "", "cancelling"},
      /* kCompleted */ {kCompleted, "completed", "completed"},
      /* kFailed */ {kFailed, "failed", "failed"},
      /* kCancelledRunning */ {kCancelled, "cancelled", "cancelled while running"},
      /* kCancelledQueued */ {kCancelled, "cancelled", "cancelled before it started"},
      /* kRequeued */ {kQueued, "", "requeued: the worker running it stopped"},
      /* kAbandoned */ {kFailed, "failed", "failed"},
  };
  static_assert(std::size(kTable) == static_cast<size_t>(JobStep::kAbandoned) + 1);
  return kTable[static_cast<size_t>(step)];
}

std::string_view eventName(JobStatus s) {
  switch (s) {
    case JobStatus::kQueued: return transition(JobStep::kQueued).event;
    case JobStatus::kProcessing: return transition(JobStep::kStarted).event;
    case JobStatus::kCompleted: return transition(JobStep::kCompleted).event;
    case JobStatus::kFailed: return transition(JobStep::kFailed).event;
    case JobStatus::kCancelled: return transition(JobStep::kCancelledRunning).event;
  }
  return transition(JobStep::kFailed).event;
}

std::optional<JobStatus> parseJobStatus(std::string_view s) {
  for (auto st :
       {JobStatus::kQueued, JobStatus::kProcessing, JobStatus::kCompleted, JobStatus::kFailed, JobStatus::kCancelled}) {
    if (toString(st) == s) return st;
  }
  return std::nullopt;
}

}  // namespace statim
