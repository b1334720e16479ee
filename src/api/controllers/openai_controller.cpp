// The OpenAI-compatible API: GET /v1/models, POST /v1/completions, /v1/chat/completions,
// /v1/embeddings. Each request is a normal durable job; the route waits for it (or streams it).
#include <format>

#include <trantor/net/EventLoop.h>

#include "api/dto/job_dto.h"
#include "api/dto/openai_dto.h"
#include "api/errors.h"
#include "api/filters/auth.h"
#include "api/follow.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"
#include "api/sse.h"

namespace statim::api {
namespace {

using drogon::HttpRequestPtr;
enum class Kind { kCompletion, kChat, kEmbedding };

nlohmann::json render(Kind kind, const Job& job, const OpenAiRequest& req) {
  switch (kind) {
    case Kind::kCompletion: return completionResponse(job);
    case Kind::kChat: return chatResponse(job);
    case Kind::kEmbedding: return embeddingResponse(job, req.encoding_format);
  }
  return {};
}

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// Streams the job as OpenAI chunks. A client that goes away cancels the job: it was created
// for this stream alone.
void streamJob(const ApiContext& ctx, const HttpRequestPtr& http, Kind kind, OpenAiRequest req, const Job& job,
               Callback cb) {
  respondSse(
      http, std::move(cb),
      [&ctx, kind, req, job](std::shared_ptr<SseStream> stream) {
        // `lp`: the token event's logprobs entries (null without); `offset`: where `text` starts.
        auto chunk = [kind, job](const std::string& text, const nlohmann::json& finish,
                                 const nlohmann::json& lp = nullptr, size_t offset = 0) {
          return kind == Kind::kChat ? chatChunk(job,
                                                 text.empty() && finish.is_null()
                                                     ? nlohmann::json{{"role", "assistant"}, {"content", ""}}
                                                     : nlohmann::json{{"content", text}},
                                                 finish, chatLogprobs(lp))
                                     : completionChunk(job, text, finish, completionLogprobs(lp, offset));
        };
        if (kind == Kind::kChat) stream->send("", dump(chunk("", nullptr)));  // the role comes first
        auto sent = std::make_shared<std::string>();                          // the text streamed so far
        // A model's tool calls are not in its token events (the backend keeps them out); they go
        // out as one chunk at the end.
        auto r = followJob(
            ctx.store, ctx.scheduler.events(), job.id,
            [stream, chunk, kind, req, job, sent](const JobEvent& e) {
              bool open = true;
              std::string text = e.type == "token" || e.type == "state" ? e.data.value("text", "") : "";
              if (!text.empty()) {
                auto lp = e.data.value("logprobs", nlohmann::json(nullptr));  // "state": those of the text so far
                open = stream->send("", dump(chunk(text, nullptr, lp, sent->size())));
                *sent += text;
              }
              // The stream ends on the job's outcome ("result"), not waiting for its commit: the client
              // has had the text as it came anyway, and its next request may make the next step.
              if (e.type == "result" || e.terminal()) {
                const Job& done = *e.job;
                // A backend that reports no tokens (or whose last ones raced the end) still streams
                // all of its text: whatever of result.text was not sent goes out before the end.
                std::string final_text = done.result.is_object() ? done.result.value("text", "") : "";
                if (final_text.size() > sent->size() && final_text.starts_with(*sent)) {
                  stream->send("", dump(chunk(final_text.substr(sent->size()), nullptr)));
                }
                if (nlohmann::json calls = toolCalls(done); kind == Kind::kChat && !calls.is_null()) {
                  for (size_t i = 0; i < calls.size(); ++i) calls[i]["index"] = i;
                  stream->send("", dump(chatChunk(done, {{"tool_calls", std::move(calls)}}, nullptr)));
                }
                if (done.status == JobStatus::kFailed) {
                  Error err = unfinishedJobError(done);
                  stream->send(
                      "",
                      dump(
                          {{"error",
                            {{"message", err.message}, {"type", "server_error"}, {"code", errorCodeName(err.code)}}}}));
                } else {
                  nlohmann::json last = kind == Kind::kChat
                                            ? chatChunk(done, nlohmann::json::object(), finishReason(done))
                                            : completionChunk(done, "", finishReason(done));
                  stream->send("", dump(last));
                  if (req.include_usage) {
                    nlohmann::json u = last;
                    u["choices"] = nlohmann::json::array();
                    u["usage"] = usage(done);
                    stream->send("", dump(u));
                  }
                }
                stream->sendRaw("data: [DONE]\n\n");
                stream->close();
                return false;
              }
              // A departed client cancels the job through the stream's on_gone (queued on the I/O
              // loop, never run inside a listener: cancelling writes to the store).
              return open;
            },
            stream->executor(), &job);
        if (!r) stream->close();
      },
      // The client left: noticed by a failed write (a token, or a keep-alive while queued).
      [&ctx, id = job.id] { (void)ctx.scheduler.cancel(id); }, {{"X-Statim-Job-Id", std::to_string(job.id)}});
}

template <typename Parse>
auto generationRoute(const ApiContext& ctx, Kind kind, Parse parse) {
  return [&ctx, kind, parse](const HttpRequestPtr& req, Callback&& cb) {
    auto body = parseJsonObject(*req);
    if (!body) return cb(errorResponse(body.error()));
    auto parsed = parse(*body);
    if (!parsed) return cb(errorResponse(parsed.error()));
    OpenAiRequest request = std::move(*parsed);
    NewJob job = request.job;
    if (auto r = bindToCaller(*req, job); !r) return cb(errorResponse(r.error()));
    if (auto r = request.media.storeInto(ctx.blobs, job.inputs); !r) return cb(errorResponse(r.error()));
    // The commit is reported on the store's writer thread; the rest runs back on this request's
    // loop, so the writer spends its time on writes.
    trantor::EventLoop* loop = trantor::EventLoop::getEventLoopOfCurrentThread();
    ctx.scheduler.submit(std::move(job), [&ctx, kind, request, req, loop, cb = std::move(cb)](Result<Job> r) {
      loop->queueInLoop([&ctx, kind, request, req, r = std::move(r), cb] {
        if (!r) return cb(errorResponse(paramsAsTopLevel(r.error())));
        noteJob(*req, r->id, r->model);
        if (request.stream) return streamJob(ctx, req, kind, request, *r, cb);
        answerWhenEnded(
            ctx.store, ctx.scheduler.events(), *r,
            [kind, request](const Job& done) { return jsonResponse(render(kind, done, request)); }, cb);
      });
    });
  };
}

}  // namespace

static nlohmann::json openAiModel(const ModelEntry& e) {
  return {{"id", e.manifest.id},  {"object", "model"},       {"created", 0},
          {"owned_by", "statim"}, {"type", e.manifest.type}, {"state", toString(e.state)}};
}

void registerOpenAiRoutes(const ApiContext& ctx) {
  addRoute("/v1/models", drogon::Get, Access::kUser, [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    Principal who = principalOf(*req);
    nlohmann::json data = nlohmann::json::array();
    for (auto& e : ctx.models.list()) {
      if (e.state == ModelState::kFailed || e.removed || !who.listsModel(e.manifest.id)) continue;
      data.push_back(openAiModel(e));
    }
    cb(jsonResponse({{"object", "list"}, {"data", std::move(data)}}));
  });
  // One model (OpenAI's "retrieve model"); an id with one slash ("owner/name") as two segments.
  auto retrieveModel = [&ctx](const HttpRequestPtr& req, Callback& cb, const std::string& id) {
    auto e = ctx.models.find(id);
    if (!e || e->removed || e->state == ModelState::kFailed || !principalOf(*req).listsModel(id)) {
      return cb(errorResponse(
          Error{ErrorCode::kModelNotFound,
                std::format("The model '{}' does not exist; GET /v1/models lists them", id.substr(0, 128)), "model"}));
    }
    cb(jsonResponse(openAiModel(*e)));
  };
  addRoute(
      "/v1/models/{id}", drogon::Get, Access::kUser,
      [retrieveModel](const HttpRequestPtr& req, Callback&& cb, const std::string& id) { retrieveModel(req, cb, id); });
  addRoute("/v1/models/{owner}/{name}", drogon::Get, Access::kUser,
           [retrieveModel](const HttpRequestPtr& req, Callback&& cb, const std::string& owner,
                           const std::string& name) { retrieveModel(req, cb, owner + "/" + name); });
  addRoute("/v1/completions", drogon::Post, Access::kUser, generationRoute(ctx, Kind::kCompletion, parseCompletionRequest));
  addRoute("/v1/chat/completions", drogon::Post, Access::kUser, generationRoute(ctx, Kind::kChat, parseChatRequest));
  addRoute("/v1/embeddings", drogon::Post, Access::kUser, generationRoute(ctx, Kind::kEmbedding, parseEmbeddingRequest));
}

}  // namespace statim::api
