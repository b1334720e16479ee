// Job events, from where they happen (the scheduler, a job's worker) to those who follow them
// (SSE streams, OpenAI streams): one interface, one folder per transport. in_process/ fans them
// out within this process; a transport between nodes (PostgreSQL LISTEN/NOTIFY) implements the
// same contract.
//
// Events: "queued", "started", "token" (data.text: new text), "progress" (or any type a backend
// gives its progress), "result" (job: the final job as it is being stored: the outcome is known,
// its commit is not done yet), and the terminal "completed" / "failed" / "cancelled" (job: the
// final job, stored). The names of a job's life come from statim/job.h (eventName, transition).
//
// Contract, for every implementation:
// - Every method may be called from any thread.
// - The events of one job reach each of its listeners in the order they were published, each
//   once; a subscriber of a running job first gets the text it produced so far (text_so_far),
//   then every later event, with nothing lost or repeated.
// - A subscription with an executor (the subscriber's own event loop) has its listener run
//   there, one event after the other; without one, the listener runs on the publisher's thread,
//   under the bus's lock, and must not call the bus. Either way it must not block (hand data to
//   a socket buffer and return). It returns false to be removed (its client went away), and is
//   called no more after that; one that throws is removed too, and the exception is logged,
//   never propagated to the publisher.
// - After a job's terminal event its listeners are gone; a later subscription to that job says
//   `ended` (for the recent ends it remembers).
// - A transport between nodes delivers the events published on other nodes as if published
//   here (remote = true), but for "result" (a node's own business), and a terminal event carries
//   the stored job; a follower of a job must get its terminal event even when a notification
//   was lost (the transport falls back to reading the store).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "statim/job.h"

namespace statim {

struct JobEvent {
  JobId job_id = 0;
  std::string type;
  nlohmann::json data = nlohmann::json::object();
  std::optional<Job> job;  // the final job, on "result" and terminal events
  bool remote = false;     // published on another node (set by a transport between nodes)
  // The event of a job's end, which carries the ended job.
  bool terminal() const { return job && isTerminal(job->status) && type == eventName(job->status); }
};

class EventBus {
 public:
  using Listener = std::function<bool(const JobEvent&)>;
  using Token = std::uint64_t;
  // Runs a task on the subscriber's loop, after those handed to it before; never inline (the bus
  // may hold its lock while handing it over).
  using Executor = std::function<void(std::function<void()>)>;

  struct Subscription {
    Token token = 0;
    std::string text_so_far;  // what a running job has produced before the subscription
    // The logprobs entries its token events carried before the subscription (jobs that asked).
    nlohmann::json logprobs_so_far = nlohmann::json::array();
    // The job's terminal event was published here before the subscription (a bus remembers the
    // last few thousand ends): its listener will hear nothing more. False says the end, if any,
    // is still to come, so a follower that holds the job's state from before the subscription
    // need not read the store.
    bool ended = false;
    // A job of several choices (params.n > 1): the text of choice i (i >= 1; its "choice_token"
    // events, {"index", "text"}) before the subscription; text_so_far is choice 0's.
    std::vector<std::string> choices_so_far;
  };

  virtual ~EventBus() = default;
  // Which events a subscription wants: asked on the publisher's thread, under the bus's lock,
  // before the event is copied to the subscriber's loop (cheap; must not call the bus). An event
  // it does not want costs the subscriber nothing: no copy, no wake-up of its loop.
  using Filter = std::function<bool(const JobEvent&)>;
  // The events of one job, from now until its terminal event; with `wants`, only those (the
  // subscription still ends with the job's terminal event, wanted or not).
  virtual Subscription subscribe(JobId job, Listener listener, Executor on = {}, Filter wants = {}) = 0;
  // The events of every job (a live job list), until unsubscribed; with `wants`, only those.
  virtual Token subscribeAll(Listener listener, Executor on = {}, Filter wants = {}) = 0;
  virtual void unsubscribe(Token token) = 0;
  virtual void publish(const JobEvent& event) = 0;
  // Number of live listeners (tests, metrics).
  virtual std::size_t listeners() const = 0;
};

}  // namespace statim
