#include "backends/llama/tokenize.h"

#include <algorithm>
#include <climits>

namespace statim::llama {

Result<std::vector<llama_token>> tokenize(const llama_model* model, const std::string& text, bool add_special) {
  const llama_vocab* vocab = llama_model_get_vocab(model);
  int cap = static_cast<int>(text.size()) + 8;
  std::vector<llama_token> tokens(static_cast<size_t>(cap));
  int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(), cap, add_special, true);
  if (n < 0 && n != INT_MIN) {
    tokens.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(), -n, add_special, true);
  }
  if (n < 0 || (n == 0 && add_special)) return fail(Error::invalid("the prompt could not be tokenized", "prompt"));
  tokens.resize(static_cast<size_t>(n));
  return tokens;
}

std::string tokenPiece(const llama_vocab* vocab, llama_token tok) {
  std::string buf(64, '\0');
  int n = llama_token_to_piece(vocab, tok, buf.data(), static_cast<int>(buf.size()), 0, false);
  if (n < 0) {
    buf.resize(static_cast<size_t>(-n));
    n = llama_token_to_piece(vocab, tok, buf.data(), static_cast<int>(buf.size()), 0, false);
  }
  buf.resize(static_cast<size_t>(std::max(n, 0)));
  return buf;
}

}  // namespace statim::llama
