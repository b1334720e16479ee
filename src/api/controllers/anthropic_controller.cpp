// The Anthropic Messages API: POST /v1/messages (streamed with Anthropic's events, or answered
// when the job ends). Each request is a normal durable chat job (GET /job/{id} shows it; the
// answer carries X-Statim-Job-Id). Keys come as `x-api-key` (Anthropic's SDKs) or Bearer; errors
// on these routes are in Anthropic's shape (the server's pre-sending advice, anthropicError).
#include <format>

#include <trantor/net/EventLoop.h>

#include "api/dto/anthropic_dto.h"
#include "api/dto/job_dto.h"
#include "api/errors.h"
#include "api/filters/auth.h"
#include "api/follow.h"
#include "api/http_util.h"
#include "api/model_access.h"
#include "api/routes.h"
#include "api/server.h"
#include "api/sse.h"

namespace statim::api {
namespace {

using drogon::HttpRequestPtr;

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// Job params are top-level fields here, and params.stop is stop_sequences.
Error clientNames(Error e) {
  e = paramsAsTopLevel(std::move(e));
  if (e.field == "stop") e.field = "stop_sequences";
  return e;
}

// Anthropic's stream: message_start, then a text block (content_block_start, text_delta deltas,
// content_block_stop) once there is text, a tool_use block per call (its input as one
// input_json_delta), message_delta with the stop reason and usage, message_stop. A client that
// goes away cancels the job: it was made for this stream alone.
void streamJob(const ApiContext& ctx, const HttpRequestPtr& http, const Job& job, Callback cb) {
  respondSse(
      http, std::move(cb),
      [&ctx, job](std::shared_ptr<SseStream> stream) {
        auto send = [stream](const char* name, nlohmann::json data) {
          data["type"] = name;  // Anthropic's events repeat their name as "type", first
          return stream->send(name, dump(data));
        };
        send("message_start", {{"message", messageStart(job)}});
        send("ping", nlohmann::json::object());
        struct State {
          std::string sent;  // text streamed so far
          bool text_open = false;
        };
        auto state = std::make_shared<State>();
        auto sendText = [send, state](const std::string& text) {
          if (text.empty()) return true;
          if (!state->text_open) {
            send("content_block_start", {{"index", 0}, {"content_block", {{"type", "text"}, {"text", ""}}}});
            state->text_open = true;
          }
          state->sent += text;
          return send("content_block_delta", {{"index", 0}, {"delta", {{"type", "text_delta"}, {"text", text}}}});
        };
        auto r = followJob(
            ctx.store, ctx.scheduler.events(), job.id,
            [stream, send, sendText, state](const JobEvent& e) {
              bool open = true;
              if (e.type == "token" || e.type == "state") open = sendText(e.data.value("text", ""));
              if (e.type != "result" && !e.terminal()) return open;
              const Job& done = *e.job;
              // What of the final text no token carried goes out before the end.
              std::string final_text = done.result.is_object() ? done.result.value("text", "") : "";
              if (final_text.size() > state->sent.size() && final_text.starts_with(state->sent)) {
                sendText(final_text.substr(state->sent.size()));
              }
              int index = 0;
              if (state->text_open) send("content_block_stop", {{"index", index++}});
              for (auto& block : toolUseBlocks(done)) {
                nlohmann::json start = block;
                start["input"] = nlohmann::json::object();
                send("content_block_start", {{"index", index}, {"content_block", start}});
                send("content_block_delta",
                     {{"index", index},
                      {"delta", {{"type", "input_json_delta"}, {"partial_json", dump(block["input"])}}}});
                send("content_block_stop", {{"index", index++}});
              }
              if (done.status == JobStatus::kFailed) {
                send("error", {{"error", {{"type", "api_error"}, {"message", unfinishedJobError(done).message}}}});
              } else {
                auto full = messageResponse(done);
                send("message_delta", {{"delta", {{"stop_reason", full["stop_reason"]}, {"stop_sequence", nullptr}}},
                                       {"usage", full["usage"]}});
                send("message_stop", nlohmann::json::object());
              }
              stream->close();
              return false;
            },
            stream->executor(), &job);
        if (!r) stream->close();
      },
      [&ctx, id = job.id] { (void)ctx.scheduler.cancel(id); }, {{"X-Statim-Job-Id", std::to_string(job.id)}});
}

}  // namespace

void registerAnthropicRoutes(const ApiContext& ctx) {
  addRoute("/v1/messages", drogon::Post, Access::kUser, [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    auto body = parseJsonObject(*req);
    if (!body) return cb(errorResponse(body.error()));
    auto parsed = parseMessagesRequest(*body);
    if (!parsed) return cb(errorResponse(parsed.error()));
    NewJob job = parsed->job;
    job.answered_at_end = !parsed->stream;  // the answer (and its X-Statim-Job-Id) comes at the end
    if (auto r = bindToCaller(*req, job); !r) return cb(errorResponse(r.error()));
    if (auto r = parsed->media.storeInto(ctx.blobs, job.inputs); !r) return cb(errorResponse(r.error()));
    trantor::EventLoop* loop = trantor::EventLoop::getEventLoopOfCurrentThread();
    ctx.scheduler.submit(std::move(job), [&ctx, stream = parsed->stream, req, loop, cb = std::move(cb)](Result<Job> r) {
      loop->queueInLoop([&ctx, stream, req, r = std::move(r), cb] {
        if (!r) return cb(errorResponse(clientNames(r.error())));
        noteJob(*req, r->id, r->model);
        if (stream) return streamJob(ctx, req, *r, cb);
        answerWhenEnded(
            ctx.store, ctx.scheduler.events(), *r, [](const Job& done) { return jsonResponse(messageResponse(done)); },
            cb);
      });
    });
  });
  // {model, messages, system?, tools?, tool_choice?} -> {"input_tokens": n}: the prompt the model
  // would be fed (chat template and tools applied), counted with its own tokenizer; no job.
  addRoute("/v1/messages/count_tokens", drogon::Post, Access::kUser, [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    auto body = parseJsonObject(*req);
    if (!body) return cb(errorResponse(body.error()));
    nlohmann::json request = *body;
    if (!request.contains("max_tokens")) request["max_tokens"] = 1;  // (not part of this request)
    auto parsed = parseMessagesRequest(request);
    if (!parsed) return cb(errorResponse(parsed.error()));
    // (Images are counted as the model will see them: stored like a job's, content-addressed.)
    if (auto r = parsed->media.storeInto(ctx.blobs, parsed->job.inputs); !r) return cb(errorResponse(r.error()));
    withLoadedModel(ctx, *req, parsed->job.model, [job = parsed->job, cb](Result<std::shared_ptr<LoadedModel>> m) {
      if (!m) return cb(errorResponse(m.error()));
      auto tokens = (*m)->promptTokens(job);
      if (!tokens) return cb(errorResponse(clientNames(tokens.error())));
      cb(jsonResponse({{"input_tokens", tokens->size()}}));
    });
  });
}

}  // namespace statim::api
