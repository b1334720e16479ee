#include "backends/llama/tools.h"

#include <gtest/gtest.h>

namespace statim::llama {
namespace {

nlohmann::json weather() {
  return nlohmann::json::parse(R"({"type": "function", "function": {"name": "get_weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})");
}

TEST(ToolCalls, OutputWithoutACallIsAllText) {
  auto p = parseToolCalls("Just text, no <tool call here.", "call_1", ToolFormat::kHermes);
  EXPECT_EQ(p.text, "Just text, no <tool call here.");
  EXPECT_TRUE(p.tool_calls.empty());
}

TEST(ToolCalls, CallsAreSplitFromTheTextInOpenAisShape) {
  auto p = parseToolCalls(
      "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
      "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>",
      "call_9", ToolFormat::kHermes);
  EXPECT_EQ(p.text, "Let me look.");  // the whitespace before the call is dropped
  ASSERT_EQ(p.tool_calls.size(), 2u);
  EXPECT_EQ(p.tool_calls[0]["id"], "call_9_0");
  EXPECT_EQ(p.tool_calls[0]["type"], "function");
  EXPECT_EQ(p.tool_calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(p.tool_calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
  EXPECT_EQ(p.tool_calls[1]["function"]["arguments"], "{}");
}

TEST(ToolCalls, ACutOffOrMalformedCallIsNotACall) {
  EXPECT_TRUE(parseToolCalls("<tool_call>{\"name\": \"f\", \"argu", "c", ToolFormat::kHermes).tool_calls.empty());
  EXPECT_TRUE(parseToolCalls("<tool_call>not json</tool_call>", "c", ToolFormat::kHermes).tool_calls.empty());
  auto p = parseToolCalls("<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call><tool_call>{\"na", "c",
                          ToolFormat::kHermes);
  EXPECT_EQ(p.tool_calls.size(), 1u);  // the complete one is kept
}

TEST(ToolCalls, TheTemplateGetsTheToolsAndTheHistoryInOneFormat) {
  nlohmann::json p = {{"tools", {weather()}}, {"messages", nlohmann::json::parse(R"([
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Weather?"},
      {"role": "assistant", "content": "", "tool_calls": [{"id": "a", "type": "function",
          "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
      {"role": "tool", "tool_call_id": "a", "content": "cold"}])")}};
  auto m = messagesForTemplate(p, ToolFormat::kHermes);
  ASSERT_EQ(m.size(), 4u);
  std::string system = m[0]["content"];
  EXPECT_TRUE(system.starts_with("Be brief.\n\n")) << system;
  EXPECT_NE(system.find("\"name\":\"get_weather\""), std::string::npos) << system;
  EXPECT_NE(system.find("<tool_call>"), std::string::npos);
  EXPECT_EQ(m[2]["content"], "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}\n</tool_call>");
  EXPECT_EQ(m[3]["role"], "user");
  EXPECT_EQ(m[3]["content"], "<tool_response>\ncold\n</tool_response>");
  // tool_choice none: no tool description; without a system message one is added first.
  p["tool_choice"] = "none";
  EXPECT_EQ(messagesForTemplate(p, ToolFormat::kHermes)[0]["content"], "Be brief.");
  p["tool_choice"] = "required";
  p["messages"].erase(0);
  auto required = messagesForTemplate(p, ToolFormat::kHermes);
  EXPECT_EQ(required[0]["role"], "system");
  EXPECT_NE(required[0]["content"].get<std::string>().find("You must call at least one function."), std::string::npos);
}

TEST(ToolCalls, TheGrammarStartsAtACallForRequiredAndLazilyForAuto) {
  nlohmann::json p = {{"tools", {weather()}}, {"tool_choice", "required"}, {"parallel_tool_calls", false}};
  auto g = toolGrammar(p, ToolFormat::kHermes);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_TRUE(g->gbnf.starts_with("root ::= statim-one\n")) << g->gbnf;
  EXPECT_NE(g->gbnf.find("statim-call ::= "), std::string::npos);
  EXPECT_NE(g->gbnf.find("get_weather"), std::string::npos) << g->gbnf;
  EXPECT_TRUE(g->trigger.empty());
  p["tool_choice"] = "auto";
  p["parallel_tool_calls"] = true;
  g = toolGrammar(p, ToolFormat::kHermes);
  ASSERT_TRUE(g);
  EXPECT_NE(g->gbnf.find("{0,7}"), std::string::npos) << "up to 8 calls";
  EXPECT_EQ(g->trigger, "<tool_call>");
  EXPECT_TRUE(g->gbnf.starts_with("root ::= [^<]* statim-one")) << g->gbnf;
}

TEST(ToolCalls, ReferencesInAFunctionsSchemaFollowItIntoTheCallsGrammar) {
  // As Pydantic (and the OpenAI SDK's pydantic_function_tool) write them: $defs and $ref.
  auto fn = nlohmann::json::parse(R"({"type": "function", "function": {"name": "locate", "parameters": {
      "type": "object", "properties": {"where": {"$ref": "#/$defs/Loc"}}, "required": ["where"],
      "$defs": {"Loc": {"type": "object", "properties": {"city": {"enum": ["Paris"]}}, "required": ["city"]}}}}})");
  nlohmann::json p = {{"tools", {fn}}, {"tool_choice", "required"}};
  ASSERT_TRUE(validateTools(p));
  auto one = toolGrammar(p, ToolFormat::kHermes);
  ASSERT_TRUE(one) << one.error().message;
  p["tools"].push_back(weather());  // two functions: the schemas sit under anyOf
  auto two = toolGrammar(p, ToolFormat::kHermes);
  ASSERT_TRUE(two) << two.error().message;
  EXPECT_NE(two->gbnf.find("Paris"), std::string::npos);
}

TEST(ToolCalls, FieldsOfTheWrongTypeAreRefusedNotThrown) {
  for (const char* json : {R"({"tools": [{"type": 1, "function": {"name": "f"}}]})",
                           R"({"tools": [{"type": "function", "function": {"name": "f"}}],
                               "tool_choice": {"type": 1, "function": {"name": "f"}}})",
                           R"({"tools": [{"type": "function", "function": "f"}]})",
                           R"({"tools": [{"type": "function", "function": {"name": 5}}]})"}) {
    auto p = nlohmann::json::parse(json);
    Result<void> r = ok();
    EXPECT_NO_THROW(r = validateTools(p)) << json;
    EXPECT_FALSE(r) << json;
  }
  // A null response_format is no JSON format.
  auto p =
      nlohmann::json::parse(R"({"tools": [{"type": "function", "function": {"name": "f"}}], "response_format": null})");
  EXPECT_NO_THROW(EXPECT_TRUE(validateTools(p)));
}

TEST(ToolCalls, ValidationNamesTheField) {
  auto bad = [](const char* json) {
    auto r = validateTools(nlohmann::json::parse(json));
    return r ? std::string("ok") : r.error().field + ": " + r.error().message;
  };
  EXPECT_EQ(bad(R"({"tools": [{"type": "function", "function": {"name": "a b"}}]})"),
            "tools[0].function.name: 'tools[0].function.name' must be 1 to 64 letters, digits, '_' or '-'");
  EXPECT_EQ(bad(R"({"tool_choice": "required"})"), "tool_choice: 'tool_choice' required needs 'tools'");
  EXPECT_EQ(bad(R"({"tools": [{"type": "function", "function": {"name": "f"}}], "grammar": "root ::= \"x\""})"),
            "tools: give 'tools' or a 'grammar' / JSON 'response_format', not both (or tool_choice none)");
  EXPECT_EQ(bad(R"({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none",
                    "grammar": "root ::= \"x\""})"),
            "ok");
}

TEST(ToolFormats, TheFormatComesFromTheChatTemplate) {
  // Excerpts of the Jinja templates in the GGUFs of each family, and libllama's template names.
  EXPECT_EQ(detectToolFormat("{%- if tools %}...{{- '<|python_tag|>' }}...<|eom_id|>"), ToolFormat::kLlama3);
  EXPECT_EQ(detectToolFormat("{{- '<|start_header_id|>ipython<|end_header_id|>' }}"), ToolFormat::kLlama3);
  EXPECT_EQ(detectToolFormat("llama3"), ToolFormat::kLlama3);
  EXPECT_EQ(detectToolFormat("{{- '[AVAILABLE_TOOLS] [' }}...{{- '[TOOL_CALLS] [' }}"), ToolFormat::kMistral);
  EXPECT_EQ(detectToolFormat("mistral-v7-tekken"), ToolFormat::kMistral);
  EXPECT_EQ(detectToolFormat("{% for tool in tools %}<tool_call>...<|im_start|>"), ToolFormat::kHermes);
  EXPECT_EQ(detectToolFormat("chatml"), ToolFormat::kHermes);
  EXPECT_EQ(detectToolFormat(""), ToolFormat::kHermes);
  EXPECT_EQ(parseToolFormat("mistral"), ToolFormat::kMistral);
  EXPECT_EQ(parseToolFormat("auto"), std::nullopt);
  EXPECT_EQ(toString(ToolFormat::kLlama3), "llama3");
}

nlohmann::json history() {
  return {{"tools", {weather()}}, {"messages", nlohmann::json::parse(R"([
      {"role": "user", "content": "Weather?"},
      {"role": "assistant", "content": "", "tool_calls": [
          {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
          {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
      {"role": "tool", "tool_call_id": "a", "content": "cold"}])")}};
}

TEST(ToolFormats, Llama3CallsAreJsonWithParametersAndResultsComeFromIpython) {
  auto m = messagesForTemplate(history(), ToolFormat::kLlama3);
  ASSERT_EQ(m.size(), 4u);
  std::string system = m[0]["content"];
  EXPECT_NE(system.find("\"parameters\": dictionary of argument name and its value"), std::string::npos) << system;
  EXPECT_NE(system.find("\"name\":\"get_weather\""), std::string::npos) << system;
  EXPECT_EQ(m[2]["content"],
            "{\"name\":\"get_weather\",\"parameters\":{\"city\":\"Oslo\"}}\n"
            "{\"name\":\"get_weather\",\"parameters\":{\"city\":\"Rome\"}}");
  EXPECT_EQ(m[3], (nlohmann::json{{"role", "ipython"}, {"content", "cold"}}));
  auto p = parseToolCalls(
      "I will check.<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}};"
      " {\"name\":\"get_weather\",\"parameters\":{\"city\":\"Oslo\"}}\n{\"name\": \"cut",
      "call_3", ToolFormat::kLlama3);
  EXPECT_EQ(p.text, "I will check.");
  ASSERT_EQ(p.tool_calls.size(), 2u);  // the cut-off third is not a call
  EXPECT_EQ(p.tool_calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
  EXPECT_EQ(p.tool_calls[1]["id"], "call_3_1");
  EXPECT_TRUE(parseToolCalls("{\"weather\": 1} is JSON, not a call", "c", ToolFormat::kLlama3).tool_calls.empty());
  nlohmann::json required = history();
  required["tool_choice"] = "required";
  auto g = toolGrammar(required, ToolFormat::kLlama3);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_TRUE(g->gbnf.starts_with("root ::= statim-call (\"\\n\" statim-call){0,7}\n")) << g->gbnf;
  EXPECT_NE(g->gbnf.find("parameters"), std::string::npos);
  EXPECT_EQ(g->opener, "{");
  EXPECT_TRUE(g->trigger.empty());
}

TEST(ToolFormats, MistralCallsAreOneListAfterTOOL_CALLS) {
  auto m = messagesForTemplate(history(), ToolFormat::kMistral);
  ASSERT_EQ(m.size(), 4u);
  std::string system = m[0]["content"];
  EXPECT_TRUE(system.starts_with("[AVAILABLE_TOOLS] [{\"function\":")) << system;
  EXPECT_NE(system.find(" [/AVAILABLE_TOOLS]\n"), std::string::npos) << system;
  EXPECT_EQ(m[2]["content"],
            "[TOOL_CALLS] [{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}, "
            "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Rome\"}}]");
  EXPECT_EQ(m[3]["role"], "user");
  EXPECT_EQ(m[3]["content"], "[TOOL_RESULTS] {\"call_id\":\"a\",\"content\":\"cold\"} [/TOOL_RESULTS]");
  auto p = parseToolCalls(
      "Sure. [TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}},"
      "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]",
      "call_4", ToolFormat::kMistral);
  EXPECT_EQ(p.text, "Sure.");
  ASSERT_EQ(p.tool_calls.size(), 2u);
  EXPECT_EQ(p.tool_calls[1]["function"]["arguments"], "{\"city\":\"Oslo\"}");
  // The marker written as a special token is not in the text: the list alone is the calls.
  EXPECT_EQ(
      parseToolCalls("[{\"name\": \"get_weather\", \"arguments\": {}}]", "c", ToolFormat::kMistral).tool_calls.size(),
      1u);
  nlohmann::json one = history();
  one["parallel_tool_calls"] = false;
  auto g = toolGrammar(one, ToolFormat::kMistral);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_TRUE(g->gbnf.starts_with("root ::= [^\\x5B]* \"[\" statim-call \"]\"\n")) << g->gbnf;
  EXPECT_EQ(g->trigger, "[{\"name\"");
}

}  // namespace
}  // namespace statim::llama
