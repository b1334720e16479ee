#include "api/follow.h"

#include "api/errors.h"

#include <deque>
#include <format>
#include <memory>
#include <mutex>

namespace statim::api {
namespace {

// Events that arrive while the first state is being read wait in `backlog`, so the sink sees the
// state first and nothing twice. Lock order: the hub's lock, then `mu` (never the reverse).
struct Follower {
  std::mutex mu;
  bool ready = false;
  bool closed = false;
  std::deque<JobEvent> backlog;
  FollowSink sink;

  bool deliver(const JobEvent& e) {
    if (closed) return false;
    if (!sink(e) || e.terminal()) closed = true;
    return !closed;
  }
};

}  // namespace

Result<EventBus::Token> followJob(JobStore& store, EventBus& events, JobId id, FollowSink sink, EventBus::Executor on,
                                  const Job* known, EventBus::Filter wants) {
  auto f = std::make_shared<Follower>();
  f->sink = std::move(sink);
  auto sub = events.subscribe(
      id,
      [f](const JobEvent& e) {
        std::lock_guard lock(f->mu);
        if (!f->ready) {
          f->backlog.push_back(e);
          return true;
        }
        return f->deliver(e);
      },
      std::move(on), wants ? [wants](const JobEvent& e) { return e.terminal() || wants(e); } : EventBus::Filter{});
  Result<Job> job = known && !sub.ended ? Result<Job>(*known) : store.get(id);
  if (!job) {
    events.unsubscribe(sub.token);
    return fail(job.error());
  }
  bool keep;
  {
    std::lock_guard lock(f->mu);
    // A job that has ended has its whole text in its result.
    std::string text = sub.text_so_far;
    if (isTerminal(job->status) && job->result.is_object()) text = job->result.value("text", text);
    JobEvent state{id, "state", {{"text", text}}, *job};
    if (!sub.logprobs_so_far.empty()) state.data["logprobs"] = sub.logprobs_so_far;
    if (!sub.choices_so_far.empty()) state.data["choices"] = sub.choices_so_far;
    if (isTerminal(job->status) && job->result.is_object() && job->result.contains("logprobs")) {
      state.data["logprobs"] = job->result["logprobs"];
    }
    keep = f->deliver(state);
    if (keep && isTerminal(job->status)) keep = f->deliver({id, std::string(eventName(job->status)), {}, *job});
    while (keep && !f->backlog.empty()) {
      keep = f->deliver(f->backlog.front());
      f->backlog.pop_front();
    }
    f->ready = true;
  }
  if (!keep) events.unsubscribe(sub.token);
  return sub.token;
}

Result<void> awaitJobEnd(JobStore& store, EventBus& events, JobId id, double seconds, trantor::EventLoop* loop,
                         WaitDone done, const Job* known) {
  // Everything below runs on `loop`: the sink (through the executor, or inline in followJob,
  // called here) and the timer, so `answered` needs no lock.
  struct Waiter {
    bool answered = false;
    EventBus::Token token = 0;
    trantor::TimerId timer = 0;
    WaitDone done;
  };
  auto w = std::make_shared<Waiter>();
  w->done = std::move(done);
  auto token = followJob(
      store, events, id,
      [w, loop](const JobEvent& e) {
        if (w->answered) return false;
        if (!e.terminal()) return true;
        w->answered = true;
        if (w->timer) loop->invalidateTimer(w->timer);
        w->done(*e.job);
        w->done = nullptr;  // what it holds (the request, its body) goes now, not when the timer would have fired
        return false;
      },
      [loop](std::function<void()> task) { loop->queueInLoop(std::move(task)); }, known,
      // Only the end matters here: the job's other events do not wake the connection's loop.
      [](const JobEvent& e) { return e.terminal(); });
  if (!token) return fail(token.error());
  if (w->answered) return ok();
  w->token = *token;
  // trantor keeps an invalidated timer, and what its callback holds, until the time it was set
  // for: a weak hold, or every answered wait would keep its request for `seconds`.
  w->timer = loop->runAfter(seconds, [weak = std::weak_ptr(w), &store, &events, id] {
    auto w = weak.lock();
    if (!w || w->answered) return;
    w->answered = true;
    events.unsubscribe(w->token);
    w->done(store.get(id));
    w->done = nullptr;
  });
  return ok();
}

Error unfinishedJobError(const Job& job) {
  if (job.status == JobStatus::kCancelled)
    return {ErrorCode::kCancelled, std::format("job {} was cancelled", job.id), {}};
  return Error::backend(std::format("job {} failed: {}", job.id, job.error));
}

void answerWhenEnded(JobStore& store, EventBus& events, const Job& job, RenderJob render, Callback cb) {
  auto r = followJob(
      store, events, job.id,
      [render, cb](const JobEvent& e) {
        if (!e.terminal()) return true;
        const Job& done = *e.job;
        if (done.status != JobStatus::kCompleted) {
          cb(errorResponse(unfinishedJobError(done)));
        } else {
          auto resp = render(done);
          resp->addHeader("X-Statim-Job-Id", std::to_string(done.id));
          cb(resp);
        }
        return false;
      },
      {}, &job, [](const JobEvent& e) { return e.terminal(); });
  if (!r) cb(errorResponse(r.error()));
}

}  // namespace statim::api
