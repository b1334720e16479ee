// The OpenAI-compatible API: GET /v1/models, POST /v1/completions, /v1/chat/completions,
// /v1/embeddings. Each request is a normal durable job; the route waits for it (or streams it).
#include <algorithm>
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
        // `lp`: the token event's logprobs entries (null without); `offset`: where `text` starts;
        // `index`: the choice (params.n > 1: the first choice's text comes in "token" events, the
        // others' in "choice_token" events carrying their index).
        auto chunk = [kind, job](const std::string& text, const nlohmann::json& finish, const nlohmann::json& lp,
                                 size_t offset, int index) {
          return kind == Kind::kChat ? chatChunk(job,
                                                 text.empty() && finish.is_null()
                                                     ? nlohmann::json{{"role", "assistant"}, {"content", ""}}
                                                     : nlohmann::json{{"content", text}},
                                                 finish, chatLogprobs(lp), index)
                                     : completionChunk(job, text, finish, completionLogprobs(lp, offset), index);
        };
        const int n = std::clamp(job.params.value("n", 1), 1, 128);
        if (kind == Kind::kChat) {  // the role comes first
          for (int i = 0; i < n; ++i) stream->send("", dump(chunk("", nullptr, nullptr, 0, i)));
        }
        auto sent = std::make_shared<std::vector<std::string>>(n);  // each choice's text streamed so far
        // A model's tool calls are not in its token events (the backend keeps them out); they go
        // out as one chunk at the end.
        auto r = followJob(
            ctx.store, ctx.scheduler.events(), job.id,
            [stream, chunk, kind, req, job, sent, n](const JobEvent& e) {
              bool open = true;
              bool text_event = e.type == "token" || e.type == "state" || e.type == "choice_token";
              std::string text = text_event ? e.data.value("text", "") : "";
              int index = e.type == "choice_token" ? e.data.value("index", 0) : 0;
              if (!text.empty() && index >= 0 && index < n) {
                auto lp = e.data.value("logprobs", nlohmann::json(nullptr));  // "state": those of the text so far
                open = stream->send("", dump(chunk(text, nullptr, lp, (*sent)[index].size(), index)));
                (*sent)[index] += text;
              }
              // The other choices' text before the subscription (the first's is the state's "text").
              if (auto c = e.data.find("choices"); e.type == "state" && c != e.data.end() && c->is_array()) {
                for (size_t i = 1; i < c->size() && i < sent->size() && open; ++i) {
                  std::string more = (*c)[i].is_string() ? (*c)[i].get<std::string>() : "";
                  if (more.empty()) continue;
                  open = stream->send("", dump(chunk(more, nullptr, nullptr, (*sent)[i].size(), static_cast<int>(i))));
                  (*sent)[i] += more;
                }
              }
              // The stream ends on the job's outcome ("result"), not waiting for its commit: the client
              // has had the text as it came anyway, and its next request may make the next step.
              if (e.type == "result" || e.terminal()) {
                const Job& done = *e.job;
                auto views = choiceViews(done);
                for (size_t i = 0; i < views.size() && i < sent->size(); ++i) {
                  const Job& one = views[i];
                  const int at = static_cast<int>(i);
                  // A backend that reports no tokens (or whose last ones raced the end) still streams
                  // all of its text: whatever of result.text was not sent goes out before the end.
                  std::string final_text = one.result.is_object() ? one.result.value("text", "") : "";
                  const std::string& so_far = (*sent)[i];
                  if (final_text.size() > so_far.size() && final_text.starts_with(so_far)) {
                    stream->send("", dump(chunk(final_text.substr(so_far.size()), nullptr, nullptr, 0, at)));
                  }
                  if (nlohmann::json calls = toolCalls(one); kind == Kind::kChat && !calls.is_null()) {
                    for (size_t k = 0; k < calls.size(); ++k) calls[k]["index"] = k;
                    stream->send("", dump(chatChunk(done, {{"tool_calls", std::move(calls)}}, nullptr, nullptr, at)));
                  }
                }
                if (done.status == JobStatus::kFailed) {
                  Error err = unfinishedJobError(done);
                  stream->send(
                      "",
                      dump(
                          {{"error",
                            {{"message", err.message}, {"type", "server_error"}, {"code", errorCodeName(err.code)}}}}));
                } else {
                  nlohmann::json last;
                  for (size_t i = 0; i < views.size(); ++i) {
                    const int at = static_cast<int>(i);
                    last = kind == Kind::kChat
                               ? chatChunk(done, nlohmann::json::object(), finishReason(views[i]), nullptr, at)
                               : completionChunk(done, "", finishReason(views[i]), nullptr, at);
                    stream->send("", dump(last));
                  }
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
    job.answered_at_end = !request.stream;  // the answer (and its X-Statim-Job-Id) comes at the end
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
