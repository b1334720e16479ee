#include "backends/llama/tools.h"

#include <format>
#include <regex>
#include <set>

#include "backends/llama/json_grammar.h"
#include "backends/llama/sampling.h"

namespace statim::llama {
namespace {

constexpr std::string_view kHermesOpen = "<tool_call>";
// What opens a call in "auto" mode (and switches the grammar on) in the formats without a tag.
constexpr std::string_view kLlama3Open = "{\"name\"";
constexpr std::string_view kMistralOpen = "[{\"name\"";
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

// Whether a function is declared strict (its arguments must follow its schema exactly).
bool strictTool(const nlohmann::json& function) {
  auto it = function.find("strict");
  return it != function.end() && it->is_boolean() && it->get<bool>();
}

// The schema a call's arguments are held to: the function's parameters; for a function that is not
// strict and whose schema uses keywords the grammar cannot hold (pattern, uniqueItems, ...), any
// object (the client's own validator has the last word, as with OpenAI's non-strict tools).
nlohmann::json argumentsSchema(const nlohmann::json& function) {
  auto it = function.find("parameters");
  if (it == function.end() || it->is_null()) return {{"type", "object"}};
  if (!strictTool(function)) {
    if (auto g = jsonSchemaToGbnf(*it); !g && isUnsupportedSchemaError(g.error())) return {{"type", "object"}};
  }
  return *it;
}

// A tool call's arguments as the model writes them: the JSON value (a string holding JSON, as
// OpenAI clients send them back, is parsed).
nlohmann::json argumentsValue(const nlohmann::json& args) {
  if (!args.is_string()) return args;
  auto parsed = nlohmann::json::parse(args.get<std::string>(), nullptr, false);
  return parsed.is_discarded() ? args : parsed;
}

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// The key a format's calls give their arguments under.
std::string_view argumentsKey(ToolFormat f) { return f == ToolFormat::kLlama3 ? "parameters" : "arguments"; }

// One call as the model writes it (mistral's calls of one turn share one list: see assistantText).
std::string callText(ToolFormat f, const std::string& name, const nlohmann::json& arguments) {
  std::string call =
      std::format("{{\"name\":{},\"{}\":{}}}", dump(name), argumentsKey(f), dump(argumentsValue(arguments)));
  return f == ToolFormat::kHermes ? std::format("{}\n{}\n{}", kHermesOpen, call, kClose) : call;
}

// An assistant turn that called: its text, then its calls in the format.
std::string assistantText(ToolFormat f, std::string content, const nlohmann::json& calls) {
  std::vector<std::string> texts;
  for (const auto& call : calls) {
    const auto& fn = call.value("function", nlohmann::json::object());
    texts.push_back(callText(f, fn.value("name", ""), fn.value("arguments", nlohmann::json::object())));
  }
  if (texts.empty()) return content;
  if (!content.empty()) content += "\n";
  if (f == ToolFormat::kMistral) {
    content += "[TOOL_CALLS] [";
    for (size_t i = 0; i < texts.size(); ++i) content += (i ? ", " : "") + texts[i];
    return content + "]";
  }
  for (size_t i = 0; i < texts.size(); ++i) content += (i ? "\n" : "") + texts[i];
  return content;
}

std::string toolsPrompt(const nlohmann::json& p, ToolFormat f) {
  std::string out;
  if (f == ToolFormat::kHermes) {
    out =
        "You can call functions to help answer. These are the functions, with their parameters as JSON "
        "schemas:\n<tools>\n";
    for (const auto& t : p["tools"]) out += dump(t) + "\n";
    out += "</tools>\n";
    out += std::format(
        "To call a function, write a JSON object with its name and arguments between {} and {}, like this:\n"
        "{}\n{{\"name\": \"<function name>\", \"arguments\": {{<the arguments>}}}}\n{}\n",
        kHermesOpen, kClose, kHermesOpen, kClose);
  } else if (f == ToolFormat::kLlama3) {
    out =
        "You have access to the following functions. To call a function, respond with a JSON object of the form "
        "{\"name\": function name, \"parameters\": dictionary of argument name and its value}, and nothing "
        "else. Do not use variables.\n\n";
    for (const auto& t : p["tools"]) out += dump(t) + "\n\n";
  } else {
    out = "[AVAILABLE_TOOLS] " + dump(p["tools"]) + " [/AVAILABLE_TOOLS]\n" +
          "To call functions, write [TOOL_CALLS] and a JSON list of calls: [{\"name\": function name, "
          "\"arguments\": {argument name: value}}].\n";
  }
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
        if (auto g = jsonSchemaToGbnf(*s); !g && (strictTool(fn) || !isUnsupportedSchemaError(g.error()))) {
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

nlohmann::json messagesForTemplate(const nlohmann::json& p, ToolFormat f) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& m : p["messages"]) {
    std::string role = m.value("role", "user");
    std::string content = m.contains("content") && m["content"].is_string() ? m["content"].get<std::string>() : "";
    if (role == "assistant" && m.contains("tool_calls") && m["tool_calls"].is_array()) {
      content = assistantText(f, std::move(content), m["tool_calls"]);
    } else if (role == "tool") {
      if (f == ToolFormat::kHermes) {
        role = "user";
        content = std::format("<tool_response>\n{}\n</tool_response>", content);
      } else if (f == ToolFormat::kLlama3) {
        role = "ipython";  // (Llama 3's role for what a tool returned)
      } else {
        role = "user";
        content = std::format("[TOOL_RESULTS] {} [/TOOL_RESULTS]",
                              dump({{"call_id", m.value("tool_call_id", "")}, {"content", content}}));
      }
    }
    out.push_back({{"role", role}, {"content", content}});
  }
  if (!toolsActive(p)) return out;
  std::string tools = toolsPrompt(p, f);
  if (!out.empty() && (out[0]["role"] == "system" || out[0]["role"] == "developer")) {
    out[0]["content"] = out[0]["content"].get<std::string>() + "\n\n" + tools;
  } else {
    out.insert(out.begin(), nlohmann::json{{"role", "system"}, {"content", tools}});
  }
  return out;
}

Result<ToolGrammar> toolGrammar(const nlohmann::json& p, ToolFormat f) {
  Choice c = choiceOf(p);
  std::vector<const nlohmann::json*> functions;  // the ones the model may call
  for (const auto& t : p["tools"]) {
    if (c.mode != "function" || t["function"]["name"] == c.function) functions.push_back(&t["function"]);
  }
  nlohmann::ordered_json calls = nlohmann::ordered_json::array();
  for (const nlohmann::json* function : functions) {
    const auto& fn = *function;
    // Each function's schema is nested in the calls' schema: its "#..." references follow it.
    nlohmann::json arguments = argumentsSchema(fn);
    rebaseRefs(arguments, functions.size() == 1
                              ? std::format("/properties/{}", argumentsKey(f))
                              : std::format("/anyOf/{}/properties/{}", calls.size(), argumentsKey(f)));
    nlohmann::ordered_json schema = {
        {"type", "object"},
        {"properties",
         {{"name", {{"const", fn["name"]}}},
          {std::string(argumentsKey(f)), nlohmann::ordered_json::parse(arguments.dump())}}},
        {"required", {"name", std::string(argumentsKey(f))}},
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
  const int more = parallel(p) ? kMaxParallelCalls - 1 : 0;
  // "auto": free text until the model opens a call; the grammar holds it from there (fed from
  // the token where the call starts, which may begin with text before the opening).
  const bool lazy = c.mode == "auto";
  if (f == ToolFormat::kHermes) {
    g.gbnf = std::format(
        "root ::= {}statim-one{}\n"
        "statim-one ::= \"{}\" \"\\n\"? statim-call \"\\n\"? \"{}\"\n{}",
        lazy ? "[^<]* " : "", more ? std::format(" (\"\\n\" statim-one){{0,{}}}", more) : "", kHermesOpen, kClose,
        body);
    g.opener = kHermesOpen;
  } else if (f == ToolFormat::kLlama3) {
    g.gbnf = std::format("root ::= {}statim-call{}\n{}", lazy ? "[^{]* " : "",
                         more ? std::format(" (\"\\n\" statim-call){{0,{}}}", more) : "", body);
    g.opener = lazy ? kLlama3Open : "{";  // (required: the output is calls from its first character)
  } else {
    g.gbnf = std::format("root ::= {}\"[\" statim-call{} \"]\"\n{}", lazy ? "[^\\x5B]* " : "",
                         more ? std::format(" (\", \" statim-call){{0,{}}}", more) : "", body);
    g.opener = lazy ? kMistralOpen : "[";
  }
  if (lazy) g.trigger = g.opener;
  return g;
}

namespace {

// Where the JSON object or array starting at `at` ends (one past its last character), or npos
// when it is cut off.
size_t jsonEnd(std::string_view s, size_t at) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = at; i < s.size(); ++i) {
    char ch = s[i];
    if (in_string) {
      if (ch == '\\')
        ++i;
      else if (ch == '"')
        in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '{' || ch == '[') {
      ++depth;
    } else if (ch == '}' || ch == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

size_t skipSpace(std::string_view s, size_t at) {
  while (at < s.size() && (s[at] == ' ' || s[at] == '\n' || s[at] == '\t' || s[at] == '\r')) ++at;
  return at;
}

// A call object {"name", "arguments" | "parameters"} in OpenAI's shape; null when it is not one.
nlohmann::json openAiCall(const nlohmann::json& call, const std::string& id) {
  if (!call.is_object() || !call.contains("name") || !call["name"].is_string()) return nullptr;
  nlohmann::json args =
      call.contains("arguments") ? call["arguments"] : call.value("parameters", nlohmann::json::object());
  return {{"id", id}, {"type", "function"}, {"function", {{"name", call["name"]}, {"arguments", dump(args)}}}};
}

// The text before the first call (as `opening` finds it), without the whitespace and the marker
// (`marker`, e.g. [TOOL_CALLS], when the model wrote it as text) that led up to it.
std::string textBefore(std::string_view output, size_t at, std::string_view marker) {
  std::string text = trimEnd(output.substr(0, at));
  if (!marker.empty() && text.ends_with(marker))
    text = trimEnd(std::string_view(text).substr(0, text.size() - marker.size()));
  return text;
}

// The calls of the formats without tags: the text before the first call (`start` finds where it
// begins; `marker`, written as text, is dropped from the end of that text), then call objects one
// after another (whitespace and `separator` between them) from `first` on - the complete ones: a
// call cut off (max_tokens) or not a call ends the list.
ParsedOutput parseJsonCalls(const std::string& output, const std::string& id_prefix, const std::regex& start,
                            std::string_view marker, bool in_list, char separator) {
  ParsedOutput out;
  std::smatch m;
  if (!std::regex_search(output, m, start)) {
    out.text = output;
    return out;
  }
  size_t at = static_cast<size_t>(m.position(0));
  out.text = textBefore(output, at, marker);
  if (in_list) at = skipSpace(output, at + 1);  // past the list's "["
  while (at < output.size() && output[at] == '{') {
    size_t end = jsonEnd(output, at);
    if (end == std::string::npos) break;
    auto call = openAiCall(nlohmann::json::parse(output.substr(at, end - at), nullptr, false),
                           std::format("{}_{}", id_prefix, out.tool_calls.size()));
    if (call.is_null()) break;
    out.tool_calls.push_back(std::move(call));
    at = skipSpace(output, end);
    if (at < output.size() && output[at] == separator) at = skipSpace(output, at + 1);
  }
  return out;
}

// llama3: JSON call objects after an optional <|python_tag|>, separated by whitespace or ';'.
ParsedOutput parseLlama3(const std::string& output, const std::string& id_prefix) {
  static const std::regex kStart(R"(\{\s*"name"\s*:)");
  return parseJsonCalls(output, id_prefix, kStart, "<|python_tag|>", false, ';');
}

// mistral: one JSON list of call objects (after [TOOL_CALLS], which the model may write as text).
ParsedOutput parseMistral(const std::string& output, const std::string& id_prefix) {
  static const std::regex kStart(R"(\[\s*\{\s*"name"\s*:)");
  return parseJsonCalls(output, id_prefix, kStart, "[TOOL_CALLS]", true, ',');
}

}  // namespace

std::string_view toString(ToolFormat f) {
  switch (f) {
    case ToolFormat::kHermes: return "hermes";
    case ToolFormat::kLlama3: return "llama3";
    case ToolFormat::kMistral: return "mistral";
  }
  return "hermes";
}

std::optional<ToolFormat> parseToolFormat(std::string_view name) {
  for (ToolFormat f : {ToolFormat::kHermes, ToolFormat::kLlama3, ToolFormat::kMistral}) {
    if (name == toString(f)) return f;
  }
  return std::nullopt;
}

ToolFormat detectToolFormat(std::string_view t) {
  if (t.find("[TOOL_CALLS]") != std::string_view::npos || t.starts_with("mistral-v3") || t.starts_with("mistral-v7")) {
    return ToolFormat::kMistral;
  }
  if (t.find("<|python_tag|>") != std::string_view::npos || t.find("ipython") != std::string_view::npos ||
      t == "llama3") {
    return ToolFormat::kLlama3;
  }
  return ToolFormat::kHermes;  // (also what models without a native format are told)
}

ParsedOutput parseToolCalls(const std::string& output, const std::string& id_prefix, ToolFormat format) {
  if (format == ToolFormat::kLlama3) return parseLlama3(output, id_prefix);
  if (format == ToolFormat::kMistral) return parseMistral(output, id_prefix);
  ParsedOutput out;
  size_t at = output.find(kHermesOpen);
  if (at == std::string::npos) {
    out.text = output;
    return out;
  }
  out.text = trimEnd(std::string_view(output).substr(0, at));
  while (at != std::string::npos) {
    size_t begin = at + kHermesOpen.size();
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
    at = output.find(kHermesOpen, end + kClose.size());
  }
  return out;
}

}  // namespace statim::llama
