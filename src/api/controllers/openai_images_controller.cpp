// POST /v1/images/generations (OpenAI-compatible). The request becomes a normal durable `image`
// job (visible in GET /job); the route waits for it and answers with the PNGs as b64_json or as
// the job's artifact URLs. Extensions: seed, steps, guidance_scale, negative_prompt.
#include <chrono>
#include <format>

#include <drogon/utils/Utilities.h>

#include "api/errors.h"
#include "api/filters/auth.h"
#include "api/follow.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"

namespace statim::api {
namespace {

using drogon::HttpRequestPtr;

struct ImagesRequest {
  NewJob job;
  std::string response_format = "b64_json";
};

// The body's fields as job params. Sizes and counts are checked again by the backend; here
// only their OpenAI shapes ("1024x1024", n) are parsed.
Result<ImagesRequest> parseImagesRequest(const nlohmann::json& body) {
  static const std::vector<std::string_view> kKnown = {"model", "prompt", "n", "size", "response_format", "user",
                                                       "seed", "steps", "guidance_scale", "negative_prompt"};
  for (auto& [k, v] : body.items()) {
    if (std::ranges::find(kKnown, k) == kKnown.end()) {
      std::string list;
      for (auto n : kKnown) list += (list.empty() ? "" : ", ") + std::string(n);
      return fail(Error::invalid(std::format("unknown field '{}' (allowed: {})", k, list), k));
    }
  }
  ImagesRequest r;
  auto str = [&](const char* key, bool required) -> Result<std::string> {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) {
      if (required) return fail(Error::invalid(std::format("'{}' is required", key), key));
      return std::string();
    }
    if (!it->is_string()) return fail(Error::invalid(std::format("'{}' must be a string", key), key));
    return it->get<std::string>();
  };
  auto model = str("model", true);
  if (!model) return fail(model.error());
  auto prompt = str("prompt", true);
  if (!prompt) return fail(prompt.error());
  if (prompt->empty()) return fail(Error::invalid("'prompt' must not be empty", "prompt"));
  r.job.model = *model;
  r.job.type = "image";
  r.job.prompt = *prompt;
  auto format = str("response_format", false);
  if (!format) return fail(format.error());
  if (!format->empty()) {
    if (*format != "b64_json" && *format != "url")
      return fail(Error::invalid("'response_format' must be b64_json or url", "response_format"));
    r.response_format = *format;
  }
  auto size = str("size", false);
  if (!size) return fail(size.error());
  if (!size->empty()) {
    int w = 0, h = 0;
    char x = 0, extra = 0;
    if (std::sscanf(size->c_str(), "%d%c%d%c", &w, &x, &h, &extra) != 3 || x != 'x' || w <= 0 || h <= 0) {
      return fail(Error::invalid(std::format("'size' must be WIDTHxHEIGHT (e.g. 512x512), got '{}'", size->substr(0, 32)),
                                 "size"));
    }
    r.job.params["width"] = w;
    r.job.params["height"] = h;
  }
  if (auto it = body.find("n"); it != body.end() && !it->is_null()) r.job.params["num_images"] = *it;
  for (const char* k : {"seed", "steps", "guidance_scale", "negative_prompt"}) {
    if (auto it = body.find(k); it != body.end() && !it->is_null()) r.job.params[k] = *it;
  }
  return r;
}

// Backend errors name "params.<x>": name the field the way the client wrote it.
Error openAiField(Error e) {
  auto rename = [&](std::string_view from, std::string_view to) {
    if (e.field != from) return;
    e.field = to;
    for (size_t at; (at = e.message.find(std::format("'{}'", from))) != std::string::npos;)
      e.message.replace(at + 1, from.size(), to);
  };
  rename("params.num_images", "n");
  rename("params.width", "size");
  rename("params.height", "size");
  if (e.field.starts_with("params.")) {
    std::string from = e.field;
    rename(from, from.substr(7));
  }
  return e;
}

nlohmann::json render(const ApiContext& ctx, const Job& job, const std::string& format, const std::string& host) {
  nlohmann::json data = nlohmann::json::array();
  for (auto& f : job.artifacts) {
    if (format == "url") {
      data.push_back({{"url", std::format("http://{}/job/{}/artifacts/{}", host, job.id, f.name)}});
    } else {
      auto bytes = ctx.blobs.read(f.sha256);
      data.push_back({{"b64_json", bytes ? drogon::utils::base64Encode(*bytes) : std::string()}});
    }
  }
  auto created = job.finished_at ? *job.finished_at / 1'000'000 : job.created_at / 1'000'000;
  return {{"created", created}, {"data", std::move(data)}};
}

}  // namespace

void registerOpenAiImageRoutes(const ApiContext& ctx) {
  addRoute("/v1/images/generations", drogon::Post, Access::kUser, [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    auto body = parseJsonObject(*req);
    if (!body) return cb(errorResponse(body.error()));
    auto parsed = parseImagesRequest(*body);
    if (!parsed) return cb(errorResponse(parsed.error()));
    NewJob job = parsed->job;
    if (auto r = bindToCaller(*req, job); !r) return cb(errorResponse(r.error()));
    std::string host = req->getHeader("host");
    if (host.empty()) host = std::format("{}:{}", req->localAddr().toIp(), req->localAddr().toPort());
    std::string format = parsed->response_format;
    ctx.scheduler.submit(std::move(job), [&ctx, req, format, host, cb = std::move(cb)](Result<Job> r) {
      if (!r) return cb(errorResponse(openAiField(r.error())));
      noteJob(*req, r->id, r->model);
      auto followed = followJob(ctx.store, ctx.scheduler.events(), r->id, [&ctx, format, host, cb](const JobEvent& e) {
        if (!e.terminal()) return true;
        // Re-read: the terminal event's copy need not list the artifacts.
        auto done = ctx.store.get(e.job->id);
        if (!done) {
          cb(errorResponse(done.error()));
        } else if (done->status == JobStatus::kCompleted) {
          auto resp = jsonResponse(render(ctx, *done, format, host));
          resp->addHeader("X-Statim-Job-Id", std::to_string(done->id));
          cb(resp);
        } else {
          cb(errorResponse(unfinishedJobError(*done)));
        }
        return false;
      });
      if (!followed) cb(errorResponse(followed.error()));
    });
  });
}

}  // namespace statim::api
