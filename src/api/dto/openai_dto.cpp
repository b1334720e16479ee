#include "api/dto/openai_dto.h"
#include "api/dto/job_dto.h"
#include "core/json_util.h"

#include <cstring>
#include <format>

namespace statim::api {
namespace {

// Fields copied into the job's params as they are (the backend validates them).
constexpr std::initializer_list<std::string_view> kSamplingFields = {
    "temperature",       "top_p",          "top_k",           "min_p",  "seed", "stop", "presence_penalty",
    "frequency_penalty", "repeat_penalty", "repeat_last_n", "response_format", "grammar", "user"};
// Fields accepted and ignored (they do not change what a single local completion produces).
constexpr std::initializer_list<std::string_view> kIgnoredFields = {"metadata", "store", "service_tier"};

// Ollama's "keep_alive", accepted on the OpenAI routes too.
Result<void> readKeepAlive(const nlohmann::json& body, NewJob& job) {
  auto k = body.find("keep_alive");
  if (k == body.end() || k->is_null()) return ok();
  auto v = parseKeepAlive(*k);
  if (!v) return fail(v.error());
  job.keep_alive = *v;
  return ok();
}

bool contains(std::initializer_list<std::string_view> list, std::string_view k) {
  return std::ranges::find(list, k) != list.end();
}

Result<void> readModel(const nlohmann::json& body, NewJob& job) {
  auto m = body.find("model");
  if (m == body.end() || m->is_null()) {
    return fail(Error::invalid("'model' is required: the id of a model from GET /v1/models", "model"));
  }
  if (!m->is_string()) return fail(Error::invalid(std::format("'model' must be a string, not {}", m->type_name()), "model"));
  if (m->get_ref<const std::string&>().empty()) return fail(Error::invalid("'model' must not be empty", "model"));
  if (m->get_ref<const std::string&>().size() > 128) return fail(Error::invalid("'model' must be at most 128 bytes", "model"));
  job.model = *m;
  return ok();
}

// The common part of completions and chat: sampling, max_tokens, n, stream.
Result<void> readGeneration(const nlohmann::json& body, OpenAiRequest& req,
                            std::initializer_list<std::string_view> own_fields) {
  for (auto& [k, v] : body.items()) {
    if (contains(own_fields, k) || contains(kSamplingFields, k) || contains(kIgnoredFields, k)) continue;
    if (k == "model" || k == "max_tokens" || k == "max_completion_tokens" || k == "n" || k == "stream" ||
        k == "stream_options" || k == "logprobs" || k == "echo" || k == "keep_alive")
      continue;
    return fail(Error::invalid(std::format("unsupported field '{}'", k), k));
  }
  if (auto r = readModel(body, req.job); !r) return r;
  if (auto r = readKeepAlive(body, req.job); !r) return r;
  for (auto& [k, v] : body.items()) {
    if (contains(kSamplingFields, k) && !v.is_null()) req.job.params[k] = v;
  }
  for (const char* k : {"max_tokens", "max_completion_tokens"}) {
    if (auto it = body.find(k); it != body.end() && !it->is_null()) req.job.params["max_tokens"] = *it;
  }
  // n > 1: several choices, each its own sequence (the backend checks the range).
  if (auto n = body.find("n"); n != body.end() && !n->is_null() && *n != 1) req.job.params["n"] = *n;
  if (auto e = body.find("echo"); e != body.end() && !e->is_null() && *e != false) {
    return fail(Error::invalid("'echo' is not supported", "echo"));
  }
  if (auto s = body.find("stream"); s != body.end() && !s->is_null()) {
    if (!s->is_boolean()) return fail(Error::invalid("'stream' must be true or false", "stream"));
    req.stream = *s;
  }
  if (auto so = body.find("stream_options"); so != body.end() && !so->is_null()) {
    auto usage = so->is_object() ? so->find("include_usage") : so->end();
    if (!so->is_object()) {
      return fail(Error::invalid("'stream_options' must be an object like {\"include_usage\": true}", "stream_options"));
    }
    if (usage != so->end() && !usage->is_boolean()) {
      return fail(Error::invalid("'stream_options.include_usage' must be true or false", "stream_options.include_usage"));
    }
    req.include_usage = usage != so->end() && usage->get<bool>();
  }
  return ok();
}

std::int64_t createdSeconds(const Job& job) { return job.created_at / 1000000; }

std::string b64(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                 static_cast<unsigned char>(bytes[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += kAlphabet[(v >> k) & 63];
  }
  if (i < bytes.size()) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace

Result<OpenAiRequest> parseCompletionRequest(const nlohmann::json& body) {
  OpenAiRequest req;
  req.job.type = "completion";
  if (auto r = readGeneration(body, req, {"prompt", "suffix", "best_of", "logit_bias"}); !r) return fail(r.error());
  // logprobs: n (0..5) likeliest tokens at each step besides the chosen one's; null: none.
  if (auto lp = body.find("logprobs"); lp != body.end() && !lp->is_null()) {
    if (!lp->is_number_integer() || *lp < 0 || *lp > 5) {
      return fail(Error::invalid("'logprobs' must be an integer from 0 to 5 (or null)", "logprobs"));
    }
    req.job.params["logprobs"] = true;
    req.job.params["top_logprobs"] = *lp;
  }
  auto p = body.find("prompt");
  if (p != body.end() && p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
    req.job.prompt = (*p)[0];
  } else if (p != body.end() && p->is_string()) {
    req.job.prompt = *p;
  } else {
    return fail(Error::invalid("'prompt' must be a string (or a list of one string)", "prompt"));
  }
  if (req.job.prompt.empty()) return fail(Error::invalid("'prompt' must not be empty", "prompt"));
  if (auto s = body.find("suffix"); s != body.end() && !s->is_null()) {
    return fail(Error::invalid("'suffix' is not supported", "suffix"));
  }
  if (auto b = body.find("best_of"); b != body.end() && !b->is_null() && *b != 1) {
    return fail(Error::invalid("only 'best_of': 1 is supported", "best_of"));
  }
  if (auto lb = body.find("logit_bias"); lb != body.end() && !lb->is_null() && !lb->empty()) {
    return fail(Error::invalid("'logit_bias' is not supported", "logit_bias"));
  }
  return req;
}

Result<OpenAiRequest> parseChatRequest(const nlohmann::json& body) {
  OpenAiRequest req;
  req.job.type = "chat";
  if (auto r = readGeneration(
          body, req, {"messages", "tools", "tool_choice", "parallel_tool_calls", "logit_bias", "top_logprobs"});
      !r) {
    return fail(r.error());
  }
  // Tools go to the job's params as they are (the backend checks them).
  for (const char* k : {"tools", "tool_choice", "parallel_tool_calls"}) {
    if (auto t = body.find(k); t != body.end() && !t->is_null() && !(t->is_array() && t->empty())) {
      req.job.params[k] = *t;
    }
  }
  if (auto lb = body.find("logit_bias"); lb != body.end() && !lb->is_null() && !lb->empty()) {
    return fail(Error::invalid("'logit_bias' is not supported", "logit_bias"));
  }
  // logprobs: true reports each token's; top_logprobs (0..20, needs logprobs) the likeliest others.
  bool logprobs = false;
  if (auto lp = body.find("logprobs"); lp != body.end() && !lp->is_null()) {
    if (!lp->is_boolean()) return fail(Error::invalid("'logprobs' must be true or false", "logprobs"));
    logprobs = *lp;
  }
  if (auto top = body.find("top_logprobs"); top != body.end() && !top->is_null()) {
    if (!top->is_number_integer() || *top < 0 || *top > 20) {
      return fail(Error::invalid("'top_logprobs' must be an integer from 0 to 20", "top_logprobs"));
    }
    if (!logprobs) return fail(Error::invalid("'top_logprobs' needs 'logprobs': true", "top_logprobs"));
    req.job.params["top_logprobs"] = *top;
  }
  if (logprobs) req.job.params["logprobs"] = true;
  auto m = body.find("messages");
  if (m == body.end() || !m->is_array() || m->empty()) {
    return fail(Error::invalid("'messages' must be a non-empty list of {role, content}", "messages"));
  }
  nlohmann::json messages = nlohmann::json::array();
  for (size_t i = 0; i < m->size(); ++i) {
    const auto& msg = (*m)[i];
    if (!msg.is_object()) return fail(Error::invalid(std::format("'messages[{}]' must be an object", i), "messages"));
    nlohmann::json out = {{"role", msg.value("role", nlohmann::json(nullptr))}};
    auto content = msg.find("content");
    if (content != msg.end() && content->is_array()) {
      // Content parts: text, images (data: URLs) and audio. Text alone becomes one string; with
      // media, the parts as the backend reads them ({"type": "image", "input": "image-1"}).
      auto parts = chatContentParts(*content, std::format("messages[{}].content", i), req.media);
      if (!parts) return fail(parts.error());
      out["content"] = std::move(*parts);
    } else {
      out["content"] = content != msg.end() ? *content : nlohmann::json(nullptr);
    }
    if (out["content"].is_null()) out["content"] = "";
    if (msg.contains("name")) out["name"] = msg["name"];
    for (const char* k : {"tool_calls", "tool_call_id"}) {
      if (auto t = msg.find(k); t != msg.end() && !t->is_null()) out[k] = *t;
    }
    messages.push_back(std::move(out));
  }
  req.job.params["messages"] = messages;
  for (auto& msg : messages) {
    if (msg["role"] != "user") continue;
    if (msg["content"].is_string()) req.job.prompt = msg["content"];
    if (msg["content"].is_array()) {
      req.job.prompt.clear();
      for (auto& part : msg["content"]) req.job.prompt += part.value("text", "");
    }
  }
  return req;
}

Result<nlohmann::json> chatContentParts(const nlohmann::json& content, const std::string& where, MediaParts& media) {
  nlohmann::json parts = nlohmann::json::array();
  std::string text;
  bool only_text = true;
  for (size_t k = 0; k < content.size(); ++k) {
    const auto& part = content[k];
    std::string w = std::format("{}[{}]", where, k);
    std::string type = stringAt(part, "type");
    if (type == "text") {
      if (!part.contains("text") || !part["text"].is_string()) {
        return fail(Error::invalid(std::format("'{}.text' must be a string", w), w + ".text"));
      }
      text += part["text"].get<std::string>();
      parts.push_back({{"type", "text"}, {"text", part["text"]}});
      continue;
    }
    Result<nlohmann::json> media_part = fail(Error::invalid(""));
    if (type == "image_url") {
      // {"url": ...} (the API's form), or the URL itself (as some clients send it)
      const auto iu = part.value("image_url", nlohmann::json());
      const nlohmann::json url = iu.is_object() ? iu.value("url", nlohmann::json()) : iu;
      if (!url.is_string()) {
        return fail(Error::invalid(std::format("'{}.image_url' must be {{\"url\": \"data:image/png;base64,...\"}}", w),
                                   w + ".image_url"));
      }
      media_part = media.imageUrl(url.get<std::string>(), w + ".image_url.url");
    } else if (type == "input_audio") {
      const auto audio = part.value("input_audio", nlohmann::json());
      const nlohmann::json data = audio.is_object() ? audio.value("data", nlohmann::json()) : nlohmann::json();
      if (!data.is_string()) {
        return fail(Error::invalid(std::format("'{}.input_audio' must be {{\"data\": \"<base64>\", \"format\"}}", w),
                                   w + ".input_audio"));
      }
      media_part = media.base64("audio", data.get<std::string>(), w + ".input_audio.data");
    } else {
      return fail(Error::invalid(
          std::format("'{}' must be a text, image_url or input_audio part (got {})", w,
                      type.empty() ? std::string("no type") : "'" + type.substr(0, 32) + "'"),
          w));
    }
    if (!media_part) return fail(media_part.error());
    only_text = false;
    parts.push_back(std::move(*media_part));
  }
  if (only_text) return nlohmann::json(text);
  return parts;
}

Result<OpenAiRequest> parseEmbeddingRequest(const nlohmann::json& body) {
  OpenAiRequest req;
  req.job.type = "embedding";
  for (auto& [k, v] : body.items()) {
    if (k != "model" && k != "input" && k != "encoding_format" && k != "user" && k != "dimensions" &&
        k != "keep_alive") {
      return fail(Error::invalid(std::format("unsupported field '{}'", k), k));
    }
  }
  if (auto r = readModel(body, req.job); !r) return fail(r.error());
  if (auto r = readKeepAlive(body, req.job); !r) return fail(r.error());
  auto in = body.find("input");
  if (in == body.end()) return fail(Error::invalid("'input' is required: a string or a list of strings", "input"));
  if (in->is_array() && !in->empty() && !(*in)[0].is_string()) {
    return fail(Error::invalid("'input' must be text: token-id inputs are not supported", "input"));
  }
  req.job.params["input"] = *in;
  req.job.prompt =
      in->is_string() ? in->get<std::string>() : (in->is_array() && !in->empty() ? (*in)[0].get<std::string>() : "");
  if (auto f = body.find("encoding_format"); f != body.end() && !f->is_null()) {
    if (*f != "float" && *f != "base64") {
      return fail(Error::invalid("'encoding_format' must be float or base64", "encoding_format"));
    }
    req.encoding_format = *f;
  }
  if (auto d = body.find("dimensions"); d != body.end() && !d->is_null()) {
    return fail(Error::invalid("'dimensions' is not supported: vectors have the model's full dimension", "dimensions"));
  }
  return req;
}

std::string finishReason(const Job& job) {
  std::string r = job.result.is_object() ? job.result.value("finish_reason", "stop") : "stop";
  return r == "length" || r == "tool_calls" ? r : "stop";
}

nlohmann::json toolCalls(const Job& job) {
  if (!job.result.is_object()) return nullptr;
  auto it = job.result.find("tool_calls");
  return it != job.result.end() && it->is_array() && !it->empty() ? *it : nlohmann::json(nullptr);
}

nlohmann::json usage(const Job& job) {
  int in = job.result.is_object() ? job.result.value("tokens_in", 0) : 0;
  int out = job.result.is_object() ? job.result.value("tokens_out", 0) : 0;
  // cached: prompt tokens whose KV the model still held from an earlier job (the prompt cache).
  int cached = job.result.is_object() ? job.result.value("tokens_cached", 0) : 0;
  return {{"prompt_tokens", in},
          {"completion_tokens", out},
          {"total_tokens", in + out},
          {"prompt_tokens_details", {{"cached_tokens", cached}}},
          {"completion_tokens_details", {{"reasoning_tokens", 0}}}};
}

nlohmann::json chatLogprobs(const nlohmann::json& entries) {
  if (!entries.is_array()) return nullptr;
  return {{"content", entries}, {"refusal", nullptr}};
}

nlohmann::json completionLogprobs(const nlohmann::json& entries, size_t text_offset) {
  if (!entries.is_array()) return nullptr;
  nlohmann::json out = {{"tokens", nlohmann::json::array()},
                        {"token_logprobs", nlohmann::json::array()},
                        {"top_logprobs", nlohmann::json::array()},
                        {"text_offset", nlohmann::json::array()}};
  for (const auto& e : entries) {
    std::string token = e.value("token", "");
    out["tokens"].push_back(token);
    out["token_logprobs"].push_back(e["logprob"]);
    nlohmann::json top = nlohmann::json::object();
    for (const auto& alt : e.value("top_logprobs", nlohmann::json::array()))
      top[alt.value("token", "")] = alt["logprob"];
    out["top_logprobs"].push_back(std::move(top));
    out["text_offset"].push_back(text_offset);
    text_offset += token.size();
  }
  return out;
}

namespace {
nlohmann::json resultLogprobs(const Job& job) {
  auto it = job.result.is_object() ? job.result.find("logprobs") : job.result.end();
  return job.result.is_object() && it != job.result.end() ? *it : nlohmann::json(nullptr);
}
}  // namespace

std::vector<Job> choiceViews(const Job& job) {
  auto it = job.result.is_object() ? job.result.find("choices") : job.result.end();
  if (it == job.result.end() || !it->is_array()) return {job};
  std::vector<Job> out;
  for (const auto& c : *it) {
    Job one = job;
    for (const char* k : {"text", "finish_reason", "tool_calls", "logprobs"}) {
      if (c.contains(k)) {
        one.result[k] = c[k];
      } else {
        one.result.erase(k);
      }
    }
    one.result.erase("choices");
    out.push_back(std::move(one));
  }
  return out;
}

nlohmann::json completionResponse(const Job& job) {
  nlohmann::json choices = nlohmann::json::array();
  auto views = choiceViews(job);
  for (size_t i = 0; i < views.size(); ++i) {
    choices.push_back({{"index", i},
                       {"text", views[i].result.value("text", "")},
                       {"logprobs", completionLogprobs(resultLogprobs(views[i]), 0)},
                       {"finish_reason", finishReason(views[i])}});
  }
  return {{"id", std::format("cmpl-{}", job.id)}, {"object", "text_completion"},
          {"created", createdSeconds(job)},       {"model", job.model},
          {"choices", std::move(choices)},        {"usage", usage(job)}};
}

// The assistant's message: its text, and the tool calls it made (content null when it only called).
nlohmann::json chatMessage(const Job& job) {
  nlohmann::json calls = toolCalls(job);
  std::string text = job.result.value("text", "");
  nlohmann::json m = {{"role", "assistant"},
                      {"content", calls.is_null() || !text.empty() ? nlohmann::json(text) : nlohmann::json(nullptr)},
                      {"refusal", nullptr}};
  if (!calls.is_null()) m["tool_calls"] = std::move(calls);
  return m;
}

nlohmann::json chatResponse(const Job& job) {
  nlohmann::json choices = nlohmann::json::array();
  auto views = choiceViews(job);
  for (size_t i = 0; i < views.size(); ++i) {
    choices.push_back({{"index", i},
                       {"message", chatMessage(views[i])},
                       {"logprobs", chatLogprobs(resultLogprobs(views[i]))},
                       {"finish_reason", finishReason(views[i])}});
  }
  return {{"id", std::format("chatcmpl-{}", job.id)},
          {"object", "chat.completion"},
          {"created", createdSeconds(job)},
          {"model", job.model},
          {"choices", std::move(choices)},
          {"usage", usage(job)}};
}

nlohmann::json embeddingResponse(const Job& job, const std::string& encoding_format) {
  nlohmann::json data = nlohmann::json::array();
  const auto& vectors = job.result["embeddings"];
  for (size_t i = 0; i < vectors.size(); ++i) {
    nlohmann::json embedding = vectors[i];
    if (encoding_format == "base64") {
      std::string bytes;
      for (auto& x : vectors[i]) {
        float f = x.get<float>();
        char b[4];
        std::memcpy(b, &f, 4);
        bytes.append(b, 4);
      }
      embedding = b64(bytes);
    }
    data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", std::move(embedding)}});
  }
  int tokens = job.result.value("tokens_in", 0);
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", job.model},
          {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
}

nlohmann::json completionChunk(const Job& job, const std::string& text, const nlohmann::json& finish_reason,
                               const nlohmann::json& logprobs, int index) {
  return {{"id", std::format("cmpl-{}", job.id)},
          {"object", "text_completion"},
          {"created", createdSeconds(job)},
          {"model", job.model},
          {"choices", {{{"index", index}, {"text", text}, {"logprobs", logprobs}, {"finish_reason", finish_reason}}}}};
}

nlohmann::json chatChunk(const Job& job, const nlohmann::json& delta, const nlohmann::json& finish_reason,
                         const nlohmann::json& logprobs, int index) {
  return {
      {"id", std::format("chatcmpl-{}", job.id)},
      {"object", "chat.completion.chunk"},
      {"created", createdSeconds(job)},
      {"model", job.model},
      {"choices", {{{"index", index}, {"delta", delta}, {"logprobs", logprobs}, {"finish_reason", finish_reason}}}}};
}

}  // namespace statim::api
