#include "api/dto/job_dto.h"

#include <charconv>
#include <cmath>
#include <format>

#include "core/clock.h"
#include "core/strings.h"
#include "core/url.h"

namespace statim::api {
namespace {

constexpr size_t kMaxPromptBytes = 1 << 20;
constexpr size_t kMaxModelBytes = 128;

nlohmann::ordered_json optTime(const std::optional<Micros>& t) {
  return t ? nlohmann::ordered_json(formatIsoUtc(*t)) : nlohmann::ordered_json(nullptr);
}

Result<std::optional<Webhook>> parseWebhook(const nlohmann::json& body) {
  auto url = body.find("webhook");
  auto events = body.find("webhook_events");
  bool has_url = url != body.end() && !url->is_null();
  if (!has_url) {
    if (events != body.end() && !events->is_null()) {
      return fail(Error::invalid("'webhook_events' needs 'webhook' (the URL to send them to)", "webhook_events"));
    }
    return std::nullopt;
  }
  if (!url->is_string()) {
    return fail(Error::invalid(std::format("'webhook' must be a URL string, not {}", url->type_name()), "webhook"));
  }
  auto parsed = parseHttpUrl(url->get<std::string>(), "webhook");
  if (!parsed) return fail(parsed.error());
  Webhook w{url->get<std::string>(), {"completed", "failed", "cancelled"}};
  if (events != body.end() && !events->is_null()) {
    if (!events->is_array() || events->empty()) {
      return fail(Error::invalid(std::format("'webhook_events' must be a non-empty list of: {}", joinNames(kJobEvents)),
                                 "webhook_events"));
    }
    w.events.clear();
    for (auto& e : *events) {
      if (!e.is_string() || std::ranges::find(kJobEvents, e.get<std::string>()) == std::end(kJobEvents)) {
        return fail(Error::invalid(std::format("'webhook_events' has {}; allowed events: {}",
                                               e.is_string() ? "'" + e.get<std::string>().substr(0, 64) + "'"
                                                             : std::string("a ") + e.type_name(),
                                               joinNames(kJobEvents)),
                                   "webhook_events"));
      }
      if (std::ranges::find(w.events, e.get<std::string>()) == w.events.end()) w.events.push_back(e);
    }
  }
  return std::optional<Webhook>(std::move(w));
}

nlohmann::ordered_json filesToJson(const std::vector<JobFile>& files, const std::string& url_prefix) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (auto& f : files) {
    nlohmann::ordered_json o = {{"name", f.name}, {"content_type", f.content_type}, {"bytes", f.bytes}, {"sha256", f.sha256}};
    if (!url_prefix.empty()) o["url"] = url_prefix + f.name;
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace

// Each earlier attempt with its times as ISO-8601, as the job's own are.
nlohmann::ordered_json earlierAttempts(const Job& j) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& a : j.earlier_attempts) {
    auto time = [&a](const char* k) {
      return a.contains(k) && a[k].is_number_integer() ? nlohmann::ordered_json(formatIsoUtc(a[k].get<Micros>()))
                                                       : nlohmann::ordered_json(nullptr);
    };
    out.push_back({{"attempt", a.value("attempt", 0)},
                   {"started_at", time("started_at")},
                   {"requeued_at", time("requeued_at")},
                   {"worker", a.value("lease_owner", "")}});
  }
  return out;
}

nlohmann::ordered_json jobToJson(const Job& j) {
  // result.artifacts gets each file's URL (the store keeps only name, type, size, hash).
  nlohmann::ordered_json result = j.result;
  if (result.is_object() && !j.artifacts.empty()) {
    result["artifacts"] = filesToJson(j.artifacts, std::format("/job/{}/artifacts/", j.id));
  }
  return nlohmann::ordered_json{
      {"id", j.id},
      {"model", j.model},
      {"type", j.type},
      {"prompt", j.prompt},
      {"params", j.params},
      {"priority", j.priority},
      {"status", toString(j.status)},
      {"status_message", j.status_message},
      {"timestamp", formatTimestamp(j.created_at)},
      {"created_at", formatIsoUtc(j.created_at)},
      {"started_at", optTime(j.started_at)},
      {"finished_at", optTime(j.finished_at)},
      {"result", std::move(result)},
      {"error", j.error.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(j.error)},
      {"attempts", j.attempts},
      {"earlier_attempts", earlierAttempts(j)},
      {"inputs", filesToJson(j.inputs, std::format("/job/{}/inputs/", j.id))},
      {"webhook", j.webhook ? nlohmann::ordered_json{{"url", j.webhook->url}, {"events", j.webhook->events}}
                            : nlohmann::ordered_json(nullptr)},
  };
}

Result<NewJob> parseNewJob(const nlohmann::json& body, bool has_inputs) {
  static const std::initializer_list<std::string_view> kFields = {
      "model", "prompt", "messages", "input", "params", "priority", "webhook", "webhook_events", "keep_alive"};
  for (auto& [k, v] : body.items()) {
    if (std::ranges::find(kFields, k) == kFields.end()) {
      return fail(Error::invalid(std::format("unknown field '{}' (allowed: {})", k, joinNames(kFields)), k));
    }
  }
  NewJob job;
  auto model = body.find("model");
  if (model == body.end() || model->is_null()) {
    return fail(Error::invalid("'model' is required: the id of a model from GET /models", "model"));
  }
  if (!model->is_string())
    return fail(Error::invalid(std::format("'model' must be a string, not {}", model->type_name()), "model"));
  job.model = model->get<std::string>();
  if (job.model.empty()) return fail(Error::invalid("'model' must not be empty", "model"));
  if (job.model.size() > kMaxModelBytes) {
    return fail(Error::invalid(std::format("'model' must be at most {} bytes", kMaxModelBytes), "model"));
  }

  if (auto p = body.find("params"); p != body.end() && !p->is_null()) {
    if (!p->is_object())
      return fail(Error::invalid(std::format("'params' must be an object, not {}", p->type_name()), "params"));
    job.params = *p;
  }
  for (const char* inner : {"messages", "input"}) {
    if (job.params.contains(inner)) {
      return fail(Error::invalid(std::format("give '{}' at the top level, not inside 'params'", inner),
                                 std::string("params.") + inner));
    }
  }

  // The input: exactly one of prompt (completion), messages (chat), input (embedding).
  int given = body.contains("prompt") + body.contains("messages") + body.contains("input");
  bool files_only = given == 0 && has_inputs;  // a file job (ocr, transcription, ...): the files are the input
  if (given == 0 && !files_only)
    return fail(Error::invalid("'prompt' is required (or 'messages' for chat, 'input' for embeddings)", "prompt"));
  if (given > 1) return fail(Error::invalid("give only one of 'prompt', 'messages' and 'input'", "prompt"));
  if (files_only) {
    // no text input: the model's job type and its files say what to do
  } else if (auto messages = body.find("messages"); messages != body.end()) {
    if (!messages->is_array() || messages->empty()) {
      return fail(Error::invalid("'messages' must be a non-empty list of {role, content}", "messages"));
    }
    job.type = "chat";
    job.params["messages"] = *messages;
    // The last user message stands for the job in listings.
    for (auto& m : *messages) {
      // Shapes are checked by the backend (naming the field); only well-formed entries count here.
      if (m.is_object() && m.contains("role") && m["role"] == "user" && m.contains("content") && m["content"].is_string()) {
        job.prompt = m["content"];
      }
    }
  } else if (auto input = body.find("input"); input != body.end()) {
    job.type = "embedding";
    job.params["input"] = *input;
    if (input->is_string())
      job.prompt = *input;
    else if (input->is_array() && !input->empty() && (*input)[0].is_string())
      job.prompt = (*input)[0];
  } else {
    auto prompt = body.find("prompt");
    if (prompt->is_null()) return fail(Error::invalid("'prompt' is required", "prompt"));
    if (!prompt->is_string()) {
      return fail(Error::invalid(std::format("'prompt' must be a string, not {}", prompt->type_name()), "prompt"));
    }
    job.prompt = prompt->get<std::string>();
    if (job.prompt.empty()) return fail(Error::invalid("'prompt' must not be empty", "prompt"));
  }
  if (job.prompt.size() > kMaxPromptBytes) {
    return fail(Error::invalid(std::format("'prompt' must be at most {} bytes", kMaxPromptBytes), "prompt"));
  }

  if (auto p = body.find("priority"); p != body.end() && !p->is_null()) {
    if (!p->is_number_integer())
      return fail(Error::invalid("'priority' must be an integer between -100 and 100", "priority"));
    // Non-negative JSON integers parse as unsigned; anything that large is out of range anyway.
    auto v = p->is_number_unsigned() && p->get<std::uint64_t>() > 100 ? 1000 : p->get<std::int64_t>();
    if (v < -100 || v > 100)
      return fail(Error::invalid("'priority' must be an integer between -100 and 100", "priority"));
    job.priority = static_cast<int>(v);
  }
  if (auto k = body.find("keep_alive"); k != body.end() && !k->is_null()) {
    auto v = parseKeepAlive(*k);
    if (!v) return fail(v.error());
    job.keep_alive = *v;
  }
  auto webhook = parseWebhook(body);
  if (!webhook) return fail(webhook.error());
  job.webhook = std::move(*webhook);
  return job;
}

Result<double> parseKeepAlive(const nlohmann::json& v, const std::string& field) {
  auto bad = [&] {
    return fail(Error::invalid(std::format("'{}' must be seconds (a number) or a duration such as \"30s\", \"5m\" "
                                           "or \"1h\"; -1 keeps the model loaded, 0 unloads it once idle",
                                           field),
                               field));
  };
  double seconds = 0;
  if (v.is_number()) {
    seconds = v.get<double>();
  } else if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), seconds);
    if (ec != std::errc{}) return bad();
    std::string_view unit(ptr, s.data() + s.size());
    if (unit == "m") {
      seconds *= 60;
    } else if (unit == "h") {
      seconds *= 3600;
    } else if (unit != "" && unit != "s") {
      return bad();
    }
  } else {
    return bad();
  }
  if (!std::isfinite(seconds) || seconds > 365.0 * 24 * 3600) return bad();
  return seconds < 0 ? -1.0 : seconds;
}

Error paramsAsTopLevel(Error e) {
  if (!e.field.starts_with("params.")) return e;
  e.field = e.field.substr(7);
  for (size_t at; (at = e.message.find("'params.")) != std::string::npos;) e.message.erase(at + 1, 7);
  return e;
}

Error topLevelNames(Error e) {
  for (std::string_view inner : {"messages", "input"}) {
    std::string from = "params." + std::string(inner);
    if (!e.field.starts_with(from)) continue;
    e.field.erase(0, 7);
    for (size_t at; (at = e.message.find(from)) != std::string::npos;) e.message.erase(at, 7);
  }
  return e;
}

Result<JobId> parseJobId(std::string_view text) {
  JobId id = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size() || id <= 0 || text[0] == '+') {
    std::string shown(text.substr(0, 64));
    return fail(Error::invalid(std::format("job id must be a positive integer (got '{}')", shown), "id"));
  }
  return id;
}

}  // namespace statim::api
