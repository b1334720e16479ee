// POST /job, GET /job/{id}, GET /job, POST /job/{id}/cancel, DELETE /job/{id}, GET /job/{id}/events,
// GET /events, GET /job/{id}/webhooks, the job's files. A user key sees only its own jobs: others'
// answer 404 as if absent.
#include <format>

#include <drogon/HttpAppFramework.h>
#include <drogon/utils/Utilities.h>
#include <trantor/net/EventLoop.h>

#include "api/dto/inputs.h"
#include "api/dto/job_dto.h"
#include "api/errors.h"
#include "api/filters/auth.h"
#include "core/clock.h"
#include "api/follow.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"
#include "api/sse.h"

namespace statim::api {

using drogon::HttpRequestPtr;

namespace {

// The job `id_text` names, if it exists and the caller may see it.
Result<Job> visibleJob(const ApiContext& ctx, const drogon::HttpRequest& req, const std::string& id_text) {
  auto id = parseJobId(id_text);
  if (!id) return fail(id.error());
  auto job = ctx.store.get(*id);
  if (!job) return fail(job.error());
  if (!principalOf(req).canSee(*job)) return fail(Error::notFound(std::format("job {} not found", *id)));
  return job;
}

nlohmann::json deliveryToJson(const WebhookDelivery& d) {
  auto time = [](const std::optional<Micros>& t) { return t ? nlohmann::json(formatIsoUtc(*t)) : nlohmann::json(); };
  nlohmann::json history = nlohmann::json::array();
  for (auto& a : d.history) {
    history.push_back({{"at", formatIsoUtc(a.at)},
                       {"status_code", a.status_code ? nlohmann::json(*a.status_code) : nlohmann::json()},
                       {"error", a.error},
                       {"duration_ms", a.duration_ms}});
  }
  return {{"id", d.id},
          {"event", d.event},
          {"url", d.url},
          {"status", d.status},
          {"attempts", d.attempts},
          {"next_attempt_at", d.status == "pending" ? time(d.next_attempt_at) : nlohmann::json()},
          {"last_status_code", d.last_status_code ? nlohmann::json(*d.last_status_code) : nlohmann::json()},
          {"last_error", d.last_error},
          {"delivered_at", time(d.delivered_at)},
          {"history", std::move(history)}};
}

// A lifecycle event as GET /events tells it, or nothing when `scope` (a user key's id) may not
// see its job. Tokens and progress are left to /job/{id}/events: this stream is for a job list.
std::optional<nlohmann::ordered_json> listEvent(const JobEvent& e, std::optional<std::int64_t> scope) {
  JobStatus status;
  if (e.type == transition(JobStep::kQueued).event) {
    status = JobStatus::kQueued;
  } else if (e.type == transition(JobStep::kStarted).event) {
    status = JobStatus::kProcessing;
  } else if (e.job && isTerminal(e.job->status) && e.type == eventName(e.job->status)) {
    status = e.job->status;
  } else {
    return std::nullopt;
  }
  // The owner: from the event's data (an end heard from another node may carry only that), or
  // from the ended job it carries (an end read back from the store).
  std::optional<std::int64_t> owner;
  if (auto k = e.data.find("key_id"); k != e.data.end() && k->is_number_integer()) owner = k->get<std::int64_t>();
  if (!owner && e.job) owner = e.job->owner_key_id;
  if (scope && owner != scope) return std::nullopt;
  nlohmann::ordered_json out = {{"job_id", e.job_id}, {"status", toString(status)}};
  if (auto m = e.data.find("model"); m != e.data.end() && m->is_string()) out["model"] = *m;
  if (auto a = e.data.find("attempt"); a != e.data.end()) out["attempt"] = *a;
  // An end heard from another node may carry only the job's id and status (no model).
  if (e.job && !e.job->model.empty()) out["job"] = jobToJson(*e.job);
  return out;
}

}  // namespace

void registerJobRoutes(const ApiContext& ctx) {
  addRoute("/job", drogon::Post, Access::kUser, [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    auto request = readJobRequest(req, ctx.blobs);
    if (!request) return cb(errorResponse(request.error()));
    auto job = parseNewJob(request->body, !request->inputs.empty());
    if (!job) return cb(errorResponse(job.error()));
    job->inputs = std::move(request->inputs);
    if (auto r = bindToCaller(*req, *job); !r) return cb(errorResponse(r.error()));
    // The response is sent only after the job row is committed. The commit is reported on the
    // store's writer thread; the response is built back on this request's I/O thread so the
    // single writer spends its time on writes.
    // With ?wait=, the answer waits for the job's end (200, the ended job), at most that long
    // (202, the job as it is then, as without wait).
    auto wait = queryWait(*req, ctx.config.jobs_max_wait_seconds);
    if (!wait) return cb(errorResponse(wait.error()));
    // A client that waits hears of the job at its end: the job may start before its creation is
    // flushed (which follows at once); a wait that runs out waits for that flush (syncAsync)
    // before the job's id is answered.
    job->answered_at_end = *wait > 0;
    trantor::EventLoop* loop = trantor::EventLoop::getEventLoopOfCurrentThread();
    ctx.scheduler.submit(std::move(*job), [&ctx, loop, req, wait = *wait, cb = std::move(cb)](Result<Job> r) {
      loop->queueInLoop([&ctx, loop, wait, r = std::move(r), req, cb] {
        if (!r) return cb(errorResponse(topLevelNames(r.error())));
        noteJob(*req, r->id, r->model);
        // Without wait the answer is 202 whatever the job's state (a replay may find it ended).
        auto respond = [cb, wait, replayed = r->replayed](const Job& now) {
          auto resp = orderedJsonResponse(jobToJson(now), wait > 0 && isTerminal(now.status) ? 200 : 202);
          resp->addHeader("Location", std::format("/job/{}", now.id));
          if (replayed) resp->addHeader("Idempotent-Replayed", "true");
          cb(resp);
        };
        if (wait <= 0 || isTerminal(r->status)) return respond(*r);
        auto waiting = awaitJobEnd(
            ctx.store, ctx.scheduler.events(), r->id, wait, loop,
            [&ctx, loop, respond, cb](Result<Job> now) {
              if (!now) return cb(errorResponse(now.error()));
              if (isTerminal(now->status)) return respond(*now);  // its end's commit was fsynced
              ctx.store.syncAsync([loop, respond, cb, now = std::move(*now)](Result<void> synced) {
                loop->queueInLoop([respond, cb, synced, now] {
                  if (!synced) return cb(errorResponse(synced.error()));
                  respond(now);
                });
              });
            },
            &*r);  // the job as submitted: no store read to start following it
        if (!waiting) cb(errorResponse(waiting.error()));
      });
    });
  });

  // GET /job: the caller's jobs, newest first, a page at a time.
  auto listJobs = [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    if (auto r = onlyKnownQuery(*req, {"limit", "offset", "status", "model", "type", "since", "until", "q"}); !r) {
      return cb(errorResponse(r.error()));
    }
    auto limit = queryInt(*req, "limit", 50, 1, ctx.config.jobs_max_page_size);
    if (!limit) return cb(errorResponse(limit.error()));
    auto offset = queryInt(*req, "offset", 0, 0, std::numeric_limits<std::int32_t>::max());
    if (!offset) return cb(errorResponse(offset.error()));
    JobFilter filter{.limit = static_cast<int>(*limit), .offset = static_cast<int>(*offset)};
    if (auto s = req->getOptionalParameter<std::string>("status")) {
      std::string upper = *s;
      for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      filter.status = parseJobStatus(upper);
      if (!filter.status) {
        return cb(errorResponse(Error::invalid(std::format("query parameter 'status' must be one of QUEUED, "
                                                           "PROCESSING, COMPLETED, FAILED, CANCELLED (got '{}')",
                                                           s->substr(0, 64)),
                                               "status")));
      }
    }
    if (auto m = req->getOptionalParameter<std::string>("model"); m && !m->empty()) filter.model = *m;
    if (auto t = req->getOptionalParameter<std::string>("type"); t && !t->empty()) filter.type = *t;
    if (auto q = req->getOptionalParameter<std::string>("q"); q && !q->empty()) {
      if (q->size() > 1024)
        return cb(errorResponse(Error::invalid("query parameter 'q' must be at most 1024 bytes", "q")));
      filter.text = *q;
    }
    auto since = queryTime(*req, "since");
    if (!since) return cb(errorResponse(since.error()));
    auto until = queryTime(*req, "until");
    if (!until) return cb(errorResponse(until.error()));
    filter.created_from = *since;
    filter.created_before = *until;
    filter.owner_key_id = principalOf(*req).jobScope();
    auto page = ctx.store.list(filter);
    if (!page) return cb(errorResponse(page.error()));
    nlohmann::ordered_json jobs = nlohmann::ordered_json::array();
    for (auto& j : page->jobs) jobs.push_back(jobToJson(j));
    cb(orderedJsonResponse(nlohmann::ordered_json{
        {"jobs", std::move(jobs)}, {"total", page->total}, {"limit", filter.limit}, {"offset", filter.offset}}));
  };
  addRoute("/job", drogon::Get, Access::kUser, listJobs);

  // "/job/" (the original server's list route) reaches here with an empty id: it is GET /job.
  addRoute("/job/{id}", drogon::Get, Access::kUser,
           [&ctx, listJobs](const HttpRequestPtr& req, Callback&& cb, const std::string& id_text) {
             if (id_text.empty()) return listJobs(req, std::move(cb));
             // ?wait= (a long poll): answer when the job ends, or with the job as it is then.
             auto wait = queryWait(*req, ctx.config.jobs_max_wait_seconds);
             if (!wait) return cb(errorResponse(wait.error()));
             auto job = visibleJob(ctx, *req, id_text);
             if (!job) return cb(errorResponse(job.error()));
             if (*wait <= 0 || isTerminal(job->status)) {
               auto out = jobToJson(*job);
               // Where a queued job stands: 1 = the next of its model to start.
               if (job->status == JobStatus::kQueued) {
                 auto ahead = ctx.store.queuedAhead(job->id);
                 if (!ahead) return cb(errorResponse(ahead.error()));
                 if (*ahead) out["queue_position"] = **ahead + 1;
               }
               return cb(orderedJsonResponse(out));
             }
             auto waiting = awaitJobEnd(ctx.store, ctx.scheduler.events(), job->id, *wait,
                                        trantor::EventLoop::getEventLoopOfCurrentThread(), [cb](Result<Job> now) {
                                          if (!now) return cb(errorResponse(now.error()));
                                          cb(orderedJsonResponse(jobToJson(*now)));
                                        });
             if (!waiting) cb(errorResponse(waiting.error()));
           });

  addRoute("/job/{id}/webhooks", drogon::Get, Access::kUser,
           [&ctx](const HttpRequestPtr& req, Callback&& cb, const std::string& id_text) {
             auto job = visibleJob(ctx, *req, id_text);
             if (!job) return cb(errorResponse(job.error()));
             auto deliveries = ctx.webhooks.listDeliveries(job->id);
             if (!deliveries) return cb(errorResponse(deliveries.error()));
             nlohmann::json out = nlohmann::json::array();
             for (auto& d : *deliveries) out.push_back(deliveryToJson(d));
             cb(jsonResponse({{"job_id", job->id}, {"deliveries", std::move(out)}}));
           });

  // A job's files: a completed job's primary artifact (the first) or one by name, or an input by
  // name, as raw bytes with their content type, or ?format=base64 as JSON.
  auto sendFile = [&ctx](const drogon::HttpRequest& req, const JobFile& file, Callback& cb) {
    if (auto r = onlyKnownQuery(req, {"format"}); !r) return cb(errorResponse(r.error()));
    auto it = req.parameters().find("format");
    std::string format = it == req.parameters().end() ? "raw" : it->second;
    if (format != "raw" && format != "base64") {
      return cb(errorResponse(Error::invalid("query parameter 'format' must be raw or base64", "format")));
    }
    auto bytes = ctx.blobs.read(file.sha256);
    if (!bytes) return cb(errorResponse(bytes.error()));
    if (format == "base64") {
      return cb(jsonResponse({{"name", file.name},
                              {"content_type", file.content_type},
                              {"bytes", file.bytes},
                              {"sha256", file.sha256},
                              {"data", drogon::utils::base64Encode(*bytes)}}));
    }
    auto resp = drogon::HttpResponse::newHttpResponse();
    resp->setContentTypeString(file.content_type);
    resp->setBody(std::move(*bytes));
    resp->addHeader("Content-Disposition", std::format("inline; filename=\"{}\"", file.name));
    // What a client uploaded is served as data, never run by a browser as a page of this origin.
    resp->addHeader("X-Content-Type-Options", "nosniff");
    resp->addHeader("Content-Security-Policy", "sandbox; default-src 'none'");
    cb(resp);
  };
  auto sendArtifact = [sendFile](const drogon::HttpRequest& req, const Job& job, const std::string* name,
                                 Callback& cb) {
    if (job.artifacts.empty()) {
      return cb(errorResponse(Error::notFound(std::format(
          "job {} has no artifacts ({}); its result is in GET /job/{}", job.id, toString(job.status), job.id))));
    }
    const JobFile* file = &job.artifacts.front();
    if (name) {
      auto it = std::ranges::find_if(job.artifacts, [&](const JobFile& f) { return f.name == *name; });
      if (it == job.artifacts.end()) {
        return cb(errorResponse(Error::notFound(std::format("job {} has no artifact '{}'", job.id, name->substr(0, 64)))));
      }
      file = &*it;
    }
    sendFile(req, *file, cb);
  };
  addRoute("/job/{id}/result", drogon::Get, Access::kUser,
           [&ctx, sendArtifact](const HttpRequestPtr& req, Callback&& cb, const std::string& id_text) {
             auto job = visibleJob(ctx, *req, id_text);
             if (!job) return cb(errorResponse(job.error()));
             sendArtifact(*req, *job, nullptr, cb);
           });
  addRoute("/job/{id}/artifacts/{name}", drogon::Get, Access::kUser,
           [&ctx, sendArtifact](const HttpRequestPtr& req, Callback&& cb, const std::string& id_text,
                                const std::string& name) {
             auto job = visibleJob(ctx, *req, id_text);
             if (!job) return cb(errorResponse(job.error()));
             sendArtifact(*req, *job, &name, cb);
           });

  addRoute(
      "/job/{id}/inputs/{name}", drogon::Get, Access::kUser,
      [&ctx, sendFile](const HttpRequestPtr& req, Callback&& cb, const std::string& id_text, const std::string& name) {
        auto job = visibleJob(ctx, *req, id_text);
        if (!job) return cb(errorResponse(job.error()));
        auto it = std::ranges::find_if(job->inputs, [&](const JobFile& f) { return f.name == name; });
        if (it == job->inputs.end()) {
          return cb(errorResponse(Error::notFound(std::format(
              "job {} has no input '{}' (its inputs are in GET /job/{})", job->id, name.substr(0, 64), job->id))));
        }
        sendFile(*req, *it, cb);
      });

  auto cancel = [&ctx](const HttpRequestPtr& req, Callback&& cb, const std::string& id_text) {
    auto visible = visibleJob(ctx, *req, id_text);
    if (!visible) return cb(errorResponse(visible.error()));
    noteJob(*req, visible->id, visible->model);
    auto job = ctx.scheduler.cancel(visible->id);
    if (!job) return cb(errorResponse(job.error()));
    cb(orderedJsonResponse(jobToJson(*job)));
  };
  addRoute("/job/{id}/cancel", drogon::Post, Access::kUser, cancel);
  // DELETE cancels, as POST .../cancel does; with ?purge=true it removes an ended job for good:
  // its row, its webhook records and the files no other job refers to.
  addRoute("/job/{id}", drogon::Delete, Access::kUser,
           [&ctx, cancel](const HttpRequestPtr& req, Callback&& cb, const std::string& id_text) {
    if (auto r = onlyKnownQuery(*req, {"purge"}); !r) return cb(errorResponse(r.error()));
    auto purge = queryBool(*req, "purge");
    if (!purge) return cb(errorResponse(purge.error()));
    if (!*purge) return cancel(req, std::move(cb), id_text);
    auto visible = visibleJob(ctx, *req, id_text);
    if (!visible) return cb(errorResponse(visible.error()));
    noteJob(*req, visible->id, visible->model);
    auto deleted = ctx.store.deleteJob(visible->id);
    if (!deleted) return cb(errorResponse(deleted.error()));
    size_t removed = ctx.blobs.removeReleased(deleted->orphaned_files, deleted->released_at);
    cb(orderedJsonResponse(
        nlohmann::ordered_json{{"id", visible->id}, {"deleted", true}, {"files_removed", removed}}));
  });

  // The job's life as Server-Sent Events: "state" first (the job now, and data.text so far),
  // then queued / started / token / completed | failed | cancelled. A client may join any time;
  // leaving does not cancel the job.
  addRoute("/job/{id}/events", drogon::Get, Access::kUser,
           [&ctx](const HttpRequestPtr& req, Callback&& cb, const std::string& id_text) {
    auto visible = visibleJob(ctx, *req, id_text);
    if (!visible) return cb(errorResponse(visible.error()));
    respondSse(req, std::move(cb), [&ctx, id = visible->id](std::shared_ptr<SseStream> stream) {
      auto r = followJob(
          ctx.store, ctx.scheduler.events(), id,
          [stream](const JobEvent& e) {
            if (e.type == "result") return true;  // this stream tells of an end once it is stored
            nlohmann::ordered_json data;
            if (e.type == "state") {
              data = {{"job", jobToJson(*e.job)}, {"text", e.data.value("text", "")}};
            } else if (e.job) {
              data = {{"job", jobToJson(*e.job)}};
            } else {
              data = nlohmann::ordered_json(e.data);
              data["job_id"] = e.job_id;
            }
            bool open =
                stream->send(e.type, data.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
            if (e.terminal()) stream->close();
            return open;
          },
          stream->executor());
      if (!r) stream->close();
    });
  });

  // Every job's lifecycle (queued, started, completed | failed | cancelled) as Server-Sent Events,
  // for a live job list: an admin key (or auth off) sees all jobs, a user key its own. Each event's
  // data: {job_id, status, model?, attempt?, job? (an end carries the ended job)}. It starts with a
  // "ready" event; what happened before that is in GET /job.
  addRoute("/events", drogon::Get, Access::kUser, [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    if (auto r = onlyKnownQuery(*req, {}); !r) return cb(errorResponse(r.error()));
    auto scope = principalOf(*req).jobScope();
    auto key = principalOf(*req).key;
    auto token = std::make_shared<std::atomic<EventBus::Token>>(0);
    respondSse(
        req, std::move(cb),
        [&ctx, scope, key, token](std::shared_ptr<SseStream> stream) {
          // A stream without an end: the key it was opened with is read again every 2 s, and the
          // stream ends once that key is revoked (a request with it would be refused by then).
          if (key) {
            auto* loop = stream->loop();
            auto timer = std::make_shared<trantor::TimerId>(0);
            *timer = loop->runEvery(2.0, [&ctx, stream, token, timer, loop, prefix = key->prefix] {
              bool revoked = false;
              if (!stream->closed()) {
                auto now = ctx.keys.findKeyByPrefix(prefix);
                revoked = now && (!*now || (*now)->revoked_at);
              }
              if (!stream->closed() && !revoked) return;
              loop->invalidateTimer(*timer);
              if (revoked) {
                ctx.scheduler.events().unsubscribe(*token);
                stream->close();
              }
            });
          }
          // Subscribed before "ready" goes out: nothing after it is missed (the listener runs on
          // this loop, after this task).
          *token = ctx.scheduler.events().subscribeAll(
              [stream, scope](const JobEvent& e) {
                if (stream->closed()) return false;
                auto data = listEvent(e, scope);
                if (!data) return true;
                return stream->send(e.type,
                                    data->dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
              },
              stream->executor(),
              // Only the events this stream tells of are copied to its loop (not every token).
              [scope](const JobEvent& e) { return listEvent(e, scope).has_value(); });
          stream->send("ready", "{}");
        },
        [&ctx, token] { ctx.scheduler.events().unsubscribe(*token); });
  });
}

}  // namespace statim::api
