#include "api/dto/responses_dto.h"

#include <algorithm>
#include <charconv>
#include <format>

#include "api/dto/job_dto.h"
#include "api/dto/openai_dto.h"
#include "core/json_util.h"

namespace statim::api {
namespace {

using json = nlohmann::json;

// Fields read; the last row is accepted and has no effect on a local model (said in docs/api.md).
constexpr std::string_view kFields[] = {"model",
                                        "input",
                                        "instructions",
                                        "tools",
                                        "tool_choice",
                                        "parallel_tool_calls",
                                        "text",
                                        "temperature",
                                        "top_p",
                                        "max_output_tokens",
                                        "stream",
                                        "store",
                                        "background",
                                        "metadata",
                                        "user",
                                        "previous_response_id",
                                        "truncation",
                                        "keep_alive",
                                        "include",
                                        "reasoning",
                                        "service_tier",
                                        "prompt_cache_key",
                                        "safety_identifier",
                                        "stream_options",
                                        "top_logprobs",
                                        "max_tool_calls",
                                        "prompt_cache_retention",
                                        "prompt_cache_options",
                                        "context_management",
                                        "moderation",
                                        "client_metadata"};
// The most tokens a response may make: OpenAI's only limit is the context, and so is statim's (a
// job stops where its context ends); larger asks are held to this.
constexpr int kMaxOutputTokens = 32768;

Error invalid(std::string message, std::string field) { return Error::invalid(std::move(message), std::move(field)); }
// obj[key] when it is a string, else "" (a client's null or number is refused by the caller).
std::string str(const json& obj, const char* key) {
  auto it = obj.is_object() ? obj.find(key) : obj.end();
  return obj.is_object() && it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}
std::string clip(const std::string& s) { return s.substr(0, 48); }

// A message item's content: a string or a list of text parts (input_text, output_text).
Result<std::string> contentText(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) {
    return fail(invalid(std::format("'{}' must be a string or a list of input_text parts", where), where));
  }
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    std::string w = std::format("{}[{}]", where, i);
    std::string type = str(part, "type");
    if (type == "refusal" && part.contains("refusal") && part["refusal"].is_string()) {
      text += part["refusal"].get<std::string>();  // (an assistant's refusal, as history)
      continue;
    }
    if (type == "input_image") {
      return fail(invalid(std::format("'{}': input_image parts are read in user messages only", w), w + ".type"));
    }
    if (type == "input_file" || type == "input_audio") {
      return fail(invalid(std::format("'{}': {} parts are not supported", w, type), w + ".type"));
    }
    if (type != "input_text" && type != "output_text") {
      return fail(invalid(std::format("'{}.type' must be input_text or output_text (got {})", w,
                                      type.empty() ? "none" : "'" + clip(type) + "'"),
                          w + ".type"));
    }
    if (!part.contains("text") || !part["text"].is_string()) {
      return fail(invalid(std::format("'{}.text' must be a string", w), w + ".text"));
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

// A user message's content with images (input_image parts: data: URLs): the parts as stored
// ({"type": "text" | "image", ...}); the images go to `media`.
Result<json> contentWithImages(const json& content, const std::string& where, MediaParts& media) {
  json parts = json::array();
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    std::string w = std::format("{}[{}]", where, i);
    if (str(part, "type") != "input_image") {
      auto text = contentText(json::array({part}), where);  // (its errors name the list; fine for one part)
      if (!text) return fail(text.error());
      parts.push_back({{"type", "text"}, {"text", *text}});
      continue;
    }
    auto url = part.find("image_url");
    if (url == part.end() || !url->is_string()) {
      return fail(
          invalid(std::format("'{}.image_url' must be a data: URL (file_id is not supported)", w), w + ".image_url"));
    }
    auto stored = media.imageUrl(url->get<std::string>(), w + ".image_url");
    if (!stored) return fail(stored.error());
    parts.push_back(std::move(*stored));
  }
  return parts;
}

Result<std::string> stringField(const json& item, const char* key, const std::string& where) {
  auto it = item.find(key);
  if (it == item.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return fail(invalid(std::format("'{}.{}' must be a non-empty string", where, key), std::format("{}.{}", where, key)));
  }
  return it->get<std::string>();
}

// `input` as a list of items (a string is one user message), each as stored and listed by
// input_items; and appended to `messages` as the chat messages the backend reads.
Result<json> readInput(const json& input, json& messages, std::string& last_user_text, MediaParts& media) {
  json items = json::array();
  if (input.is_string()) {
    items.push_back(
        {{"type", "message"}, {"role", "user"}, {"content", json::array({{{"type", "input_text"}, {"text", input}}})}});
  } else if (input.is_array() && !input.empty()) {
    items = input;
  } else {
    return fail(invalid("'input' must be a string or a non-empty list of input items", "input"));
  }
  for (size_t i = 0; i < items.size(); ++i) {
    json& item = items[i];
    std::string where = std::format("input[{}]", i);
    if (!item.is_object()) return fail(invalid(std::format("'{}' must be an object", where), where));
    std::string type = item.contains("type") ? str(item, "type") : item.contains("role") ? "message" : "";
    if (type == "message") {
      item["type"] = "message";
      std::string role = str(item, "role");
      if (role != "user" && role != "assistant" && role != "system" && role != "developer") {
        return fail(invalid(std::format("'{}.role' must be user, assistant, system or developer", where),
                            where + ".role"));
      }
      const json& content = item.contains("content") ? item["content"] : json();
      bool images = role == "user" && content.is_array() &&
                    std::ranges::any_of(content, [](const json& p) { return str(p, "type") == "input_image"; });
      if (images) {
        auto parts = contentWithImages(content, where + ".content", media);
        if (!parts) return fail(parts.error());
        last_user_text.clear();
        for (const auto& p : *parts) last_user_text += p.value("text", "");
        messages.push_back({{"role", "user"}, {"content", std::move(*parts)}});
        continue;
      }
      auto text = contentText(content, where + ".content");
      if (!text) return fail(text.error());
      messages.push_back({{"role", role == "developer" ? "system" : role}, {"content", *text}});
      if (role == "user") last_user_text = *text;
    } else if (type == "function_call" || type == "custom_tool_call") {
      auto call_id = stringField(item, "call_id", where);
      if (!call_id) return fail(call_id.error());
      auto name = stringField(item, "name", where);
      if (!name) return fail(name.error());
      const char* key = type == "function_call" ? "arguments" : "input";
      auto args = item.find(key);
      if (args == item.end() || !args->is_string()) {
        return fail(invalid(std::format("'{}.{}' must be a string (the call's {})", where, key,
                                        type == "function_call" ? "JSON arguments" : "input"),
                            std::format("{}.{}", where, key)));
      }
      // A custom tool is a function of one string, "input" (see readTools).
      std::string arguments = type == "function_call" ? args->get<std::string>() : json{{"input", *args}}.dump();
      json call = {{"id", *call_id}, {"type", "function"}, {"function", {{"name", *name}, {"arguments", arguments}}}};
      // Calls right after an assistant turn (or after each other) belong to it.
      if (!messages.empty() && messages.back()["role"] == "assistant") {
        messages.back()["tool_calls"].push_back(std::move(call));
      } else {
        messages.push_back({{"role", "assistant"}, {"content", ""}, {"tool_calls", json::array({call})}});
      }
    } else if (type == "reasoning") {
      continue;  // another model's reasoning (encrypted or summarised): nothing this one can read
    } else if (type == "function_call_output" || type == "custom_tool_call_output") {
      auto call_id = stringField(item, "call_id", where);
      if (!call_id) return fail(call_id.error());
      auto out = item.find("output");
      if (out == item.end()) {
        return fail(invalid(std::format("'{}.output' must be the call's result (a string)", where), where + ".output"));
      }
      auto text = contentText(*out, where + ".output");
      if (!text) return fail(text.error());
      messages.push_back({{"role", "tool"}, {"tool_call_id", *call_id}, {"content", *text}});
    } else if (type == "item_reference") {
      return fail(invalid(std::format("'{}': item_reference is not supported: send the item itself, or continue a "
                                      "response with previous_response_id",
                                      where),
                          where + ".type"));
    } else {
      return fail(invalid(std::format("'{}.type' must be message, function_call, function_call_output, "
                                      "custom_tool_call, custom_tool_call_output or reasoning (got {})",
                                      where, type.empty() ? "none" : "'" + clip(type) + "'"),
                          where + ".type"));
    }
  }
  return items;
}

// Tools the server runs itself at OpenAI (web search, file search, code, images, computer use,
// MCP, shells): a local model has none of them; they are left out of what the model is told.
bool hostedTool(const std::string& type) {
  return type.starts_with("web_search") || type == "file_search" || type == "code_interpreter" ||
         type == "image_generation" || type.starts_with("computer_use") || type == "mcp" || type == "local_shell" ||
         type == "shell" || type == "apply_patch";
}

// tools: [{type: function, name, description?, parameters?, strict?} | {type: custom, name,
// description?}] as the backend's (chat's) functions: a custom (freeform) tool is a function of
// one string, "input". Hosted tools are left out. `custom` collects the custom tools' names.
Result<json> readTools(const json& tools, json& custom) {
  if (!tools.is_array()) return fail(invalid("'tools' must be a list of {type: function, name, parameters}", "tools"));
  json out = json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    std::string where = std::format("tools[{}]", i);
    std::string type = str(t, "type");
    if (hostedTool(type)) continue;
    if (type != "function" && type != "custom") {
      return fail(invalid(std::format("'{}.type': only function and custom tools are supported (got {})", where,
                                      type.empty() ? "none" : "'" + clip(type) + "'"),
                          where + ".type"));
    }
    json fn = json::object();
    for (const char* k : {"name", "description", "parameters", "strict"}) {
      if (auto it = t.find(k); it != t.end() && !it->is_null()) fn[k] = *it;
    }
    if (type == "custom") {
      fn["parameters"] = {{"type", "object"},
                          {"properties", {{"input", {{"type", "string"}}}}},
                          {"required", {"input"}},
                          {"additionalProperties", false}};
      fn.erase("strict");
      custom.push_back(fn.value("name", json()));
    }
    if (!fn.contains("parameters")) fn["parameters"] = {{"type", "object"}, {"properties", json::object()}};
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

// tool_choice: none | auto | required | {type: function, name}.
Result<json> readToolChoice(const json& c) {
  if (c.is_string() && (c == "none" || c == "auto" || c == "required")) return c;
  if (c.is_object() && (str(c, "type") == "function" || str(c, "type") == "custom") && c.contains("name") &&
      c["name"].is_string()) {
    return json{{"type", "function"}, {"function", {{"name", c["name"]}}}};
  }
  return fail(
      invalid("'tool_choice' must be none, auto, required or {\"type\": \"function\", \"name\": ...}", "tool_choice"));
}

// text: {format: {type: text} | {type: json_object} | {type: json_schema, name, schema, strict?}}
// as the backend's response_format.
Result<json> readTextFormat(const json& text) {
  if (!text.is_object()) return fail(invalid("'text' must be an object like {\"format\": {\"type\": \"text\"}}", "text"));
  for (auto& [k, v] : text.items()) {
    if (k != "format" && k != "verbosity") return fail(invalid(std::format("'text.{}' is not supported", clip(k)), "text." + k));
  }
  auto f = text.find("format");
  if (f == text.end() || f->is_null()) return json();
  std::string type = str(*f, "type");
  if (type == "text") return json();
  if (type == "json_object") return json{{"type", "json_object"}};
  if (type == "json_schema") {
    if (!f->contains("schema") || !(*f)["schema"].is_object()) {
      return fail(invalid("'text.format.schema' must be a JSON schema object", "text.format.schema"));
    }
    json js = {{"name", str(*f, "name").empty() ? "response" : str(*f, "name")}, {"schema", (*f)["schema"]}};
    if (f->contains("strict")) js["strict"] = (*f)["strict"];
    return json{{"type", "json_schema"}, {"json_schema", std::move(js)}};
  }
  return fail(invalid("'text.format.type' must be text, json_object or json_schema", "text.format.type"));
}

// The conversation a response continues: its messages without its own instructions (they are not
// carried over), then its answer as an assistant turn.
json continuedConversation(const Job& prev) {
  json messages = json::array();
  const json& stored = prev.params.value("messages", json::array());
  const json& r = prev.params["response"];
  bool had_instructions = r.contains("instructions") && r["instructions"].is_string();
  for (size_t i = had_instructions ? 1 : 0; i < stored.size(); ++i) messages.push_back(stored[i]);
  json turn = {{"role", "assistant"}, {"content", prev.result.is_object() ? prev.result.value("text", "") : ""}};
  if (json calls = toolCalls(prev); !calls.is_null()) turn["tool_calls"] = calls;
  messages.push_back(std::move(turn));
  return messages;
}

std::int64_t seconds(Micros t) { return t / 1000000; }

const json& responseParams(const Job& job) {
  static const json kEmpty = json::object();
  auto it = job.params.find("response");
  return it != job.params.end() && it->is_object() ? *it : kEmpty;
}

std::string statusOf(const Job& job) {
  // A cancel asked of a running job takes effect at its next step: it is as good as cancelled.
  if (!isTerminal(job.status) && job.cancel_requested) return "cancelled";
  switch (job.status) {
    case JobStatus::kQueued: return "queued";
    case JobStatus::kProcessing: return "in_progress";
    case JobStatus::kFailed: return "failed";
    case JobStatus::kCancelled: return "cancelled";
    case JobStatus::kCompleted: return finishReason(job) == "length" ? "incomplete" : "completed";
  }
  return "failed";
}

std::string resultText(const Job& job) { return job.result.is_object() ? job.result.value("text", "") : ""; }

json messageItem(const Job& job, const std::string& text, const char* status) {
  json content = json::array();
  if (text.size() || status != std::string_view("in_progress")) {
    content.push_back({{"type", "output_text"}, {"text", text}, {"annotations", json::array()}, {"logprobs", json::array()}});
  }
  return {{"id", std::format("msg_{}", job.id)},
          {"type", "message"},
          {"status", status},
          {"role", "assistant"},
          {"content", std::move(content)}};
}

// Whether `call` is of a custom (freeform) tool: its "input" is what the model wrote.
bool customCall(const Job& job, const json& call) {
  const json& custom = responseParams(job).value("custom_tools", json::array());
  return std::ranges::find(custom, call["function"].value("name", json())) != custom.end();
}

// A custom tool call's input: the "input" of the function call it was made as.
std::string customInput(const json& call) {
  auto args = json::parse(call["function"].value("arguments", "{}"), nullptr, false);
  return args.is_object() && args.contains("input") && args["input"].is_string() ? args["input"].get<std::string>()
                                                                                 : "";
}

json callItem(const Job& job, size_t i, const json& call, const char* status, bool with_arguments) {
  if (customCall(job, call)) {
    return {{"id", std::format("ctc_{}_{}", job.id, i)},
            {"type", "custom_tool_call"},
            {"status", status},
            {"call_id", call.value("id", "")},
            {"name", call["function"].value("name", "")},
            {"input", with_arguments ? customInput(call) : ""}};
  }
  return {{"id", std::format("fc_{}_{}", job.id, i)},
          {"type", "function_call"},
          {"status", status},
          {"call_id", call.value("id", "")},
          {"name", call["function"].value("name", "")},
          {"arguments", with_arguments ? call["function"].value("arguments", "") : ""}};
}

// A job as it was at a step of its life, for the snapshots response.created / in_progress carry.
Job asAt(Job job, JobStatus status) {
  job.status = status;
  job.result = nullptr;
  job.error.clear();
  job.finished_at.reset();
  return job;
}

}  // namespace

std::string responseId(JobId id) { return std::format("resp_{}", id); }

Result<JobId> parseResponseId(std::string_view text, const std::string& field) {
  auto bad = [&] {
    return fail(Error{ErrorCode::kNotFound, std::format("no response has the id '{}'", std::string(text.substr(0, 64))),
                      field});
  };
  if (!text.starts_with("resp_")) return bad();
  auto id = parseJobId(text.substr(5));
  if (!id) return bad();
  return *id;
}

bool isResponseJob(const Job& job) {
  return job.type == "chat" && job.params.contains("response") && job.params["response"].is_object();
}

Result<std::optional<JobId>> previousResponseId(const json& body) {
  auto p = body.find("previous_response_id");
  if (p == body.end() || p->is_null()) return std::optional<JobId>();
  if (!p->is_string()) return fail(invalid("'previous_response_id' must be a response id (\"resp_...\")", "previous_response_id"));
  auto id = parseResponseId(p->get<std::string>(), "previous_response_id");
  if (!id) return fail(invalid(id.error().message, "previous_response_id"));
  return std::optional<JobId>(*id);
}

Result<ResponsesRequest> parseResponsesRequest(const json& body, const Job* previous) {
  ResponsesRequest req;
  req.job.type = "chat";
  for (auto& [k, v] : body.items()) {
    if (std::ranges::find(kFields, k) == std::end(kFields)) {
      return fail(invalid(std::format("unsupported field '{}'", clip(k)), k));
    }
  }
  auto model = body.find("model");
  if (model == body.end() || !model->is_string() || model->get_ref<const std::string&>().empty()) {
    return fail(invalid("'model' is required: the id of a model from GET /v1/models", "model"));
  }
  req.job.model = *model;
  json response = json::object();  // what the API echoes, kept with the job
  json messages = json::array();
  if (auto in = body.find("instructions"); in != body.end() && !in->is_null()) {
    if (!in->is_string()) return fail(invalid("'instructions' must be a string", "instructions"));
    messages.push_back({{"role", "system"}, {"content", *in}});
    response["instructions"] = *in;
  }
  if (previous) {
    for (auto& m : continuedConversation(*previous)) messages.push_back(std::move(m));
    response["previous_response_id"] = responseId(previous->id);
  }
  auto input = body.find("input");
  if (input == body.end() || input->is_null()) {
    return fail(invalid("'input' is required: a string or a list of input items", "input"));
  }
  std::string last_user = previous ? previous->prompt : "";
  // The images of the conversation so far stay the inputs of each response that continues it.
  if (previous) req.job.inputs = previous->inputs;
  req.media = MediaParts(req.job.inputs.size());
  auto items = readInput(*input, messages, last_user, req.media);
  if (!items) return fail(items.error());
  response["input"] = std::move(*items);
  req.job.params["messages"] = std::move(messages);
  req.job.prompt = last_user;
  for (const char* k : {"temperature", "top_p"}) {
    if (auto it = body.find(k); it != body.end() && !it->is_null()) req.job.params[k] = response[k] = *it;
  }
  // Absent: as many as the context holds (OpenAI's only limit too), not the backend's default.
  req.job.params["max_tokens"] = kMaxOutputTokens;
  if (auto m = body.find("max_output_tokens"); m != body.end() && !m->is_null()) {
    req.job.params["max_tokens"] = m->is_number_integer() && *m > kMaxOutputTokens ? json(kMaxOutputTokens) : *m;
    response["max_output_tokens"] = *m;
  }
  if (auto t = body.find("tools"); t != body.end() && !t->is_null()) {
    json custom = json::array();
    auto tools = readTools(*t, custom);
    if (!tools) return fail(tools.error());
    // Echoed as OpenAI shows function tools: parameters (null when not given) and strict (true
    // unless the request said otherwise); other tools as given.
    json echoed = json::array();
    for (const json& tool : *t) {
      if (str(tool, "type") != "function") {
        echoed.push_back(tool);
        continue;
      }
      bool strict = !tool.contains("strict") || !tool["strict"].is_boolean() || tool["strict"].get<bool>();
      echoed.push_back({{"type", "function"},
                        {"name", tool.value("name", json())},
                        {"description", tool.contains("description") ? tool["description"] : json()},
                        {"parameters", tool.contains("parameters") ? tool["parameters"] : json()},
                        {"strict", strict}});
    }
    if (!tools->empty()) req.job.params["tools"] = std::move(*tools);
    if (!custom.empty()) response["custom_tools"] = std::move(custom);
    response["tools"] = std::move(echoed);
  }
  if (auto c = body.find("tool_choice"); c != body.end() && !c->is_null()) {
    auto choice = readToolChoice(*c);
    if (!choice) return fail(choice.error());
    if (req.job.params.contains("tools")) req.job.params["tool_choice"] = *choice;
    response["tool_choice"] = *c;
  }
  if (auto p = body.find("parallel_tool_calls"); p != body.end() && !p->is_null()) {
    if (!p->is_boolean()) return fail(invalid("'parallel_tool_calls' must be true or false", "parallel_tool_calls"));
    if (req.job.params.contains("tools")) req.job.params["parallel_tool_calls"] = *p;
    response["parallel_tool_calls"] = *p;
  }
  if (auto t = body.find("text"); t != body.end() && !t->is_null()) {
    auto format = readTextFormat(*t);
    if (!format) return fail(format.error());
    // With tools the model may call them: the answer's format is not held by a grammar then (the
    // calls are); without, it is.
    bool tools_active = req.job.params.contains("tools") && req.job.params.value("tool_choice", json("auto")) != "none";
    if (!format->is_null() && !tools_active) req.job.params["response_format"] = std::move(*format);
    response["text"] = *t;
  }
  for (const char* k : {"stream", "store", "background"}) {
    if (auto it = body.find(k); it != body.end() && !it->is_null() && !it->is_boolean()) {
      return fail(invalid(std::format("'{}' must be true or false", k), k));
    }
  }
  req.stream = body.value("stream", json(false)).is_boolean() && body.value("stream", false);
  req.background = body.contains("background") && body["background"].is_boolean() && body["background"].get<bool>();
  response["background"] = req.background;
  if (auto s = body.find("store"); s != body.end() && s->is_boolean()) response["store"] = *s;
  if (auto md = body.find("metadata"); md != body.end() && !md->is_null()) {
    if (!md->is_object() || md->size() > 16) {
      return fail(invalid("'metadata' must be an object of at most 16 string values", "metadata"));
    }
    for (auto& [k, v] : md->items()) {
      if (!v.is_string() || k.size() > 64 || v.get_ref<const std::string&>().size() > 512) {
        return fail(invalid("'metadata' values must be strings (keys up to 64, values up to 512 characters)",
                            "metadata." + clip(k)));
      }
    }
    response["metadata"] = *md;
  }
  if (auto u = body.find("user"); u != body.end() && !u->is_null()) {
    if (!u->is_string()) return fail(invalid("'user' must be a string", "user"));
    response["user"] = *u;
  }
  if (auto t = body.find("truncation"); t != body.end() && !t->is_null() && *t != "disabled" && *t != "auto") {
    return fail(invalid("'truncation' must be disabled or auto", "truncation"));
  }
  if (auto k = body.find("keep_alive"); k != body.end() && !k->is_null()) {
    auto v = parseKeepAlive(*k);
    if (!v) return fail(v.error());
    req.job.keep_alive = *v;
  }
  req.job.params["response"] = std::move(response);
  return req;
}

Error responsesNames(Error e) {
  e = paramsAsTopLevel(std::move(e));
  auto rename = [&e](std::string_view from, std::string_view to) {
    for (std::string* s : {&e.field, &e.message}) {
      for (size_t at = 0; (at = s->find(from, at)) != std::string::npos; at += to.size()) s->replace(at, from.size(), to);
    }
  };
  rename(".function.", ".");
  rename("max_tokens", "max_output_tokens");
  rename("response_format.json_schema.schema", "text.format.schema");
  rename("response_format", "text.format");
  if (e.field == "messages" || e.field.starts_with("messages[")) e.field = "input";
  return e;
}

json responseObject(const Job& job) {
  const json& r = responseParams(job);
  auto given = [&r](const char* k, json fallback) { return r.contains(k) ? r[k] : fallback; };
  std::string status = statusOf(job);
  json output = json::array();
  if (job.result.is_object()) {
    std::string text = resultText(job);
    json calls = toolCalls(job);
    const char* item_status = status == "completed" ? "completed" : "incomplete";
    if (!text.empty() || calls.is_null()) output.push_back(messageItem(job, text, item_status));
    for (size_t i = 0; calls.is_array() && i < calls.size(); ++i) output.push_back(callItem(job, i, calls[i], "completed", true));
  }
  json usage_out;  // absent until the response has ended
  if (job.result.is_object()) {
    int in = job.result.value("tokens_in", 0), out = job.result.value("tokens_out", 0);
    int cached = job.result.value("tokens_cached", 0);
    usage_out = {{"input_tokens", in},
                 {"input_tokens_details", {{"cached_tokens", cached}, {"cache_write_tokens", 0}}},
                 {"output_tokens", out},
                 {"output_tokens_details", {{"reasoning_tokens", 0}}},
                 {"total_tokens", in + out}};
  }
  json error = nullptr;
  if (job.status == JobStatus::kFailed) error = {{"code", "server_error"}, {"message", job.error}};
  json text = given("text", json::object());
  if (!text.contains("format")) text["format"] = {{"type", "text"}};
  json out = {{"id", responseId(job.id)},
              {"object", "response"},
              {"created_at", seconds(job.created_at)},
              {"completed_at", job.finished_at && status == "completed" ? json(seconds(*job.finished_at)) : json()},
              {"status", status},
              {"background", given("background", false)},
              {"error", std::move(error)},
              {"incomplete_details", status == "incomplete" ? json{{"reason", "max_output_tokens"}} : json()},
              {"instructions", given("instructions", nullptr)},
              {"max_output_tokens", given("max_output_tokens", nullptr)},
              {"metadata", given("metadata", json::object())},
              {"model", job.model},
              {"output", std::move(output)},
              {"parallel_tool_calls", given("parallel_tool_calls", true)},
              {"previous_response_id", given("previous_response_id", nullptr)},
              {"reasoning", {{"effort", nullptr}, {"summary", nullptr}}},
              {"store", given("store", true)},
              {"temperature", given("temperature", nullptr)},
              {"text", std::move(text)},
              {"tool_choice", given("tool_choice", "auto")},
              {"tools", given("tools", json::array())},
              {"top_p", given("top_p", nullptr)},
              {"truncation", "disabled"}};
  if (!usage_out.is_null()) out["usage"] = std::move(usage_out);
  if (r.contains("user")) out["user"] = r["user"];  // (a string when given; absent, not null, when not)
  return out;
}

json inputItems(const Job& job) {
  json items = responseParams(job).value("input", json::array());
  for (size_t i = 0; i < items.size(); ++i) {
    json& item = items[i];
    if (!item.contains("id")) item["id"] = std::format("in_{}_{}", job.id, i);
    if (stringAt(item, "type") == "message" && item["content"].is_string()) {
      item["content"] = json::array({{{"type", "input_text"}, {"text", item["content"]}}});
    }
    if (!item.contains("status")) item["status"] = "completed";
  }
  return items;
}

json ResponseEvents::event(const char* type, json fields) {
  fields["type"] = type;
  fields["sequence_number"] = next_++;
  return fields;
}

std::vector<json> ResponseEvents::begin(const Job& now) {
  std::vector<json> out;
  if (!created_) {
    created_ = true;
    // (A background response is created queued; one answered on its own stream, in progress.)
    bool background = responseParams(job_).value("background", false);
    out.push_back(
        event("response.created",
              {{"response", responseObject(asAt(job_, background ? JobStatus::kQueued : JobStatus::kProcessing))}}));
  }
  if (now.status != JobStatus::kQueued) {
    for (auto& e : started()) out.push_back(std::move(e));
  }
  return out;
}

std::vector<json> ResponseEvents::started() {
  if (in_progress_ || !created_) return {};
  in_progress_ = true;
  return {event("response.in_progress", {{"response", responseObject(asAt(job_, JobStatus::kProcessing))}})};
}

void ResponseEvents::openMessage(std::vector<json>& out) {
  if (message_open_) return;
  message_open_ = true;
  out.push_back(
      event("response.output_item.added", {{"output_index", 0}, {"item", messageItem(job_, "", "in_progress")}}));
  out.push_back(
      event("response.content_part.added",
            {{"item_id", std::format("msg_{}", job_.id)},
             {"output_index", 0},
             {"content_index", 0},
             {"part",
              {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}, {"logprobs", json::array()}}}}));
}

std::vector<json> ResponseEvents::deltas(const std::string& text, bool final) {
  std::vector<json> out;
  if (!text.starts_with(sent_)) return out;  // (the backend's text only grows)
  const std::string item_id = std::format("msg_{}", job_.id);
  for (size_t a = sent_.size(); a < text.size();) {
    // The delta [a, b): up to the next space or newline, or kDeltaMaxBytes (on a UTF-8 boundary).
    size_t limit = a + kDeltaMaxBytes, b = std::string::npos;
    for (size_t p = a + 1; p < std::min(limit, text.size()); ++p) {
      if (text[p] == ' ' || text[p] == '\n') {
        b = p;
        break;
      }
    }
    if (b == std::string::npos && text.size() > limit) {
      b = limit;
      while (b > a + 1 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
    }
    if (b == std::string::npos && final) b = text.size();
    if (b == std::string::npos) break;  // not known until more text comes
    openMessage(out);
    out.push_back(event("response.output_text.delta", {{"item_id", item_id},
                                                        {"output_index", 0},
                                                        {"content_index", 0},
                                                        {"delta", text.substr(a, b - a)},
                                                        {"logprobs", json::array()}}));
    sent_ = text.substr(0, b);
    a = b;
  }
  return out;
}

std::vector<json> ResponseEvents::text(const std::string& text_so_far) {
  if (!created_) return {};
  auto out = started();
  for (auto& e : deltas(text_so_far, false)) out.push_back(std::move(e));
  return out;
}

std::vector<json> ResponseEvents::end(const Job& done) {
  std::vector<json> out = begin(done);  // (an ended job has started: in_progress is among them)
  std::string text = resultText(done);
  json calls = toolCalls(done);
  for (auto& e : deltas(text, true)) out.push_back(std::move(e));
  const char* item_status = statusOf(done) == "completed" ? "completed" : "incomplete";
  if (calls.is_null()) openMessage(out);  // no text and no calls: an empty message, as the object shows
  int index = 0;
  if (message_open_) {
    const std::string item_id = std::format("msg_{}", job_.id);
    // The done events carry the response's final text: the deltas' unless the job ran again from
    // its start after its worker vanished mid-stream (then the deltas were of the lost attempt).
    json part = {{"type", "output_text"}, {"text", text}, {"annotations", json::array()}, {"logprobs", json::array()}};
    out.push_back(event("response.output_text.done", {{"item_id", item_id},
                                                      {"output_index", 0},
                                                      {"content_index", 0},
                                                      {"text", text},
                                                      {"logprobs", json::array()}}));
    out.push_back(event("response.content_part.done",
                        {{"item_id", item_id}, {"output_index", 0}, {"content_index", 0}, {"part", part}}));
    out.push_back(
        event("response.output_item.done", {{"output_index", 0}, {"item", messageItem(job_, text, item_status)}}));
    index = 1;
  }
  for (size_t i = 0; calls.is_array() && i < calls.size(); ++i, ++index) {
    json added = callItem(job_, i, calls[i], "in_progress", false);
    std::string item_id = added["id"];
    out.push_back(event("response.output_item.added", {{"output_index", index}, {"item", added}}));
    if (customCall(job_, calls[i])) {
      std::string input = customInput(calls[i]);
      out.push_back(event("response.custom_tool_call_input.delta",
                          {{"item_id", item_id}, {"output_index", index}, {"delta", input}}));
      out.push_back(event("response.custom_tool_call_input.done",
                          {{"item_id", item_id}, {"output_index", index}, {"input", input}}));
    } else {
      std::string args = calls[i]["function"].value("arguments", "");
      out.push_back(event("response.function_call_arguments.delta",
                          {{"item_id", item_id}, {"output_index", index}, {"delta", args}}));
      out.push_back(event("response.function_call_arguments.done", {{"item_id", item_id},
                                                                    {"output_index", index},
                                                                    {"name", calls[i]["function"].value("name", "")},
                                                                    {"arguments", args}}));
    }
    out.push_back(event("response.output_item.done",
                        {{"output_index", index}, {"item", callItem(job_, i, calls[i], "completed", true)}}));
  }
  json response = responseObject(done);
  std::string status = response["status"];
  const char* type = status == "completed"    ? "response.completed"
                     : status == "incomplete" ? "response.incomplete"
                                              : "response.failed";  // failed, cancelled (its status says so)
  out.push_back(event(type, {{"response", std::move(response)}}));
  return out;
}

}  // namespace statim::api
