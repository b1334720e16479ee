// The job: what a client submitted, where it is in its life, and what it produced.
// Plain data; the store owns persistence, the scheduler owns transitions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// A job's life, in one place: each step, the status it leads to, the event that announces it
// (to streams and webhooks; empty: none) and the status_message the job is stored with. The
// scheduler and every store take them from here (a store binds them into its SQL).
enum class JobStep {
  kQueued,         // submitted
  kQueuedForLoad,  // submitted while its model loads
  kStarted,        // claimed by a worker (also: started at submission)
  kCancelling,     // a cancel asked of a running job; it stops at its next check
  kCompleted,
  kFailed,            // the backend failed
  kCancelledRunning,  // stopped by a cancel
  kCancelledQueued,   // cancelled before any worker took it
  kRequeued,          // its worker vanished (lease expired); the message adds the attempts used
  kAbandoned,         // its worker vanished jobs.max_attempts times: failed
};
struct JobTransition {
  JobStatus status;
  std::string_view event;    // "queued", "started", "completed", "failed", "cancelled"; or none
  std::string_view message;  // status_message
  bool terminal() const { return isTerminal(status); }
};
const JobTransition& transition(JobStep step);
// The event that announces a job reaching `s` ("queued", "started", "completed", ...).
std::string_view eventName(JobStatus s);
// The event that asks the node running a job to stop it (a cancel made on another node).
inline constexpr std::string_view kCancellingEvent = "cancelling";
// The events a webhook may ask for, in the order of a job's life.
inline constexpr std::string_view kJobEvents[] = {"queued", "started", "completed", "failed", "cancelled"};

// A file a job takes (an image, some audio) or produces (an artifact). The bytes live in the data
// dir, content-addressed by sha256 (see store/blob_store.h); rows in the store describe them.
struct JobFile {
  std::string name;          // "image", "audio", "speech.wav": unique within a job's inputs / artifacts
  std::string content_type;  // detected from the bytes, not from a client's claim
  std::int64_t bytes = 0;
  std::string sha256;        // hex
  std::filesystem::path path;  // absolute path of the bytes; read-only for backends
};

// Where statim reports a job's life: an HTTP(S) URL and the events to send.
struct Webhook {
  std::string url;
  std::vector<std::string> events;  // of: queued, started, completed, failed, cancelled
};

// The API key a job belongs to. Jobs of a user key are visible only to that key.
struct JobOwner {
  std::int64_t key_id = 0;
  std::string key_name;                   // for messages only; not stored with the job
  std::optional<std::int64_t> max_queued;  // the key's limit on its QUEUED jobs, checked at create
};

// What a client asks for; validated by the API before it reaches the store.
struct NewJob {
  std::string model;
  std::string type;  // job type of the model ("completion", "echo", ...)
  std::string prompt;
  nlohmann::json params = nlohmann::json::object();
  int priority = 0;  // higher runs first; FIFO within a priority
  std::optional<JobOwner> owner;  // none when auth is off
  std::optional<Webhook> webhook;
  // A client's Idempotency-Key and a hash of what it sent with it: a second create with the same
  // owner and key returns the first job (same hash) or fails with kConflict (another hash).
  std::string idempotency_key;
  std::string request_hash;
  std::vector<JobFile> inputs;  // already written to the blob store by the API
  std::string status_message;   // a queued job's status_message; empty: "queued"
  // How long the model stays loaded once idle, from this job on (seconds; < 0: until unloaded by
  // other means), over the manifest's keep_alive (Ollama's keep_alive). Not stored with the job.
  std::optional<double> keep_alive;
  // Its submitter hears of the job only when it has ended (POST /job?wait=, a non-streaming
  // OpenAI or Anthropic request), or else after a JobStore::syncAsync: the store may hand the job
  // to its worker before its creation is flushed to disk (the flush follows at once). Not stored
  // with the job.
  bool answered_at_end = false;
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
  // The attempts before the last, each ended by its worker vanishing and requeued:
  // [{"attempt", "started_at" (µs), "lease_owner", "requeued_at" (µs)}], oldest first.
  nlohmann::json earlier_attempts = nlohmann::json::array();
  // Lease: which worker holds a PROCESSING job, and until when (see JobStore).
  std::string lease_owner;
  std::optional<Micros> lease_expires_at;
  bool cancel_requested = false;
  std::optional<std::int64_t> owner_key_id;
  std::optional<Webhook> webhook;
  // Set by JobStore::create when an Idempotency-Key matched: this is the earlier job, unchanged.
  bool replayed = false;
  std::vector<JobFile> inputs;
  std::vector<JobFile> artifacts;  // what a COMPLETED job produced besides its result JSON
};

}  // namespace statim
