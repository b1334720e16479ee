// The job: what a client submitted, where it is in its life, and what it produced.
// Plain data; the store owns persistence, the scheduler owns transitions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace statim {

using JobId = std::int64_t;
// Microseconds since the Unix epoch, UTC.
using Micros = std::int64_t;

enum class JobStatus { kQueued, kProcessing, kCompleted, kFailed, kCancelled };

std::string_view toString(JobStatus s);  // "QUEUED", "PROCESSING", ...
std::optional<JobStatus> parseJobStatus(std::string_view s);
inline bool isTerminal(JobStatus s) {
  return s == JobStatus::kCompleted || s == JobStatus::kFailed || s == JobStatus::kCancelled;
}

// What a client asks for; validated by the API before it reaches the store.
struct NewJob {
  std::string model;
  std::string type;  // job type of the model ("completion", "echo", ...)
  std::string prompt;
  nlohmann::json params = nlohmann::json::object();
  int priority = 0;  // higher runs first; FIFO within a priority
};

struct Job {
  JobId id = 0;
  std::string model;
  std::string type;
  std::string prompt;
  nlohmann::json params = nlohmann::json::object();
  int priority = 0;
  JobStatus status = JobStatus::kQueued;
  std::string status_message;
  Micros created_at = 0;
  std::optional<Micros> started_at;
  std::optional<Micros> finished_at;
  nlohmann::json result;  // null until COMPLETED (or partial on CANCELLED)
  std::string error;      // empty unless FAILED
  int attempts = 0;       // how many times a worker started it
  // Lease: which worker holds a PROCESSING job, and until when (see JobStore).
  std::string lease_owner;
  std::optional<Micros> lease_expires_at;
  bool cancel_requested = false;
};

}  // namespace statim
