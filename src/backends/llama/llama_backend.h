// `llama`: text generation with libllama from a GGUF file (memory-mapped).
//
// Manifest [params]: n_ctx (context per session, default 2048 or the model's if smaller),
// n_batch (prompt chunk, default 512), threads (default: the compute budget, compute.cores).
// Job params: max_tokens, temperature (0 = greedy), top_k, top_p, seed, stop.
#pragma once

#include "statim/backend.h"

namespace statim {

const Backend& llamaBackend();

}  // namespace statim
