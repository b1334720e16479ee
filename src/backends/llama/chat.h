// Chat messages -> one prompt, through the model's chat template (llama_chat_apply_template).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/llama/batch_session.h"
#include "backends/llama/llama_handles.h"
#include "statim/error.h"

namespace statim::llama {

// Checks params.messages: a non-empty list of {"role": system|user|assistant|tool, "content": string}.
Result<void> validateMessages(const nlohmann::json& params);

// `override_template` (manifest params.chat_template: a name such as "chatml" or a template)
// wins over the model's own. Errors say how to fix a model without a template.
Result<std::string> renderChat(const llama_model* model, const std::string& override_template,
                               const nlohmann::json& messages);

// The tokens a completion or chat job feeds the model: its prompt, or its messages rendered
// through the chat template (the manifest's, else the model's) with tools in the model's format.
Result<std::vector<llama_token>> jobPromptTokens(const llama_model* model, const ContextOptions& options,
                                                 std::string_view type, const std::string& prompt,
                                                 const nlohmann::json& params);

}  // namespace statim::llama
