// The event bus of one process: listeners run on the publisher's thread, under the bus's lock, in
// publication order. For each running job it keeps the text produced so far, for late
// subscribers. See events/event_bus.h for the contract.
#pragma once

#include <map>
#include <mutex>

#include "events/event_bus.h"

namespace statim {

class InProcessEventBus final : public EventBus {
 public:
  Subscription subscribe(JobId job, Listener listener) override;
  Token subscribeAll(Listener listener) override;
  void unsubscribe(Token token) override;
  void publish(const JobEvent& event) override;
  std::size_t listeners() const override;

 private:
  struct Entry {
    std::string text;
    bool running = false;  // between "started" and the terminal event
    std::map<Token, Listener> listeners;
  };
  // Calls a listener; false when it is to be removed (it said so, or it threw).
  static bool deliver(const Listener& listener, const JobEvent& event);

  mutable std::mutex mu_;
  std::map<JobId, Entry> jobs_;          // guarded by mu_
  std::map<Token, Listener> all_;        // guarded by mu_: subscribeAll
  std::map<Token, JobId> tokens_;        // guarded by mu_: subscribe (one job)
  Token next_token_ = 1;                 // guarded by mu_
};

}  // namespace statim
