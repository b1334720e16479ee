// POST /v1/audio/transcriptions, OpenAI-compatible: multipart/form-data with the audio `file`,
// `model` and optional language, prompt, temperature, response_format (json | text |
// verbose_json | srt | vtt) and timestamp_granularities[] (segment). Each request is a normal
// durable `transcription` job (visible in GET /job); the route waits for it and renders its result.
#include <charconv>
#include <format>

#include <drogon/MultiPart.h>

#include "api/dto/transcription_dto.h"
#include "api/errors.h"
#include "api/filters/auth.h"
#include "api/follow.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"
#include "core/media_type.h"

namespace statim::api {
namespace {

using drogon::HttpRequestPtr;

struct TranscriptionRequest {
  NewJob job;
  TranscriptFormat format = TranscriptFormat::kJson;
};

// Names fields the way the form did: the job's params.language is the form's language, and the
// input file is `file`.
Error formNames(Error e) {
  for (std::string prefix : {"params.", "inputs."}) {
    if (e.field.rfind(prefix, 0) != 0) continue;
    e.field = e.field.substr(prefix.size());
    for (size_t at; (at = e.message.find("'" + prefix)) != std::string::npos;) e.message.erase(at + 1, prefix.size());
  }
  return e;
}

Result<double> parseNumber(const std::string& field, const std::string& text) {
  double v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || ptr != text.data() + text.size()) {
    return fail(Error::invalid(std::format("'{}' must be a number (got '{}')", field, text.substr(0, 32)), field));
  }
  return v;
}

Result<TranscriptionRequest> parseForm(const drogon::HttpRequestPtr& req, BlobStore& blobs) {
  if (req->contentType() != drogon::CT_MULTIPART_FORM_DATA) {
    return fail(Error::invalid("send the audio as multipart/form-data with the fields 'file' and 'model'", "file"));
  }
  drogon::MultiPartParser form;
  if (form.parse(req) != 0) return fail(Error::invalid("malformed multipart/form-data body"));
  TranscriptionRequest out;
  out.job.type = "transcription";
  out.job.params = {{"timestamps", true}};  // verbose_json, srt and vtt need the segments' times
  for (auto& [k, v] : form.getParameters()) {
    if (k == "model") {
      out.job.model = v;
    } else if (k == "language" || k == "prompt") {
      if (!v.empty()) out.job.params[k] = v;
    } else if (k == "temperature") {
      auto t = parseNumber(k, v);
      if (!t) return fail(t.error());
      out.job.params[k] = *t;
    } else if (k == "response_format") {
      auto f = parseTranscriptFormat(v);
      if (!f) return fail(f.error());
      out.format = *f;
    } else if (k == "timestamp_granularities[]" || k == "timestamp_granularities") {
      if (v != "segment") {
        return fail(Error::invalid(
            std::format("'timestamp_granularities[]' supports only \"segment\" (got \"{}\")", v.substr(0, 32)),
            "timestamp_granularities[]"));
      }
    } else {
      return fail(Error::invalid(std::format("unknown field '{}' (allowed: file, model, language, prompt, "
                                             "temperature, response_format, timestamp_granularities[])",
                                             k.substr(0, 64)),
                                 k.substr(0, 64)));
    }
  }
  if (out.job.model.empty()) return fail(Error::invalid("'model' is required", "model"));
  const drogon::HttpFile* file = nullptr;
  for (auto& f : form.getFiles()) {
    if (f.getItemName() != "file") {
      return fail(Error::invalid(std::format("unknown file field '{}': send the audio as 'file'",
                                             f.getItemName().substr(0, 64)),
                                 f.getItemName().substr(0, 64)));
    }
    file = &f;
  }
  if (!file) return fail(Error::invalid("'file' is required: the audio to transcribe", "file"));
  if (file->fileLength() == 0) return fail(Error::invalid("'file' is empty", "file"));
  auto stored = blobs.put("file", sniffContentType(file->fileContent()), file->fileContent());
  if (!stored) return fail(stored.error());
  out.job.inputs.push_back(std::move(*stored));
  return out;
}

drogon::HttpResponsePtr textResponse(std::string body, const char* content_type) {
  auto resp = drogon::HttpResponse::newHttpResponse();
  resp->setContentTypeString(content_type);
  resp->setBody(std::move(body));
  return resp;
}

drogon::HttpResponsePtr render(const Job& job, TranscriptFormat format) {
  const nlohmann::json& r = job.result;
  switch (format) {
    case TranscriptFormat::kJson: return jsonResponse({{"text", r.value("text", "")}});
    case TranscriptFormat::kText: return textResponse(r.value("text", "") + "\n", "text/plain; charset=utf-8");
    case TranscriptFormat::kVerboseJson: return jsonResponse(toVerboseJson(r));
    case TranscriptFormat::kSrt: return textResponse(toSrt(r), "application/x-subrip; charset=utf-8");
    case TranscriptFormat::kVtt: return textResponse(toVtt(r), "text/vtt; charset=utf-8");
  }
  return jsonResponse({{"text", r.value("text", "")}});
}

void respondWhenDone(const ApiContext& ctx, TranscriptFormat format, const Job& job, Callback cb) {
  auto r = followJob(ctx.store, ctx.scheduler.events(), job.id, [format, cb](const JobEvent& e) {
    if (!e.terminal()) return true;
    const Job& done = *e.job;
    if (done.status == JobStatus::kCompleted) {
      auto resp = render(done, format);
      resp->addHeader("X-Statim-Job-Id", std::to_string(done.id));
      cb(resp);
    } else if (done.status == JobStatus::kCancelled) {
      cb(errorResponse({ErrorCode::kCancelled, std::format("job {} was cancelled", done.id), {}}));
    } else {
      // A file that is not decodable audio is the client's mistake, not the server's.
      bool bad_input = done.error.find("input 'file'") != std::string::npos;
      cb(errorResponse(bad_input ? Error::invalid(std::format("job {} failed: {}", done.id, done.error), "file")
                                 : Error::backend(std::format("job {} failed: {}", done.id, done.error))));
    }
    return false;
  });
  if (!r) cb(errorResponse(r.error()));
}

}  // namespace

void registerOpenAiAudioRoutes(const ApiContext& ctx) {
  addRoute("/v1/audio/transcriptions", drogon::Post, Access::kUser, [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    auto parsed = parseForm(req, ctx.blobs);
    if (!parsed) return cb(errorResponse(parsed.error()));
    NewJob job = std::move(parsed->job);
    if (auto r = bindToCaller(*req, job); !r) return cb(errorResponse(r.error()));
    TranscriptFormat format = parsed->format;
    ctx.scheduler.submit(std::move(job), [&ctx, format, req, cb = std::move(cb)](Result<Job> r) {
      if (!r) return cb(errorResponse(formNames(r.error())));
      noteJob(*req, r->id, r->model);
      respondWhenDone(ctx, format, *r, cb);
    });
  });
}

}  // namespace statim::api
