// Tool calling for chat jobs (params.tools, params.tool_choice, params.parallel_tool_calls, as in
// OpenAI's chat completions), in one prompt format that works with any chat model: the tools are
// described in a system message, and the model calls one by writing
//   <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>
// (the Hermes / Qwen format, which models trained on it write natively). Assistant messages with
// tool_calls and "tool" messages in the history are rendered in the same format.
//
// The calls are grammar-guarded: with tool_choice "required" or a named function the output must
// be calls (the arguments valid against each function's JSON schema); with "auto" the model may
// write text, but a call it starts is held to the grammar from its "<tool_call>" on (a lazy
// grammar), so a started call is always well-formed. "none" leaves the tools out.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "statim/error.h"

namespace statim::llama {

// What opens a call in the model's output (and, for "auto", switches the grammar on).
inline constexpr std::string_view kToolCallOpen = "<tool_call>";

// Checks params.tools / tool_choice / parallel_tool_calls (naming the field on error).
Result<void> validateTools(const nlohmann::json& params);

// Whether the job offers tools to the model (tools given and tool_choice is not "none").
bool toolsActive(const nlohmann::json& params);

// params.messages as the chat template gets them: with a system message describing the tools
// (when active), and tool calls / tool results written in the format above.
nlohmann::json messagesForTemplate(const nlohmann::json& params);

// The grammar that holds the model to well-formed calls (root rule "root"). For "auto" it applies
// from `trigger` on: generation is free until the output holds the trigger, then the grammar is
// fed the tokens from the one where the trigger starts (its root allows text before the "<").
// (libllama's own lazy grammar was measured at ~13 ms per token before its trigger on this
// machine, 50x the cost of a token: statim switches samplers itself instead.)
struct ToolGrammar {
  std::string gbnf;
  std::string trigger;  // empty: the grammar applies from the first token
};
Result<ToolGrammar> toolGrammar(const nlohmann::json& params);

// The model's output split into text and calls: calls in OpenAI's shape
// [{"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}}]. `id_prefix`
// makes the ids (call_<job>_<n>). Text after the first "<tool_call>" is not part of `text`.
struct ParsedOutput {
  std::string text;
  nlohmann::json tool_calls = nlohmann::json::array();
};
ParsedOutput parseToolCalls(const std::string& output, const std::string& id_prefix);

}  // namespace statim::llama
