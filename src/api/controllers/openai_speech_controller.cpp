// POST /v1/audio/speech (OpenAI-compatible text-to-speech). Each request is a normal durable
// `speech` job (visible in GET /job); the route waits for it and answers the audio bytes.
//
// OpenAI's voice names map onto espeak-ng voices by this fixed table (docs/api.md); any other
// voice is passed through as an espeak-ng voice name ("de", "en-gb+f2"). OpenAI's `speed` is a
// multiplier of the normal rate: words per minute = round(175 * speed), clamped to espeak-ng's
// 80..450. The model is a statim model id whose backend serves speech (e.g. tts-espeak).
#include <algorithm>
#include <array>
#include <cmath>
#include <format>
#include <utility>

#include <trantor/net/EventLoop.h>

#include "api/errors.h"
#include "api/filters/auth.h"
#include "api/follow.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"

namespace statim::api {
namespace {

using drogon::HttpRequestPtr;

constexpr std::array<std::pair<std::string_view, std::string_view>, 11> kOpenAiVoices = {{
    {"alloy", "en-us"},
    {"ash", "en-us+m3"},
    {"ballad", "en-gb+m4"},
    {"coral", "en-us+f2"},
    {"echo", "en-us+m7"},
    {"fable", "en-gb"},
    {"nova", "en-us+f3"},
    {"onyx", "en-us+m2"},
    {"sage", "en-gb+f4"},
    {"shimmer", "en-us+f4"},
    {"verse", "en-gb-scotland"},
}};
constexpr double kNormalWpm = 175;

// The fields a speech job's errors name, as the OpenAI request names them.
constexpr std::array<std::pair<std::string_view, std::string_view>, 4> kFieldNames = {{
    {"params.voice", "voice"},
    {"params.format", "response_format"},
    {"params.speed", "speed"},
    {"prompt", "input"},
}};

Error openAiNames(Error e) {
  for (auto [ours, theirs] : kFieldNames) {
    if (e.field == ours) e.field = theirs;
    std::string quoted = std::format("'{}'", ours);
    for (size_t at; (at = e.message.find(quoted)) != std::string::npos;) {
      e.message.replace(at, quoted.size(), std::format("'{}'", theirs));
    }
  }
  return e;
}

Result<NewJob> parseSpeechRequest(const nlohmann::json& body) {
  for (auto& [k, v] : body.items()) {
    if (k != "model" && k != "input" && k != "voice" && k != "response_format" && k != "speed" &&
        k != "instructions" && k != "stream_format") {
      return fail(Error::invalid(
          std::format("unsupported field '{}' (allowed: model, input, voice, response_format, speed)", k), k));
    }
  }
  NewJob job;
  job.type = "speech";
  auto model = body.find("model");
  if (model == body.end() || !model->is_string() || model->get_ref<const std::string&>().empty()) {
    return fail(Error::invalid("'model' is required: the id of a speech model from GET /v1/models", "model"));
  }
  job.model = *model;
  auto input = body.find("input");
  if (input == body.end() || !input->is_string()) {
    return fail(Error::invalid("'input' is required: the text to speak, as a string", "input"));
  }
  if (input->get_ref<const std::string&>().empty()) return fail(Error::invalid("'input' must not be empty", "input"));
  job.prompt = *input;
  if (auto v = body.find("voice"); v != body.end() && !v->is_null()) {
    if (!v->is_string()) {
      return fail(Error::invalid("'voice' must be a string: alloy, ash, ballad, coral, echo, fable, nova, onyx, sage, "
                                 "shimmer, verse or an espeak-ng voice",
                                 "voice"));
    }
    std::string voice = *v;
    auto mapped = std::ranges::find_if(kOpenAiVoices, [&](auto& v) { return v.first == voice; });
    job.params["voice"] = mapped != kOpenAiVoices.end() ? std::string(mapped->second) : voice;
  }
  std::string format = "mp3";  // OpenAI's default
  if (auto f = body.find("response_format"); f != body.end() && !f->is_null()) {
    if (!f->is_string()) return fail(Error::invalid("'response_format' must be a string", "response_format"));
    format = *f;
    if (format == "aac") {
      return fail(Error::invalid(
          "'response_format' aac is not supported (libsndfile writes no AAC); use mp3, opus, flac, wav or pcm",
          "response_format"));
    }
    if (format != "mp3" && format != "opus" && format != "flac" && format != "wav" && format != "pcm") {
      return fail(Error::invalid(std::format("'response_format' must be one of mp3, opus, flac, wav, pcm (got '{}')",
                                             format.substr(0, 32)),
                                 "response_format"));
    }
  }
  job.params["format"] = format;
  if (auto s = body.find("speed"); s != body.end() && !s->is_null()) {
    if (!s->is_number() || !(s->get<double>() >= 0.25 && s->get<double>() <= 4.0)) {
      return fail(Error::invalid("'speed' must be a number between 0.25 and 4.0 (1.0 is normal)", "speed"));
    }
    job.params["speed"] = std::clamp(static_cast<int>(std::lround(kNormalWpm * s->get<double>())), 80, 450);
  }
  if (auto i = body.find("instructions"); i != body.end() && !i->is_null() && *i != "") {
    return fail(Error::invalid("'instructions' is not supported: espeak-ng voices cannot be steered by text",
                               "instructions"));
  }
  if (auto sf = body.find("stream_format"); sf != body.end() && !sf->is_null() && *sf != "audio") {
    return fail(Error::invalid("'stream_format' must be audio (sse is not supported)", "stream_format"));
  }
  return job;
}

// Answers the finished job's audio. Runs on the request's I/O loop: reading the file is no work
// for the event hub's thread.
drogon::HttpResponsePtr audioResponse(const ApiContext& ctx, const Job& job) {
  if (job.status != JobStatus::kCompleted) return errorResponse(unfinishedJobError(job));
  if (job.artifacts.empty()) return errorResponse(Error::internal(std::format("job {} produced no audio", job.id)));
  const JobFile& file = job.artifacts.front();
  auto bytes = ctx.blobs.read(file.sha256);
  if (!bytes) return errorResponse(bytes.error());
  auto resp = drogon::HttpResponse::newHttpResponse();
  resp->setContentTypeString(file.content_type);
  resp->setBody(std::move(*bytes));
  resp->addHeader("X-Statim-Job-Id", std::to_string(job.id));
  return resp;
}

}  // namespace

void registerOpenAiSpeechRoutes(const ApiContext& ctx) {
  addRoute("/v1/audio/speech", drogon::Post, Access::kUser, [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    auto body = parseJsonObject(*req);
    if (!body) return cb(errorResponse(body.error()));
    auto job = parseSpeechRequest(*body);
    if (!job) return cb(errorResponse(job.error()));
    if (auto r = bindToCaller(*req, *job); !r) return cb(errorResponse(r.error()));
    trantor::EventLoop* loop = trantor::EventLoop::getEventLoopOfCurrentThread();
    ctx.scheduler.submit(std::move(*job), [&ctx, loop, req, cb = std::move(cb)](Result<Job> r) {
      if (!r) return cb(errorResponse(openAiNames(r.error())));
      noteJob(*req, r->id, r->model);
      auto followed = followJob(ctx.store, ctx.scheduler.events(), r->id, [&ctx, loop, cb](const JobEvent& e) {
        if (!e.terminal()) return true;
        loop->queueInLoop([&ctx, cb, done = *e.job] { cb(audioResponse(ctx, done)); });
        return false;
      });
      if (!followed) cb(errorResponse(followed.error()));
    });
  });
}

}  // namespace statim::api
