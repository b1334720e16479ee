// Following a job for a client: its current state first, then each live event, until it ends.
// Used by the SSE route and by the OpenAI routes (streaming or waiting for the result).
#pragma once

#include <functional>

#include "events/event_bus.h"
#include "store/job_store.h"

namespace statim::api {

// The sink receives, in order: one "state" event (job = the job now, data.text = text produced
// so far), then live events ("started", "token", ...), ending with a terminal event whose `job`
// is the final job (synthesised at once when the job had already ended). It returns false to
// stop following (client gone). Calls are serialised; they come from store or worker threads (or `on`)
// and must not block. Returns kNotFound (and calls nothing) for an unknown job. With `on` (the
// client connection's loop), the live events reach the sink there, off the threads that publish
// them (workers, the store's writer).
using FollowSink = std::function<bool(const JobEvent&)>;
Result<void> followJob(JobStore& store, EventBus& events, JobId id, FollowSink sink, EventBus::Executor on = {});

// What a route that waited for a job answers when it ended without completing: 409 `cancelled`,
// or the backend's failure.
Error unfinishedJobError(const Job& job);

}  // namespace statim::api
