#include "api/dto/anthropic_dto.h"

#include <algorithm>
#include <format>

#include "api/dto/job_dto.h"
#include "api/dto/openai_dto.h"
#include "core/json_util.h"

namespace statim::api {
namespace {

constexpr std::string_view kFields[] = {"model",       "max_tokens", "messages",  "system", "stop_sequences",
                                        "temperature", "top_p",      "top_k",     "tools",  "tool_choice",
                                        "stream",      "metadata",   "keep_alive"};

Error invalid(std::string message, std::string field) { return Error::invalid(std::move(message), std::move(field)); }

// A block's text, or an error naming `where`.
Result<std::string> textOf(const nlohmann::json& block, const std::string& where) {
  auto t = block.find("text");
  if (t == block.end() || !t->is_string())
    return fail(invalid(std::format("'{}.text' must be a string", where), where + ".text"));
  return t->get<std::string>();
}

// `system`: a string or a list of text blocks.
Result<std::string> readSystem(const nlohmann::json& s) {
  if (s.is_string()) return s.get<std::string>();
  if (!s.is_array()) return fail(invalid("'system' must be a string or a list of text blocks", "system"));
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    std::string where = std::format("system.{}", i);
    if (!s[i].is_object() || stringAt(s[i], "type") != "text") {
      return fail(
          invalid(std::format("'{}' must be a text block ({{\"type\": \"text\", \"text\": ...}})", where), where));
    }
    auto text = textOf(s[i], where);
    if (!text) return fail(text.error());
    out += (out.empty() ? "" : "\n\n") + *text;
  }
  return out;
}

// A tool_result's content: a string or text blocks.
Result<std::string> toolResultText(const nlohmann::json& block, const std::string& where) {
  auto c = block.find("content");
  if (c == block.end() || c->is_null()) return std::string();
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) {
    return fail(
        invalid(std::format("'{}.content' must be a string or a list of text blocks", where), where + ".content"));
  }
  std::string out;
  for (size_t i = 0; i < c->size(); ++i) {
    std::string w = std::format("{}.content.{}", where, i);
    if (!(*c)[i].is_object() || stringAt((*c)[i], "type") != "text") {
      return fail(invalid(std::format("'{}' must be a text block (this model reads text only)", w), w));
    }
    auto text = textOf((*c)[i], w);
    if (!text) return fail(text.error());
    out += *text;
  }
  return out;
}

// One Anthropic message as the chat messages the backend reads: a user turn's tool results become
// "tool" messages (first, as they answer the previous turn's calls), an assistant turn's tool_use
// blocks its tool_calls.
Result<void> appendMessage(const nlohmann::json& m, size_t i, nlohmann::json& out, std::string& last_user_text,
                           MediaParts& media) {
  std::string where = std::format("messages.{}", i);
  if (!m.is_object()) return fail(invalid(std::format("'{}' must be an object {{role, content}}", where), where));
  std::string role = m.value("role", "");
  if (role != "user" && role != "assistant") {
    return fail(invalid(std::format("'{}.role' must be \"user\" or \"assistant\"", where), where + ".role"));
  }
  auto content = m.find("content");
  if (content == m.end() || (!content->is_string() && !content->is_array())) {
    return fail(
        invalid(std::format("'{}.content' must be a string or a list of content blocks", where), where + ".content"));
  }
  if (content->is_string()) {
    out.push_back({{"role", role}, {"content", *content}});
    if (role == "user") last_user_text = content->get<std::string>();
    return ok();
  }
  std::string text;
  nlohmann::json parts = nlohmann::json::array();  // with images: the text and image parts, in order
  nlohmann::json calls = nlohmann::json::array();
  nlohmann::json results = nlohmann::json::array();
  for (size_t j = 0; j < content->size(); ++j) {
    const auto& b = (*content)[j];
    std::string w = std::format("{}.content.{}", where, j);
    std::string type = stringAt(b, "type");
    if (type == "text") {
      auto t = textOf(b, w);
      if (!t) return fail(t.error());
      text += *t;
      parts.push_back({{"type", "text"}, {"text", *t}});
    } else if (type == "image" && role == "user") {
      // {"source": {"type": "base64", "media_type", "data"}}; nothing is fetched from a URL.
      const auto source = b.value("source", nlohmann::json::object());
      std::string kind = stringAt(source, "type");
      if (kind == "url") {
        return fail(invalid(std::format("'{}.source': image URLs are not fetched (the server makes no outgoing "
                                        "requests for inputs); send the image as base64",
                                        w),
                            w + ".source"));
      }
      if (kind != "base64" || !source.contains("data") || !source["data"].is_string()) {
        return fail(invalid(std::format("'{}.source' must be {{\"type\": \"base64\", \"media_type\", \"data\"}}", w),
                            w + ".source"));
      }
      auto part = media.base64("image", source["data"].get<std::string>(), w + ".source.data");
      if (!part) return fail(part.error());
      parts.push_back(std::move(*part));
    } else if (type == "tool_use" && role == "assistant") {
      if (!b.contains("id") || !b["id"].is_string() || !b.contains("name") || !b["name"].is_string()) {
        return fail(invalid(std::format("'{}' needs 'id' and 'name' strings", w), w));
      }
      nlohmann::json input = b.value("input", nlohmann::json::object());
      calls.push_back({{"id", b["id"]},
                       {"type", "function"},
                       {"function",
                        {{"name", b["name"]},
                         {"arguments", input.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)}}}});
    } else if (type == "tool_result" && role == "user") {
      if (!b.contains("tool_use_id") || !b["tool_use_id"].is_string()) {
        return fail(
            invalid(std::format("'{}.tool_use_id' must be the id of the tool_use it answers", w), w + ".tool_use_id"));
      }
      auto r = toolResultText(b, w);
      if (!r) return fail(r.error());
      std::string body = b.value("is_error", false) ? "Error: " + *r : *r;
      results.push_back({{"role", "tool"}, {"tool_call_id", b["tool_use_id"]}, {"content", body}});
    } else if (type == "document") {
      return fail(invalid(std::format("'{}': document blocks are not supported", w), w + ".type"));
    } else {
      return fail(invalid(std::format("'{}.type' must be {} (got {})", w,
                                      role == "user" ? "text, image or tool_result" : "text or tool_use",
                                      type.empty() ? "none" : "'" + type.substr(0, 32) + "'"),
                          w + ".type"));
    }
  }
  for (auto& r : results) out.push_back(std::move(r));
  bool with_media = std::ranges::any_of(parts, [](const auto& p) { return p["type"] != "text"; });
  if (role == "user" && (!text.empty() || with_media || results.empty())) {
    out.push_back({{"role", "user"}, {"content", with_media ? parts : nlohmann::json(text)}});
    last_user_text = text;
  }
  if (role == "assistant") {
    nlohmann::json msg = {{"role", "assistant"}, {"content", text}};
    if (!calls.empty()) msg["tool_calls"] = std::move(calls);
    out.push_back(std::move(msg));
  }
  return ok();
}

// tools: [{name, description?, input_schema}] as the backend's (OpenAI's) function tools.
Result<nlohmann::json> readTools(const nlohmann::json& tools) {
  if (!tools.is_array()) return fail(invalid("'tools' must be a list of {name, description, input_schema}", "tools"));
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const auto& t = tools[i];
    std::string where = std::format("tools.{}", i);
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string()) {
      return fail(invalid(std::format("'{}.name' must be a string", where), where + ".name"));
    }
    if (t.contains("type") && t["type"] != "custom") {
      return fail(invalid(std::format("'{}.type': only custom tools (with an input_schema) are supported", where),
                          where + ".type"));
    }
    auto schema = t.find("input_schema");
    if (schema == t.end() || !schema->is_object()) {
      return fail(
          invalid(std::format("'{}.input_schema' must be a JSON schema object", where), where + ".input_schema"));
    }
    nlohmann::json fn = {{"name", t["name"]}, {"parameters", *schema}};
    if (auto d = t.find("description"); d != t.end() && d->is_string()) fn["description"] = *d;
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

// tool_choice: {type: auto | any | tool | none, name?, disable_parallel_tool_use?}.
Result<void> readToolChoice(const nlohmann::json& c, nlohmann::json& params) {
  if (!c.is_object() || !c.contains("type") || !c["type"].is_string()) {
    return fail(invalid("'tool_choice' must be {\"type\": \"auto\" | \"any\" | \"tool\" | \"none\"}", "tool_choice"));
  }
  std::string type = c["type"];
  if (type == "auto") {
    params["tool_choice"] = "auto";
  } else if (type == "any") {
    params["tool_choice"] = "required";
  } else if (type == "none") {
    params["tool_choice"] = "none";
  } else if (type == "tool") {
    if (!c.contains("name") || !c["name"].is_string()) {
      return fail(invalid("'tool_choice.name' must name the tool to call", "tool_choice.name"));
    }
    params["tool_choice"] = {{"type", "function"}, {"function", {{"name", c["name"]}}}};
  } else {
    return fail(
        invalid(std::format("'tool_choice.type' must be auto, any, tool or none (got '{}')", type.substr(0, 32)),
                "tool_choice.type"));
  }
  if (auto d = c.find("disable_parallel_tool_use"); d != c.end() && !d->is_null()) {
    if (!d->is_boolean()) {
      return fail(invalid("'tool_choice.disable_parallel_tool_use' must be true or false",
                          "tool_choice.disable_parallel_tool_use"));
    }
    params["parallel_tool_calls"] = !d->get<bool>();
  }
  return ok();
}

}  // namespace

Result<AnthropicRequest> parseMessagesRequest(const nlohmann::json& body) {
  AnthropicRequest req;
  req.job.type = "chat";
  for (auto& [k, v] : body.items()) {
    if (std::ranges::find(kFields, k) == std::end(kFields)) {
      return fail(invalid(std::format("'{}': extra inputs are not permitted", k.substr(0, 64)), k));
    }
  }
  auto model = body.find("model");
  if (model == body.end() || !model->is_string() || model->get_ref<const std::string&>().empty()) {
    return fail(invalid("'model' is required: the id of a model from GET /v1/models", "model"));
  }
  req.job.model = *model;
  auto max = body.find("max_tokens");
  if (max == body.end() || !max->is_number_integer()) {
    return fail(invalid("'max_tokens' is required: the most tokens to generate (an integer)", "max_tokens"));
  }
  req.job.params["max_tokens"] = *max;
  if (auto k = body.find("keep_alive"); k != body.end() && !k->is_null()) {
    auto v = parseKeepAlive(*k);
    if (!v) return fail(v.error());
    req.job.keep_alive = *v;
  }
  nlohmann::json messages = nlohmann::json::array();
  if (auto s = body.find("system"); s != body.end() && !s->is_null()) {
    auto system = readSystem(*s);
    if (!system) return fail(system.error());
    if (!system->empty()) messages.push_back({{"role", "system"}, {"content", *system}});
  }
  auto m = body.find("messages");
  if (m == body.end() || !m->is_array() || m->empty()) {
    return fail(invalid("'messages' must be a non-empty list of {role, content}", "messages"));
  }
  std::string last_user;
  for (size_t i = 0; i < m->size(); ++i) {
    if (auto r = appendMessage((*m)[i], i, messages, last_user, req.media); !r) return fail(r.error());
  }
  req.job.params["messages"] = std::move(messages);
  req.job.prompt = last_user;
  for (const char* k : {"temperature", "top_p", "top_k"}) {
    if (auto it = body.find(k); it != body.end() && !it->is_null()) req.job.params[k] = *it;
  }
  if (auto s = body.find("stop_sequences"); s != body.end() && !s->is_null()) {
    if (!s->is_array()) return fail(invalid("'stop_sequences' must be a list of strings", "stop_sequences"));
    if (!s->empty()) req.job.params["stop"] = *s;
  }
  if (auto t = body.find("tools"); t != body.end() && !t->is_null()) {
    auto tools = readTools(*t);
    if (!tools) return fail(tools.error());
    if (!tools->empty()) req.job.params["tools"] = std::move(*tools);
  }
  if (auto c = body.find("tool_choice"); c != body.end() && !c->is_null()) {
    if (auto r = readToolChoice(*c, req.job.params); !r) return fail(r.error());
  }
  if (auto s = body.find("stream"); s != body.end() && !s->is_null()) {
    if (!s->is_boolean()) return fail(invalid("'stream' must be true or false", "stream"));
    req.stream = *s;
  }
  if (auto md = body.find("metadata"); md != body.end() && !md->is_null() && !md->is_object()) {
    return fail(invalid("'metadata' must be an object like {\"user_id\": \"...\"}", "metadata"));
  }
  return req;
}

std::string stopReason(const Job& job) {
  std::string r = finishReason(job);
  if (r == "length") return "max_tokens";
  if (r == "tool_calls") return "tool_use";
  return "end_turn";
}

nlohmann::json toolUseBlocks(const Job& job) {
  nlohmann::json out = nlohmann::json::array();
  nlohmann::json calls = toolCalls(job);
  if (calls.is_null()) return out;
  for (auto& c : calls) {
    auto input = nlohmann::json::parse(c["function"].value("arguments", "{}"), nullptr, false);
    out.push_back({{"type", "tool_use"},
                   {"id", c.value("id", "")},
                   {"name", c["function"].value("name", "")},
                   {"input", input.is_discarded() ? nlohmann::json::object() : input}});
  }
  return out;
}

nlohmann::json messageStart(const Job& job) {
  return {{"id", std::format("msg_{}", job.id)},
          {"type", "message"},
          {"role", "assistant"},
          {"model", job.model},
          {"content", nlohmann::json::array()},
          {"stop_reason", nullptr},
          {"stop_sequence", nullptr},
          {"usage", {{"input_tokens", 0}, {"output_tokens", 0}}}};
}

nlohmann::json messageResponse(const Job& job) {
  nlohmann::json msg = messageStart(job);
  std::string text = job.result.is_object() ? job.result.value("text", "") : "";
  nlohmann::json blocks = toolUseBlocks(job);
  if (!text.empty() || blocks.empty()) msg["content"].push_back({{"type", "text"}, {"text", text}});
  for (auto& b : blocks) msg["content"].push_back(std::move(b));
  msg["stop_reason"] = stopReason(job);
  // As Anthropic counts: input_tokens are those not read from the (prompt) cache.
  auto u = usage(job);
  int cached = u["prompt_tokens_details"]["cached_tokens"];
  msg["usage"] = {{"input_tokens", u["prompt_tokens"].get<int>() - cached},
                  {"output_tokens", u["completion_tokens"]},
                  {"cache_read_input_tokens", cached},
                  {"cache_creation_input_tokens", 0}};
  return msg;
}

bool isAnthropicRoute(std::string_view path) { return path == "/v1/messages" || path.starts_with("/v1/messages/"); }

nlohmann::json anthropicError(int status, const nlohmann::json& statim_error) {
  std::string type = status == 401   ? "authentication_error"
                     : status == 403 ? "permission_error"
                     : status == 404 ? "not_found_error"
                     : status == 413 ? "request_too_large"
                     : status == 429 ? "rate_limit_error"
                     : status == 503 ? "overloaded_error"
                     : status >= 500 ? "api_error"
                                     : "invalid_request_error";
  std::string message = statim_error.is_object() ? statim_error.value("message", "") : "";
  if (message.empty()) message = std::format("HTTP {}", status);
  return {{"type", "error"}, {"error", {{"type", type}, {"message", message}}}};
}

}  // namespace statim::api
