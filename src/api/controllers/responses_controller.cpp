// OpenAI's Responses API on durable jobs: POST /v1/responses (answered when done, streamed, or -
// background - answered at once), GET /v1/responses/{id} (the response, or its events with
// ?stream=true&starting_after=N, from the job: they survive restarts and read the same on any
// node), POST /v1/responses/{id}/cancel, DELETE /v1/responses/{id}, GET .../input_items.
// Each response is a chat job (GET /job/{id} shows it, X-Statim-Job-Id names it); a chain made
// with previous_response_id is read back from the store.
#include <format>

#include <trantor/net/EventLoop.h>

#include "api/dto/job_dto.h"
#include "api/dto/responses_dto.h"
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
using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The response `id_text` names, if the caller may see it.
Result<Job> visibleResponse(const ApiContext& ctx, const drogon::HttpRequest& req, const std::string& id_text,
                            const std::string& field = "response_id") {
  Error missing{ErrorCode::kNotFound, std::format("no response has the id '{}'", id_text.substr(0, 64)), field};
  auto id = parseResponseId(id_text, field);
  if (!id) return fail(missing);
  auto job = ctx.store.get(*id);
  if (!job && job.error().code == ErrorCode::kNotFound) return fail(missing);
  if (!job) return fail(job.error());
  if (!principalOf(req).canSee(*job) || !isResponseJob(*job)) return fail(missing);
  return job;
}

// The response previous_response_id names: the caller's, and completed (its answer is the turn
// this one continues from).
Result<Job> previousResponse(const ApiContext& ctx, const drogon::HttpRequest& req, JobId id) {
  auto prev = visibleResponse(ctx, req, responseId(id), "previous_response_id");
  if (!prev) {
    Error e = prev.error();
    if (e.code == ErrorCode::kNotFound) e = Error::invalid(e.message, "previous_response_id");
    return fail(e);
  }
  if (prev->status != JobStatus::kCompleted) {
    return fail(Error::invalid(std::format("'previous_response_id': response {} is {}; only a completed response can be "
                                           "continued",
                                           responseId(id), std::string(responseObject(*prev)["status"])),
                               "previous_response_id"));
  }
  return prev;
}

// Streams the response's events with sequence_number > `after`, from what the job has produced so
// far on, until it ends. `cancel_on_gone`: a client that leaves cancels the job (a response made
// for this stream alone); a background response goes on, and the client may come back.
void streamResponse(const ApiContext& ctx, const HttpRequestPtr& http, const Job& job, std::int64_t after,
                    bool cancel_on_gone, Callback cb) {
  std::function<void()> on_gone;
  if (cancel_on_gone) on_gone = [&ctx, id = job.id] { (void)ctx.scheduler.cancel(id); };
  respondSse(
      http, std::move(cb),
      [&ctx, job, after](std::shared_ptr<SseStream> stream) {
        struct State {
          ResponseEvents events;
          std::string text;  // produced so far
        };
        auto state = std::make_shared<State>(State{ResponseEvents(job), {}});
        auto send = [stream, after](const std::vector<json>& events) {
          bool open = true;
          for (const auto& e : events) {
            if (e["sequence_number"].get<std::int64_t>() > after) open = stream->send(e["type"], dump(e)) && open;
          }
          return open;
        };
        auto r = followJob(
            ctx.store, ctx.scheduler.events(), job.id,
            [stream, send, state](const JobEvent& e) {
              // The end is sent once it is stored: a client's next request may continue from it.
              if (e.terminal()) {
                send(state->events.end(*e.job));
                stream->close();
                return false;
              }
              if (e.type == "state") {
                state->text = e.data.value("text", "");
                return send(state->events.begin(*e.job)) && send(state->events.text(state->text));
              }
              if (e.type == "started") return send(state->events.started());
              if (e.type == "token") {
                state->text += e.data.value("text", "");
                return send(state->events.text(state->text));
              }
              return true;
            },
            stream->executor(), &job);
        if (!r) stream->close();
      },
      std::move(on_gone), {{"X-Statim-Job-Id", std::to_string(job.id)}});
}

void createResponse(const ApiContext& ctx, const HttpRequestPtr& req, Callback&& cb) {
  auto body = parseJsonObject(*req);
  if (!body) return cb(errorResponse(body.error()));
  auto prev_id = previousResponseId(*body);
  if (!prev_id) return cb(errorResponse(prev_id.error()));
  std::optional<Job> previous;
  if (*prev_id) {
    auto prev = previousResponse(ctx, *req, **prev_id);
    if (!prev) return cb(errorResponse(prev.error()));
    previous = std::move(*prev);
  }
  auto parsed = parseResponsesRequest(*body, previous ? &*previous : nullptr);
  if (!parsed) return cb(errorResponse(parsed.error()));
  NewJob job = parsed->job;
  // Without stream or background the answer (and the response's id) comes at the end.
  job.answered_at_end = !parsed->stream && !parsed->background;
  if (auto r = bindToCaller(*req, job); !r) return cb(errorResponse(r.error()));
  if (auto r = parsed->media.storeInto(ctx.blobs, job.inputs); !r) return cb(errorResponse(r.error()));
  trantor::EventLoop* loop = trantor::EventLoop::getEventLoopOfCurrentThread();
  ctx.scheduler.submit(
      std::move(job), [&ctx, stream = parsed->stream, background = parsed->background, req, loop, cb = std::move(cb)](
                          Result<Job> r) {
        loop->queueInLoop([&ctx, stream, background, req, r = std::move(r), cb] {
          if (!r) return cb(errorResponse(responsesNames(r.error())));
          noteJob(*req, r->id, r->model);
          if (stream) return streamResponse(ctx, req, *r, -1, !background, cb);
          if (background) {
            auto resp = jsonResponse(responseObject(*r));
            resp->addHeader("X-Statim-Job-Id", std::to_string(r->id));
            return cb(resp);
          }
          answerWhenEnded(
              ctx.store, ctx.scheduler.events(), *r, [](const Job& done) { return jsonResponse(responseObject(done)); },
              cb);
        });
      });
}

void getResponse(const ApiContext& ctx, const HttpRequestPtr& req, Callback&& cb, const std::string& id_text) {
  if (auto r = onlyKnownQuery(*req, {"stream", "starting_after", "include", "include[]", "include_obfuscation"}); !r) {
    return cb(errorResponse(r.error()));
  }
  auto job = visibleResponse(ctx, *req, id_text);
  if (!job) return cb(errorResponse(job.error()));
  auto stream = queryBool(*req, "stream");
  if (!stream) return cb(errorResponse(stream.error()));
  if (!*stream) return cb(jsonResponse(responseObject(*job)));
  auto after = queryInt(*req, "starting_after", -1, -1, std::numeric_limits<int>::max());
  if (!after) return cb(errorResponse(after.error()));
  if (isTerminal(job->status)) {
    // All its events are known: a resume past the last one is a mistake, not a wait.
    ResponseEvents all(*job);
    std::int64_t last = all.end(*job).back()["sequence_number"];
    if (*after >= last) {
      return cb(errorResponse(Error::invalid(
          std::format("'starting_after' is {} but response {} ended with event {}: there is nothing after it", *after,
                      responseId(job->id), last),
          "starting_after")));
    }
  }
  streamResponse(ctx, req, *job, *after, false, std::move(cb));
}

void listInputItems(const ApiContext& ctx, const HttpRequestPtr& req, Callback&& cb, const std::string& id_text) {
  if (auto r = onlyKnownQuery(*req, {"limit", "order", "after", "include", "include[]"}); !r) {
    return cb(errorResponse(r.error()));
  }
  auto job = visibleResponse(ctx, *req, id_text);
  if (!job) return cb(errorResponse(job.error()));
  auto limit = queryInt(*req, "limit", 20, 1, 100);
  if (!limit) return cb(errorResponse(limit.error()));
  std::string order = req->getParameter("order").empty() ? "desc" : req->getParameter("order");
  if (order != "asc" && order != "desc") {
    return cb(errorResponse(Error::invalid("'order' must be asc or desc", "order")));
  }
  json items = inputItems(*job);
  if (order == "desc") std::reverse(items.begin(), items.end());
  size_t from = 0;
  if (std::string after = req->getParameter("after"); !after.empty()) {
    while (from < items.size() && items[from]["id"] != after) ++from;
    if (from == items.size()) {
      return cb(errorResponse(
          Error::invalid(std::format("'after': response {} has no input item '{}'", id_text, after.substr(0, 64)), "after")));
    }
    ++from;
  }
  json data = json::array();
  for (size_t i = from; i < items.size() && data.size() < static_cast<size_t>(*limit); ++i) data.push_back(items[i]);
  bool more = from + data.size() < items.size();
  json first = data.empty() ? json() : data.front()["id"], last = data.empty() ? json() : data.back()["id"];
  cb(jsonResponse(
      {{"object", "list"}, {"data", std::move(data)}, {"first_id", first}, {"last_id", last}, {"has_more", more}}));
}

}  // namespace

void registerResponsesRoutes(const ApiContext& ctx) {
  addRoute("/v1/responses", drogon::Post, Access::kUser,
           [&ctx](const HttpRequestPtr& req, Callback&& cb) { createResponse(ctx, req, std::move(cb)); });
  addRoute("/v1/responses/{id}", drogon::Get, Access::kUser,
           [&ctx](const HttpRequestPtr& req, Callback&& cb, const std::string& id) {
             getResponse(ctx, req, std::move(cb), id);
           });
  addRoute("/v1/responses/{id}/input_items", drogon::Get, Access::kUser,
           [&ctx](const HttpRequestPtr& req, Callback&& cb, const std::string& id) {
             listInputItems(ctx, req, std::move(cb), id);
           });
  // Cancels a queued or running response (any response: each is a job); an ended one is answered
  // as it is.
  addRoute("/v1/responses/{id}/cancel", drogon::Post, Access::kUser,
           [&ctx](const HttpRequestPtr& req, Callback&& cb, const std::string& id_text) {
             auto job = visibleResponse(ctx, *req, id_text);
             if (!job) return cb(errorResponse(job.error()));
             noteJob(*req, job->id, job->model);
             auto cancelled = ctx.scheduler.cancel(job->id);
             if (!cancelled) return cb(errorResponse(cancelled.error()));
             cb(jsonResponse(responseObject(*cancelled)));
           });
  // Removes an ended response for good (its job, and the files no other job refers to).
  addRoute("/v1/responses/{id}", drogon::Delete, Access::kUser,
           [&ctx](const HttpRequestPtr& req, Callback&& cb, const std::string& id_text) {
             auto job = visibleResponse(ctx, *req, id_text);
             if (!job) return cb(errorResponse(job.error()));
             noteJob(*req, job->id, job->model);
             if (!isTerminal(job->status)) {
               return cb(errorResponse(Error{
                   ErrorCode::kConflict,
                   std::format("response {} is {}: only an ended response can be deleted; cancel it first (POST "
                               "/v1/responses/{}/cancel)",
                               id_text, std::string(responseObject(*job)["status"]), id_text),
                   {}}));
             }
             auto deleted = ctx.store.deleteJob(job->id);
             if (!deleted) return cb(errorResponse(deleted.error()));
             ctx.blobs.removeReleased(deleted->orphaned_files, deleted->released_at);
             cb(jsonResponse({{"id", responseId(job->id)}, {"object", "response"}, {"deleted", true}}));
           });
}

}  // namespace statim::api
