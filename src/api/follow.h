// Following a job for a client: its current state first, then each live event, until it ends.
// Used by the SSE route and by the OpenAI routes (streaming or waiting for the result).
#pragma once

#include <functional>

#include <trantor/net/EventLoop.h>

#include "api/http_util.h"
#include "events/event_bus.h"
#include "store/job_store.h"

namespace statim::api {

// The sink receives, in order: one "state" event (job = the job now, data.text = text produced
// so far), then live events ("started", "token", ...), ending with a terminal event whose `job`
// is the final job (synthesised at once when the job had already ended). It returns false to
// stop following (client gone). Calls are serialised; they come from store or worker threads (or `on`)
// and must not block. Returns kNotFound (and calls nothing) for an unknown job. With `on` (the
// client connection's loop), the live events reach the sink there, off the threads that publish
// them (workers, the store's writer). Returns the subscription, which the caller may end early
// with `events.unsubscribe` (harmless once the job has ended). `known`: the job as the caller
// just had it from the store (as submitted); the first state is then built from it, not read
// again, unless the job has ended meanwhile. `wants`: which live events the sink gets (default:
// all); the first state and the terminal event come whatever it says.
using FollowSink = std::function<bool(const JobEvent&)>;
Result<EventBus::Token> followJob(JobStore& store, EventBus& events, JobId id, FollowSink sink,
                                  EventBus::Executor on = {}, const Job* known = nullptr, EventBus::Filter wants = {});

// Waits for the job to end, at most `seconds`, without blocking `loop` (the client connection's
// loop, which this must be called on). `done` is called once, on `loop`: with the ended job as
// stored, or, when the time runs out first, with the job as it is then (read from the store).
// kNotFound (and `done` not called) for an unknown job. `known` as for followJob.
using WaitDone = std::function<void(Result<Job>)>;
Result<void> awaitJobEnd(JobStore& store, EventBus& events, JobId id, double seconds, trantor::EventLoop* loop,
                         WaitDone done, const Job* known = nullptr);

// What a route that waited for a job answers when it ended without completing: 409 `cancelled`,
// or the backend's failure.
Error unfinishedJobError(const Job& job);

// Follows `job` (as submitted: no store read) and answers `cb` once it ends: render(job) with
// X-Statim-Job-Id when it completed, else unfinishedJobError. For routes that wait for their job.
using RenderJob = std::function<drogon::HttpResponsePtr(const Job&)>;
void answerWhenEnded(JobStore& store, EventBus& events, const Job& job, RenderJob render, Callback cb);

}  // namespace statim::api
