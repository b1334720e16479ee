// In-process fan-out of job events to live observers (SSE streams, OpenAI streaming).
//
// Events: "queued", "started", "token" (data.text: new text), "progress", "result" (job: the
// final job as it is being stored: the outcome is known, its commit is not done yet), and the
// terminal "completed" / "failed" / "cancelled" (job: the final job, stored). The hub remembers, for each
// running job, the text produced so far, so an observer that joins late first gets that
// snapshot and then every later event, with nothing lost or repeated.
//
// Thread-safety: all methods may be called from any thread. Listeners run under the hub's lock,
// in publication order, and must not block (hand data to a socket buffer and return). A listener
// returns false to be removed (its client went away); it must not call the hub itself.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "statim/job.h"

namespace statim {

struct JobEvent {
  JobId job_id = 0;
  std::string type;
  nlohmann::json data = nlohmann::json::object();
  std::optional<Job> job;  // the final job, on "result" and terminal events
  // The event of a job's end, which carries the ended job.
  bool terminal() const { return job && isTerminal(job->status) && type == eventName(job->status); }
};

class JobEvents {
 public:
  using Listener = std::function<bool(const JobEvent&)>;
  using Token = std::uint64_t;

  struct Subscription {
    Token token = 0;
    std::string text_so_far;  // what a running job has produced before the subscription
  };

  Subscription subscribe(JobId job, Listener listener);
  void unsubscribe(Token token);
  void publish(const JobEvent& event);
  // Number of live listeners (tests, metrics).
  std::size_t listeners() const;

 private:
  struct Entry {
    std::string text;
    bool running = false;  // between "started" and the terminal event
    std::map<Token, Listener> listeners;
  };
  mutable std::mutex mu_;
  std::map<JobId, Entry> jobs_;    // guarded by mu_
  std::map<Token, JobId> tokens_;  // guarded by mu_
  Token next_token_ = 1;           // guarded by mu_
};

}  // namespace statim
