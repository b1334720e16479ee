#include "scheduler/job_events.h"

namespace statim {

JobEvents::Subscription JobEvents::subscribe(JobId job, Listener listener) {
  std::lock_guard lock(mu_);
  Token token = next_token_++;
  Entry& e = jobs_[job];
  e.listeners.emplace(token, std::move(listener));
  tokens_.emplace(token, job);
  return {token, e.text};
}

void JobEvents::unsubscribe(Token token) {
  std::lock_guard lock(mu_);
  auto it = tokens_.find(token);
  if (it == tokens_.end()) return;
  auto job = jobs_.find(it->second);
  tokens_.erase(it);
  if (job == jobs_.end()) return;
  job->second.listeners.erase(token);
  if (job->second.listeners.empty() && !job->second.running) jobs_.erase(job);
}

void JobEvents::publish(const JobEvent& event) {
  std::lock_guard lock(mu_);
  auto it = jobs_.find(event.job_id);
  if (event.type == "started" && it == jobs_.end()) {
    // Track the text of every running job so late observers get a snapshot.
    it = jobs_.emplace(event.job_id, Entry{}).first;
  }
  if (it == jobs_.end()) return;
  if (event.type == "started") it->second.running = true;
  if (event.type == "token") it->second.text += event.data.value("text", "");
  for (auto l = it->second.listeners.begin(); l != it->second.listeners.end();) {
    if (l->second(event)) {
      ++l;
    } else {
      tokens_.erase(l->first);
      l = it->second.listeners.erase(l);
    }
  }
  if (event.terminal()) {
    for (auto& [token, l] : it->second.listeners) tokens_.erase(token);
    jobs_.erase(event.job_id);
  }
}

std::size_t JobEvents::listeners() const {
  std::lock_guard lock(mu_);
  return tokens_.size();
}

}  // namespace statim
