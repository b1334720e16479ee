// Text -> tokens with the model's vocabulary, as llama-server does it (BOS when the model wants
// one; special tokens in the text are parsed, so chat templates work).
#pragma once

#include <string>
#include <vector>

#include "backends/llama/llama_handles.h"
#include "statim/error.h"

namespace statim::llama {

// `add_special`: BOS (and EOS) where the model wants them; special tokens in the text are parsed.
Result<std::vector<llama_token>> tokenize(const llama_model* model, const std::string& text, bool add_special = true);
// One token's text (bytes: a piece may be part of a UTF-8 character).
std::string tokenPiece(const llama_vocab* vocab, llama_token tok);

}  // namespace statim::llama
