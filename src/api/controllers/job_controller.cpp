// POST /job, GET /job/{id}, GET /job, POST /job/{id}/cancel, DELETE /job/{id}, GET /job/{id}/events
#include <format>

#include <drogon/HttpAppFramework.h>
#include <trantor/net/EventLoop.h>

#include "api/dto/job_dto.h"
#include "api/errors.h"
#include "api/follow.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"
#include "api/sse.h"

namespace statim::api {

using drogon::HttpRequestPtr;

void registerJobRoutes(const ApiContext& ctx) {
  addRoute("/job", drogon::Post, [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    auto body = parseJsonObject(*req);
    if (!body) return cb(errorResponse(body.error()));
    auto job = parseNewJob(*body);
    if (!job) return cb(errorResponse(job.error()));
    // The response is sent only after the job row is committed. The commit is reported on the
    // store's writer thread; the response is built back on this request's I/O thread so the
    // single writer spends its time on writes.
    trantor::EventLoop* loop = trantor::EventLoop::getEventLoopOfCurrentThread();
    ctx.scheduler.submit(std::move(*job), [loop, cb = std::move(cb)](Result<Job> r) {
      loop->queueInLoop([r = std::move(r), cb] {
        if (!r) return cb(errorResponse(r.error()));
        auto resp = orderedJsonResponse(jobToJson(*r), 202);
        resp->addHeader("Location", std::format("/job/{}", r->id));
        cb(resp);
      });
    });
  });

  addRoute("/job/{id}", drogon::Get, [&ctx](const HttpRequestPtr&, Callback&& cb, const std::string& id_text) {
    auto id = parseJobId(id_text);
    if (!id) return cb(errorResponse(id.error()));
    auto job = ctx.store.get(*id);
    if (!job) return cb(errorResponse(job.error()));
    cb(orderedJsonResponse(jobToJson(*job)));
  });

  addRoute("/job", drogon::Get, [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    if (auto r = onlyKnownQuery(*req, {"limit", "offset", "status", "model"}); !r) return cb(errorResponse(r.error()));
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
    if (auto m = req->getOptionalParameter<std::string>("model")) filter.model = *m;
    auto page = ctx.store.list(filter);
    if (!page) return cb(errorResponse(page.error()));
    nlohmann::ordered_json jobs = nlohmann::ordered_json::array();
    for (auto& j : page->jobs) jobs.push_back(jobToJson(j));
    cb(orderedJsonResponse(nlohmann::ordered_json{
        {"jobs", std::move(jobs)}, {"total", page->total}, {"limit", filter.limit}, {"offset", filter.offset}}));
  });

  auto cancel = [&ctx](const HttpRequestPtr&, Callback&& cb, const std::string& id_text) {
    auto id = parseJobId(id_text);
    if (!id) return cb(errorResponse(id.error()));
    auto job = ctx.scheduler.cancel(*id);
    if (!job) return cb(errorResponse(job.error()));
    cb(orderedJsonResponse(jobToJson(*job)));
  };
  addRoute("/job/{id}/cancel", drogon::Post, cancel);
  addRoute("/job/{id}", drogon::Delete, cancel);

  // The job's life as Server-Sent Events: "state" first (the job now, and data.text so far),
  // then queued / started / token / completed | failed | cancelled. A client may join any time;
  // leaving does not cancel the job.
  addRoute("/job/{id}/events", drogon::Get, [&ctx](const HttpRequestPtr&, Callback&& cb, const std::string& id_text) {
    auto id = parseJobId(id_text);
    if (!id) return cb(errorResponse(id.error()));
    if (auto job = ctx.store.get(*id); !job) return cb(errorResponse(job.error()));
    cb(sseResponse([&ctx, id = *id](std::shared_ptr<SseStream> stream) {
      auto r = followJob(ctx.store, ctx.scheduler.events(), id, [stream](const JobEvent& e) {
        nlohmann::ordered_json data;
        if (e.type == "state") {
          data = {{"job", jobToJson(*e.job)}, {"text", e.data.value("text", "")}};
        } else if (e.job) {
          data = {{"job", jobToJson(*e.job)}};
        } else {
          data = nlohmann::ordered_json(e.data);
          data["job_id"] = e.job_id;
        }
        bool open = stream->send(e.type, data.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
        if (e.terminal()) stream->close();
        return open;
      });
      if (!r) stream->close();
    }));
  });
}

}  // namespace statim::api
