#include "statim/job.h"

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

std::optional<JobStatus> parseJobStatus(std::string_view s) {
  for (auto st :
       {JobStatus::kQueued, JobStatus::kProcessing, JobStatus::kCompleted, JobStatus::kFailed, JobStatus::kCancelled}) {
    if (toString(st) == s) return st;
  }
  return std::nullopt;
}

}  // namespace statim
