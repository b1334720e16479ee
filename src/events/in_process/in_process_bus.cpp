#include "events/in_process/in_process_bus.h"

#include <exception>

#include "core/logging.h"

namespace statim {
namespace {
constexpr int kMaxTrackedChoices = 128;
}  // namespace

InProcessEventBus::Sub InProcessEventBus::makeSub(Listener listener, Executor on, Filter wants) {
  return {std::make_shared<Listener>(std::move(listener)), std::move(on), std::make_shared<std::atomic<bool>>(false),
          std::move(wants)};
}

EventBus::Subscription InProcessEventBus::subscribe(JobId job, Listener listener, Executor on, Filter wants) {
  std::lock_guard lock(mu_);
  Token token = next_token_++;
  Entry& e = jobs_[job];
  e.listeners.emplace(token, makeSub(std::move(listener), std::move(on), std::move(wants)));
  tokens_.emplace(token, job);
  return {token, e.text, e.logprobs, ended_.contains(job), e.choices};
}

EventBus::Token InProcessEventBus::subscribeAll(Listener listener, Executor on, Filter wants) {
  std::lock_guard lock(mu_);
  Token token = next_token_++;
  all_.emplace(token, makeSub(std::move(listener), std::move(on), std::move(wants)));
  return token;
}

void InProcessEventBus::unsubscribe(Token token) {
  std::lock_guard lock(mu_);
  if (all_.erase(token)) return;
  auto it = tokens_.find(token);
  if (it == tokens_.end()) return;
  auto job = jobs_.find(it->second);
  tokens_.erase(it);
  if (job == jobs_.end()) return;
  job->second.listeners.erase(token);
  if (job->second.listeners.empty() && !job->second.running) jobs_.erase(job);
}

bool InProcessEventBus::deliver(const Listener& listener, const JobEvent& event) {
  try {
    return listener(event);
  } catch (const std::exception& e) {
    log::error("events: a listener threw; it is removed",
               {{"job_id", event.job_id}, {"event", event.type}, {"error", e.what()}});
  } catch (...) {
    log::error("events: a listener threw; it is removed", {{"job_id", event.job_id}, {"event", event.type}});
  }
  return false;
}

bool InProcessEventBus::dispatch(Token token, const Sub& sub, const JobEvent& event) {
  if (sub.wants && !sub.wants(event)) return true;  // not for this one: kept, not called
  if (!sub.on) {
    if (deliver(*sub.listener, event)) return true;
    *sub.done = true;
    return false;
  }
  // On the subscriber's loop, in order; one that said "no more" hears nothing after that, and
  // leaves the bus from there (the bus outlives the loops it was handed).
  sub.on([this, token, listener = sub.listener, done = sub.done, event] {
    if (*done) return;
    if (deliver(*listener, event)) return;
    *done = true;
    unsubscribe(token);
  });
  return true;
}

void InProcessEventBus::publish(const JobEvent& event) {
  std::lock_guard lock(mu_);
  if (event.terminal() && ended_.insert(event.job_id).second) {
    ended_order_.push_back(event.job_id);
    if (ended_order_.size() > kEndedKept) {
      ended_.erase(ended_order_.front());
      ended_order_.pop_front();
    }
  }
  for (auto l = all_.begin(); l != all_.end();) {
    l = dispatch(l->first, l->second, event) ? std::next(l) : all_.erase(l);
  }
  auto it = jobs_.find(event.job_id);
  if (event.type == eventName(JobStatus::kProcessing) && it == jobs_.end()) {
    // Track the text of every running job so late subscribers get a snapshot.
    it = jobs_.emplace(event.job_id, Entry{}).first;
  }
  if (it == jobs_.end()) return;
  if (event.type == eventName(JobStatus::kProcessing)) it->second.running = true;
  if (event.type == "choice_token") {
    int index = event.data.value("index", 0);
    auto& choices = it->second.choices;
    if (index > 0 && index < kMaxTrackedChoices) {
      if (choices.size() <= static_cast<size_t>(index)) choices.resize(static_cast<size_t>(index) + 1);
      choices[static_cast<size_t>(index)] += event.data.value("text", "");
    }
  }
  if (event.type == "token") {
    it->second.text += event.data.value("text", "");
    if (auto lp = event.data.find("logprobs"); lp != event.data.end() && lp->is_array()) {
      for (const auto& entry : *lp) it->second.logprobs.push_back(entry);
    }
  }
  for (auto l = it->second.listeners.begin(); l != it->second.listeners.end();) {
    if (dispatch(l->first, l->second, event)) {
      ++l;
    } else {
      tokens_.erase(l->first);
      l = it->second.listeners.erase(l);
    }
  }
  if (event.terminal()) {
    for (auto& [token, l] : it->second.listeners) tokens_.erase(token);
    jobs_.erase(it);
  }
}

std::size_t InProcessEventBus::listeners() const {
  std::lock_guard lock(mu_);
  return tokens_.size() + all_.size();
}

}  // namespace statim
