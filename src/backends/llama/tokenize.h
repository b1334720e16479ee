// Text -> tokens with the model's vocabulary, as llama-server does it (BOS when the model wants
// one; special tokens in the text are parsed, so chat templates work).
#pragma once

#include <string>
#include <vector>

#include "backends/llama/llama_handles.h"
#include "statim/error.h"

namespace statim::llama {

Result<std::vector<llama_token>> tokenize(const llama_model* model, const std::string& text);

}  // namespace statim::llama
