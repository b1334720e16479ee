#include "backends/llama/tokenize.h"

#include <climits>

namespace statim::llama {

Result<std::vector<llama_token>> tokenize(const llama_model* model, const std::string& text) {
  const llama_vocab* vocab = llama_model_get_vocab(model);
  int cap = static_cast<int>(text.size()) + 8;
  std::vector<llama_token> tokens(static_cast<size_t>(cap));
  int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(), cap, true, true);
  if (n < 0 && n != INT_MIN) {
    tokens.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(), -n, true, true);
  }
  if (n <= 0) return fail(Error::invalid("the prompt could not be tokenized", "prompt"));
  tokens.resize(static_cast<size_t>(n));
  return tokens;
}

}  // namespace statim::llama
