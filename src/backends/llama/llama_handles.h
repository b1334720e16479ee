// RAII ownership of libllama's opaque handles.
#pragma once

#include <memory>

#include <llama.h>

namespace statim::llama {

struct ModelDeleter {
  void operator()(llama_model* m) const { llama_model_free(m); }
};
struct ContextDeleter {
  void operator()(llama_context* c) const { llama_free(c); }
};
struct SamplerDeleter {
  void operator()(llama_sampler* s) const { llama_sampler_free(s); }
};

using ModelPtr = std::unique_ptr<llama_model, ModelDeleter>;
using ContextPtr = std::unique_ptr<llama_context, ContextDeleter>;
using SamplerPtr = std::unique_ptr<llama_sampler, SamplerDeleter>;

// libllama's and libmtmd's log, into ours: warnings and errors only.
void ggmlLogToOurs(ggml_log_level level, const char* text, void* user_data);

// Loads ggml's CPU backends and initialises libllama once per process; routes its log to ours.
void initOnce();

}  // namespace statim::llama
