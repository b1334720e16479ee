// Tool calling for chat jobs (params.tools, params.tool_choice, params.parallel_tool_calls, as in
// OpenAI's chat completions), in the prompt format of the model's family (ToolFormat):
//   hermes  (any chat model; Hermes, Qwen): the tools described in a system message, a call written
//           <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>,
//           results given back in <tool_response> ... </tool_response>;
//   llama3  (Llama 3.1-3.3): a call is the JSON {"name": ..., "parameters": {...}} (after an
//           optional <|python_tag|>), results come back in "ipython" messages;
//   mistral (Mistral 7B v0.3, Nemo, Small, Mixtral): [AVAILABLE_TOOLS] [...] [/AVAILABLE_TOOLS],
//           calls written [TOOL_CALLS] [{"name": ..., "arguments": {...}}], results in
//           [TOOL_RESULTS] ... [/TOOL_RESULTS].
// The format comes from the manifest (params.tool_format) or from the model's chat template.
// Assistant messages with tool_calls and "tool" messages in the history are rendered in it.
//
// The calls are grammar-guarded: with tool_choice "required" or a named function the output must
// be calls (the arguments valid against each function's JSON schema); with "auto" the model may
// write text, but a call it starts is held to the grammar from its opening on (a lazy grammar),
// so a started call is always well-formed. "none" leaves the tools out.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "statim/error.h"

namespace statim::llama {

enum class ToolFormat { kHermes, kLlama3, kMistral };
std::string_view toString(ToolFormat f);  // "hermes", "llama3", "mistral"
// A manifest's params.tool_format: "hermes", "llama3", "mistral"; "auto" (or empty): nullopt.
std::optional<ToolFormat> parseToolFormat(std::string_view name);
// The format a chat template (Jinja text or a libllama template name) was trained with.
ToolFormat detectToolFormat(std::string_view chat_template);

// Checks params.tools / tool_choice / parallel_tool_calls (naming the field on error).
Result<void> validateTools(const nlohmann::json& params);

// Whether the job offers tools to the model (tools given and tool_choice is not "none").
bool toolsActive(const nlohmann::json& params);

// params.messages as the chat template gets them: with a system message describing the tools
// (when active), and tool calls / tool results written in the format.
nlohmann::json messagesForTemplate(const nlohmann::json& params, ToolFormat format);

// The grammar that holds the model to well-formed calls (root rule "root"). For "auto" it applies
// from `trigger` on: generation is free until the output holds the trigger, then the grammar is
// fed the tokens from the one where the trigger starts (its root allows text before the "<").
// (libllama's own lazy grammar was measured at ~13 ms per token before its trigger on this
// machine, 50x the cost of a token: statim switches samplers itself instead.)
struct ToolGrammar {
  std::string gbnf;
  std::string trigger;  // empty: the grammar applies from the first token
  std::string opener;   // the output from here on is calls, not text to stream
};
Result<ToolGrammar> toolGrammar(const nlohmann::json& params, ToolFormat format);

// The model's output split into text and calls: calls in OpenAI's shape
// [{"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}}]. `id_prefix`
// makes the ids (call_<job>_<n>). Text from the first call on is not part of `text`.
struct ParsedOutput {
  std::string text;
  nlohmann::json tool_calls = nlohmann::json::array();
};
ParsedOutput parseToolCalls(const std::string& output, const std::string& id_prefix, ToolFormat format);

}  // namespace statim::llama
