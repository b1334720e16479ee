// `echo`: returns the prompt as the result text. For plumbing tests and API benchmarks.
// Params: delay_ms (0..600000; the job sleeps that long, cancellably), fail (a message: the job
// ends FAILED with it). Needs no model file.
#pragma once

#include "statim/backend.h"

namespace statim {

const Backend& echoBackend();

}  // namespace statim
