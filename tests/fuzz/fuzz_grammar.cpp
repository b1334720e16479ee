// Structured output: a JSON Schema (response_format) converted to GBNF by statim, and any GBNF a
// job may send, through statim's checks and libllama's grammar parser (as a job's sampler is
// built) with a real vocabulary. Invariant: every grammar statim generates from a schema is one
// libllama accepts.
//   STATIM_FUZZ_GGUF   a GGUF whose vocabulary is used (default: tiny.gguf beside the binary)
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <llama.h>
#include <nlohmann/json.hpp>

#include "backends/llama/json_grammar.h"
#include "backends/llama/sampling.h"
#include "fuzz_util.h"

using namespace statim;

namespace {

const llama_model* model() {
  static llama_model* loaded = [] {
    llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
    llama_backend_init();
    const char* env = std::getenv("STATIM_FUZZ_GGUF");
    std::string path = env ? env : "tiny.gguf";
    auto params = llama_model_default_params();
    params.vocab_only = true;
    llama_model* m = llama_model_load_from_file(path.c_str(), params);
    if (!m) {
      std::fprintf(stderr, "fuzz_grammar: cannot load %s (set STATIM_FUZZ_GGUF)\n", path.c_str());
      std::abort();
    }
    return m;
  }();
  return loaded;
}

bool llamaAccepts(const std::string& gbnf) {
  llama_sampler* s = llama_sampler_init_grammar(llama_model_get_vocab(model()), gbnf.c_str(), "root");
  if (!s) return false;
  llama_sampler_free(s);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto schema = nlohmann::ordered_json::parse(text, nullptr, false);
    if (schema.is_discarded()) return 0;
    auto gbnf = llama::jsonSchemaToGbnf(schema);
    if (gbnf) {
      fuzz::require(llamaAccepts(*gbnf), "libllama accepts the grammar made from a schema");
    } else {
      fuzz::require(!gbnf.error().message.empty(), "a refused schema says why");
    }
  } else {
    // As a job's params.grammar: statim's checks first, then libllama's parser.
    llama::Sampling sampling;
    sampling.grammar = text;
    (void)llama::makeSampler(model(), sampling);
  }
  return 0;
}
