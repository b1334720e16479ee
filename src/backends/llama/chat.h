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

// Checks params.messages: a non-empty list of {"role": system|user|assistant|tool, "content"}, the
// content a string or a list of parts: {"type": "text", "text"}, {"type": "image" | "audio",
// "input": "<the name of one of the job's input files>"}.
Result<void> validateMessages(const nlohmann::json& params);

// `override_template` (manifest params.chat_template: a name such as "chatml" or a template)
// wins over the model's own. Errors say how to fix a model without a template.
Result<std::string> renderChat(const llama_model* model, const std::string& override_template,
                               const nlohmann::json& messages);

// What a completion or chat job feeds the model: its prompt, or its messages rendered through the
// chat template (the manifest's, else the model's) with tools in the model's format, and the
// images / audio its messages name among `inputs` (the job's input files).
Result<Prompt> jobPrompt(const llama_model* model, const ContextOptions& options, std::string_view type,
                         const std::string& prompt, const nlohmann::json& params, const std::vector<JobFile>& inputs);

}  // namespace statim::llama
