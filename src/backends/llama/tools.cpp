#include "backends/llama/tools.h"

#include <format>
#include <regex>
#include <set>

#include "backends/llama/json_grammar.h"
#include "backends/llama/sampling.h"

namespace statim::llama {
namespace {

constexpr std::string_view kClose = "</tool_call>";
constexpr size_t kMaxTools = 128;
constexpr int kMaxParallelCalls = 8;

// The tool_choice: "none", "auto", "required", or the name of the one function to call.
struct Choice {
  std::string mode = "auto";
  std::string function;
};

Choice choiceOf(const nlohmann::json& p) {
  Choice c;
  auto it = p.find("tool_choice");
  if (it == p.end() || it->is_null()) return c;
  if (it->is_string()) {
    c.mode = it->get<std::string>();
  } else {
    c.mode = "function";
    c.function = (*it)["function"]["name"].get<std::string>();
  }
  return c;
}

bool hasTools(const nlohmann::json& p) {
  auto it = p.find("tools");
  return it != p.end() && it->is_array() && !it->empty();
}

bool parallel(const nlohmann::json& p) {
  auto it = p.find("parallel_tool_calls");
  return it == p.end() || it->is_null() || it->get<bool>();
}

nlohmann::json argumentsSchema(const nlohmann::json& function) {
  auto it = function.find("parameters");
  if (it == function.end() || it->is_null()) return {{"type", "object"}};
  return *it;
}

// A tool call's arguments as the model writes them: the JSON value (a string holding JSON, as
// OpenAI clients send them back, is parsed).
nlohmann::json argumentsValue(const nlohmann::json& args) {
  if (!args.is_string()) return args;
  auto parsed = nlohmann::json::parse(args.get<std::string>(), nullptr, false);
  return parsed.is_discarded() ? args : parsed;
}

std::string callText(const std::string& name, const nlohmann::json& arguments) {
  auto dump = [](const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); };
  return std::format("{}\n{{\"name\":{},\"arguments\":{}}}\n{}", kToolCallOpen, dump(name),
                     dump(argumentsValue(arguments)), kClose);
}

std::string toolsPrompt(const nlohmann::json& p) {
  std::string out =
      "You can call functions to help answer. These are the functions, with their parameters as JSON "
      "schemas:\n<tools>\n";
  for (const auto& t : p["tools"]) out += t.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  out += "</tools>\n";
  out += std::format(
      "To call a function, write a JSON object with its name and arguments between {} and {}, like this:\n"
      "{}\n{{\"name\": \"<function name>\", \"arguments\": {{<the arguments>}}}}\n{}\n",
      kToolCallOpen, kClose, kToolCallOpen, kClose);
  Choice c = choiceOf(p);
  if (c.mode == "required") out += "You must call at least one function.\n";
  if (c.mode == "function") out += std::format("You must call the function '{}'.\n", c.function);
  if (!parallel(p)) out += "Call at most one function.\n";
  return out;
}

// The text before a call, without the whitespace that led up to it (as a stream holds it back).
std::string trimEnd(std::string_view s) {
  size_t b = s.find_last_not_of(" \t\r\n");
  return b == std::string_view::npos ? std::string() : std::string(s.substr(0, b + 1));
}

// A function's parameters schema placed at `at` (a JSON pointer) inside the calls' schema: its
// own "#..." references are made to point there.
void rebaseRefs(nlohmann::json& schema, const std::string& at) {
  if (schema.is_object()) {
    for (auto& [k, v] : schema.items()) {
      if (k == "$ref" && v.is_string() && v.get<std::string>().starts_with("#")) {
        v = "#" + at + v.get<std::string>().substr(1);
      } else {
        rebaseRefs(v, at);
      }
    }
  } else if (schema.is_array()) {
    for (auto& v : schema) rebaseRefs(v, at);
  }
}

}  // namespace

Result<void> validateTools(const nlohmann::json& p) {
  std::set<std::string> names;
  if (auto it = p.find("tools"); it != p.end() && !it->is_null()) {
    if (!it->is_array()) return fail(Error::invalid("'tools' must be a list of {type: function, function}", "tools"));
    if (it->size() > kMaxTools)
      return fail(Error::invalid(std::format("'tools' holds at most {} functions", kMaxTools), "tools"));
    static const std::regex kName("^[A-Za-z0-9_-]{1,64}$");
    for (size_t i = 0; i < it->size(); ++i) {
      const auto& t = (*it)[i];
      std::string f = std::format("tools[{}]", i);
      if (!t.is_object() || !t.contains("type") || t["type"] != "function" || !t.contains("function") ||
          !t["function"].is_object()) {
        return fail(
            Error::invalid(std::format("'{}' must be {{\"type\": \"function\", \"function\": {{...}}}}", f), f));
      }
      const auto& fn = t["function"];
      auto name = fn.find("name");
      if (name == fn.end() || !name->is_string() || !std::regex_match(name->get<std::string>(), kName)) {
        return fail(Error::invalid(std::format("'{}.function.name' must be 1 to 64 letters, digits, '_' or '-'", f),
                                   f + ".function.name"));
      }
      if (!names.insert(name->get<std::string>()).second) {
        return fail(
            Error::invalid(std::format("'{}.function.name': two tools are named '{}'", f, name->get<std::string>()),
                           f + ".function.name"));
      }
      if (auto d = fn.find("description"); d != fn.end() && !d->is_string()) {
        return fail(
            Error::invalid(std::format("'{}.function.description' must be a string", f), f + ".function.description"));
      }
      if (auto s = fn.find("parameters"); s != fn.end() && !s->is_null()) {
        if (!s->is_object()) {
          return fail(Error::invalid(std::format("'{}.function.parameters' must be a JSON schema object", f),
                                     f + ".function.parameters"));
        }
        if (auto g = jsonSchemaToGbnf(*s); !g) {
          return fail(Error::invalid(std::format("'{}.function.parameters': {}", f, g.error().message),
                                     f + ".function.parameters"));
        }
      }
    }
  }
  if (auto it = p.find("tool_choice"); it != p.end() && !it->is_null()) {
    if (it->is_string()) {
      std::string mode = *it;
      if (mode != "none" && mode != "auto" && mode != "required") {
        return fail(Error::invalid(
            std::format("'tool_choice' must be none, auto, required or {{\"type\": \"function\", \"function\": "
                        "{{\"name\": ...}}}} (got '{}')",
                        mode.substr(0, 32)),
            "tool_choice"));
      }
      if (mode == "required" && names.empty())
        return fail(Error::invalid("'tool_choice' required needs 'tools'", "tool_choice"));
    } else {
      if (!it->is_object() || !it->contains("type") || (*it)["type"] != "function" || !it->contains("function") ||
          !(*it)["function"].is_object() || !(*it)["function"].contains("name") ||
          !(*it)["function"]["name"].is_string()) {
        return fail(Error::invalid(
            "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}",
            "tool_choice"));
      }
      std::string name = (*it)["function"]["name"];
      if (!names.contains(name)) {
        return fail(Error::invalid(
            std::format("'tool_choice' names the function '{}', which is not in 'tools'", name.substr(0, 64)),
            "tool_choice"));
      }
    }
  }
  if (auto it = p.find("parallel_tool_calls"); it != p.end() && !it->is_null() && !it->is_boolean()) {
    return fail(Error::invalid("'parallel_tool_calls' must be true or false", "parallel_tool_calls"));
  }
  if (toolsActive(p) && (p.contains("grammar") || jsonResponseFormat(p))) {
    return fail(Error::invalid("give 'tools' or a 'grammar' / JSON 'response_format', not both (or tool_choice none)",
                               "tools"));
  }
  return ok();
}

bool toolsActive(const nlohmann::json& p) { return hasTools(p) && choiceOf(p).mode != "none"; }

nlohmann::json messagesForTemplate(const nlohmann::json& p) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& m : p["messages"]) {
    std::string role = m.value("role", "user");
    std::string content = m.contains("content") && m["content"].is_string() ? m["content"].get<std::string>() : "";
    if (role == "assistant" && m.contains("tool_calls") && m["tool_calls"].is_array()) {
      for (const auto& call : m["tool_calls"]) {
        const auto& fn = call.value("function", nlohmann::json::object());
        if (!content.empty()) content += "\n";
        content += callText(fn.value("name", ""), fn.value("arguments", nlohmann::json::object()));
      }
    } else if (role == "tool") {
      role = "user";
      content = std::format("<tool_response>\n{}\n</tool_response>", content);
    }
    out.push_back({{"role", role}, {"content", content}});
  }
  if (!toolsActive(p)) return out;
  std::string tools = toolsPrompt(p);
  if (!out.empty() && (out[0]["role"] == "system" || out[0]["role"] == "developer")) {
    out[0]["content"] = out[0]["content"].get<std::string>() + "\n\n" + tools;
  } else {
    out.insert(out.begin(), nlohmann::json{{"role", "system"}, {"content", tools}});
  }
  return out;
}

Result<ToolGrammar> toolGrammar(const nlohmann::json& p) {
  Choice c = choiceOf(p);
  std::vector<const nlohmann::json*> functions;  // the ones the model may call
  for (const auto& t : p["tools"]) {
    if (c.mode != "function" || t["function"]["name"] == c.function) functions.push_back(&t["function"]);
  }
  nlohmann::ordered_json calls = nlohmann::ordered_json::array();
  for (const nlohmann::json* f : functions) {
    const auto& fn = *f;
    // Each function's schema is nested in the calls' schema: its "#..." references follow it.
    nlohmann::json arguments = argumentsSchema(fn);
    rebaseRefs(arguments, functions.size() == 1 ? std::string("/properties/arguments")
                                                : std::format("/anyOf/{}/properties/arguments", calls.size()));
    nlohmann::ordered_json schema = {
        {"type", "object"},
        {"properties",
         {{"name", {{"const", fn["name"]}}}, {"arguments", nlohmann::ordered_json::parse(arguments.dump())}}},
        {"required", {"name", "arguments"}},
        {"additionalProperties", false}};
    calls.push_back(std::move(schema));
  }
  nlohmann::ordered_json schema = calls.size() == 1 ? calls[0] : nlohmann::ordered_json{{"anyOf", calls}};
  auto json = jsonSchemaToGbnf(schema);
  if (!json) return fail(Error::invalid(json.error().message, "tools"));
  std::string body = *json;
  if (!body.starts_with("root ::= ")) return fail(Error::internal("unexpected grammar from the schema converter"));
  body = "statim-call ::= " + body.substr(9);
  ToolGrammar g;
  std::string repeat = parallel(p) ? std::format(" (\"\\n\" statim-one){{0,{}}}", kMaxParallelCalls - 1) : "";
  // "auto": free text until the model opens a call; the grammar holds it from there (fed from
  // the token where the call starts, which may begin with text before the "<").
  const bool lazy = c.mode == "auto";
  g.gbnf = std::format(
      "root ::= {}statim-one{}\n"
      "statim-one ::= \"{}\" \"\\n\"? statim-call \"\\n\"? \"{}\"\n{}",
      lazy ? "[^<]* " : "", repeat, kToolCallOpen, kClose, body);
  if (lazy) g.trigger = kToolCallOpen;
  return g;
}

ParsedOutput parseToolCalls(const std::string& output, const std::string& id_prefix) {
  ParsedOutput out;
  size_t at = output.find(kToolCallOpen);
  if (at == std::string::npos) {
    out.text = output;
    return out;
  }
  out.text = trimEnd(std::string_view(output).substr(0, at));
  while (at != std::string::npos) {
    size_t begin = at + kToolCallOpen.size();
    size_t end = output.find(kClose, begin);
    if (end == std::string::npos) break;  // cut off (max_tokens): not a call
    auto call = nlohmann::json::parse(output.substr(begin, end - begin), nullptr, false);
    if (!call.is_object() || !call.contains("name") || !call["name"].is_string()) break;
    nlohmann::json args = call.value("arguments", nlohmann::json::object());
    out.tool_calls.push_back({{"id", std::format("{}_{}", id_prefix, out.tool_calls.size())},
                              {"type", "function"},
                              {"function",
                               {{"name", call["name"]},
                                {"arguments", args.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)}}}});
    at = output.find(kToolCallOpen, end + kClose.size());
  }
  return out;
}

}  // namespace statim::llama
