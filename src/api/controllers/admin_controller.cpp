// GET /admin/audit: the audit trail, newest first; GET /nodes: the nodes sharing the store
// (admin keys only).
#include <charconv>
#include <format>

#include <drogon/HttpAppFramework.h>

#include "api/errors.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"
#include "core/clock.h"

namespace statim::api {
namespace {

// `since`: ISO-8601 UTC ("2026-11-25T10:00:00Z", fraction and Z optional) or Unix seconds.
Result<Micros> parseSince(const std::string& text) {
  std::int64_t seconds = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec == std::errc{} && ptr == text.data() + text.size() && seconds >= 0 && seconds <= 253402300799) {
    return seconds * 1000000;  // up to 9999-12-31
  }
  if (auto t = parseIsoUtc(text)) return *t;
  return fail(Error::invalid(
      std::format("query parameter 'since' must be an ISO-8601 UTC time or Unix seconds (got '{}')", text.substr(0, 64)),
      "since"));
}

}  // namespace

void registerAdminRoutes(const ApiContext& ctx) {
  addRoute("/nodes", drogon::Get, Access::kAdmin, [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    if (auto r = onlyKnownQuery(*req, {}); !r) return cb(errorResponse(r.error()));
    if (!ctx.presence) return cb(errorResponse(Error::internal("this node keeps no node records")));
    auto nodes = ctx.presence->read();
    if (!nodes) return cb(errorResponse(nodes.error()));
    nlohmann::json list = nlohmann::json::array();
    for (auto& n : *nodes) {
      list.push_back({{"id", n.record.id},
                      {"role", n.record.role},
                      {"version", n.record.version},
                      {"alive", n.alive},
                      {"this_node", n.this_node},
                      {"started_at", formatIsoUtc(n.record.started_at)},
                      {"last_heartbeat_at", formatIsoUtc(n.record.heartbeat_at)},
                      {"silent_ms", n.record.silent_for / 1000},
                      {"models", n.record.models}});
    }
    cb(jsonResponse({{"nodes", std::move(list)}}));
  });

  addRoute("/admin/audit", drogon::Get, Access::kAdmin, [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    if (auto r = onlyKnownQuery(*req, {"limit", "offset", "key", "since"}); !r) return cb(errorResponse(r.error()));
    auto limit = queryInt(*req, "limit", 50, 1, ctx.config.jobs_max_page_size);
    if (!limit) return cb(errorResponse(limit.error()));
    auto offset = queryInt(*req, "offset", 0, 0, std::numeric_limits<std::int32_t>::max());
    if (!offset) return cb(errorResponse(offset.error()));
    AuditFilter filter{.limit = static_cast<int>(*limit), .offset = static_cast<int>(*offset)};
    if (auto key = req->getOptionalParameter<std::string>("key")) filter.key_name = *key;
    if (auto since = req->getOptionalParameter<std::string>("since")) {
      auto t = parseSince(*since);
      if (!t) return cb(errorResponse(t.error()));
      filter.since = *t;
    }
    auto page = ctx.audit.listAudit(filter);
    if (!page) return cb(errorResponse(page.error()));
    nlohmann::ordered_json entries = nlohmann::ordered_json::array();
    for (auto& e : page->entries) {
      entries.push_back({{"id", e.id},
                         {"time", formatIsoUtc(e.time)},
                         {"key_id", e.key_id ? nlohmann::ordered_json(*e.key_id) : nlohmann::ordered_json()},
                         {"key_name", e.key_name},
                         {"remote", e.remote},
                         {"method", e.method},
                         {"route", e.route},
                         {"path", e.path},
                         {"job_id", e.job_id ? nlohmann::ordered_json(*e.job_id) : nlohmann::ordered_json()},
                         {"status", e.status},
                         {"request_id", e.request_id}});
    }
    cb(orderedJsonResponse(
        {{"entries", std::move(entries)}, {"total", page->total}, {"limit", filter.limit}, {"offset", filter.offset}}));
  });
}

}  // namespace statim::api
