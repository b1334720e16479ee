// The event bus of one process: a listener runs on its subscriber's executor, or else on the
// publisher's thread under the bus's lock; in publication order either way. For each running job
// it keeps the text produced so far, for late subscribers. See events/event_bus.h for the contract.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_set>

#include "events/event_bus.h"

namespace statim {

class InProcessEventBus final : public EventBus {
 public:
  Subscription subscribe(JobId job, Listener listener, Executor on = {}, Filter wants = {}) override;
  Token subscribeAll(Listener listener, Executor on = {}, Filter wants = {}) override;
  void unsubscribe(Token token) override;
  void publish(const JobEvent& event) override;
  std::size_t listeners() const override;

 private:
  struct Sub {
    std::shared_ptr<Listener> listener;
    Executor on;                              // empty: run on the publisher's thread
    std::shared_ptr<std::atomic<bool>> done;  // it returned false (or threw): call it no more
    Filter wants;                             // empty: every event
  };
  struct Entry {
    std::string text;
    nlohmann::json logprobs = nlohmann::json::array();  // of the token events that carried some
    std::vector<std::string> choices;                   // "choice_token" texts by index (params.n > 1)
    bool running = false;  // between "started" and the terminal event
    std::map<Token, Sub> listeners;
  };
  static Sub makeSub(Listener listener, Executor on, Filter wants);
  // Calls a listener; false when it is to be removed (it said so, or it threw).
  static bool deliver(const Listener& listener, const JobEvent& event);
  // Delivers `event` to `sub` (mu_ held): at once, or through its executor. False: remove it now.
  bool dispatch(Token token, const Sub& sub, const JobEvent& event);

  mutable std::mutex mu_;
  std::map<JobId, Entry> jobs_;    // guarded by mu_
  std::map<Token, Sub> all_;       // guarded by mu_: subscribeAll
  std::map<Token, JobId> tokens_;  // guarded by mu_: subscribe (one job)
  Token next_token_ = 1;           // guarded by mu_
  // The jobs whose terminal event was published, the last kEndedKept (Subscription::ended).
  static constexpr std::size_t kEndedKept = 16384;
  std::unordered_set<JobId> ended_;  // guarded by mu_
  std::deque<JobId> ended_order_;    // guarded by mu_
};

}  // namespace statim
