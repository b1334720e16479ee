// POST /job, GET /job/{id}, GET /job
#include <format>

#include <drogon/HttpAppFramework.h>

#include "api/dto/job_dto.h"
#include "api/errors.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"

namespace statim::api {

using drogon::HttpRequestPtr;

void registerJobRoutes(const ApiContext& ctx) {
  addRoute("/job", drogon::Post, [&ctx](const HttpRequestPtr& req, Callback&& cb) {
    auto body = parseJsonObject(*req);
    if (!body) return cb(errorResponse(body.error()));
    auto job = parseNewJob(*body);
    if (!job) return cb(errorResponse(job.error()));
    // The response is sent only after the job row is committed.
    ctx.scheduler.submit(std::move(*job), [cb = std::move(cb)](Result<Job> r) {
      if (!r) return cb(errorResponse(r.error()));
      auto resp = orderedJsonResponse(jobToJson(*r), 202);
      resp->addHeader("Location", std::format("/job/{}", r->id));
      cb(resp);
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
}

}  // namespace statim::api
