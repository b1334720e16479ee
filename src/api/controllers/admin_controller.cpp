// GET /admin/audit: the audit trail, newest first; GET /nodes: the nodes sharing the store;
// GET/POST /admin/keys, DELETE /admin/keys/{id}: API keys (admin keys only). GET /me: who the
// caller is (any key).
#include <algorithm>
#include <charconv>
#include <format>

#include <drogon/HttpAppFramework.h>

#include "api/dto/key_dto.h"
#include "api/errors.h"
#include "api/filters/auth.h"
#include "api/http_util.h"
#include "api/routes.h"
#include "api/server.h"
#include "core/clock.h"

namespace statim::api {

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

  addRoute("/admin/keys", drogon::Get, Access::kAdmin, [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    if (auto r = onlyKnownQuery(*req, {}); !r) return cb(errorResponse(r.error()));
    auto keys = ctx.keys.listKeys();
    if (!keys) return cb(errorResponse(keys.error()));
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (auto& k : *keys) list.push_back(keyToJson(k));
    cb(orderedJsonResponse({{"keys", std::move(list)}}));
  });
  // The key itself is in this answer only: it is never stored nor shown again.
  addRoute("/admin/keys", drogon::Post, Access::kAdmin, [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    auto body = parseJsonObject(*req);
    if (!body) return cb(errorResponse(body.error()));
    auto spec = parseKeyRequest(*body);
    if (!spec) return cb(errorResponse(spec.error()));
    auto issued = issueKey(ctx.keys, std::move(*spec));
    if (!issued) return cb(errorResponse(issued.error()));
    auto out = keyToJson(issued->record);
    out["key"] = issued->key;
    auto resp = orderedJsonResponse(out, 201);
    resp->addHeader("Cache-Control", "no-store");
    cb(resp);
  });
  // By id only (a name may be all digits): the active key with this id is revoked by its name,
  // which no other active key has.
  addRoute("/admin/keys/{id}", drogon::Delete, Access::kAdmin,
           [&ctx](const drogon::HttpRequestPtr&, Callback&& cb, const std::string& id_text) {
             std::int64_t id = 0;
             auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
             if (ec != std::errc{} || end != id_text.data() + id_text.size() || id <= 0) {
               return cb(errorResponse(
                   Error::invalid(std::format("a key id is a positive integer (got '{}'; GET /admin/keys lists them)",
                                              id_text.substr(0, 64)),
                                  "id")));
             }
             auto keys = ctx.keys.listKeys();
             if (!keys) return cb(errorResponse(keys.error()));
             auto it = std::ranges::find_if(*keys, [&](const ApiKey& k) { return k.id == id && !k.revoked_at; });
             if (it == keys->end())
               return cb(errorResponse(Error::notFound(std::format("no active key has id {}", id))));
             auto revoked = ctx.keys.revokeKey(it->name);
             if (!revoked) return cb(errorResponse(revoked.error()));
             cb(orderedJsonResponse(keyToJson(*revoked)));
           });
  addRoute("/me", drogon::Get, Access::kUser, [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    Principal p = principalOf(*req);
    nlohmann::ordered_json out = {{"auth", ctx.config.auth_mode},
                                  {"admin", p.admin()},
                                  {"key", p.key ? keyToJson(*p.key) : nlohmann::ordered_json()}};
    cb(orderedJsonResponse(out));
  });

  addRoute("/admin/audit", drogon::Get, Access::kAdmin, [&ctx](const drogon::HttpRequestPtr& req, Callback&& cb) {
    if (auto r = onlyKnownQuery(*req, {"limit", "offset", "key", "since"}); !r) return cb(errorResponse(r.error()));
    auto limit = queryInt(*req, "limit", 50, 1, ctx.config.jobs_max_page_size);
    if (!limit) return cb(errorResponse(limit.error()));
    auto offset = queryInt(*req, "offset", 0, 0, std::numeric_limits<std::int32_t>::max());
    if (!offset) return cb(errorResponse(offset.error()));
    AuditFilter filter{.limit = static_cast<int>(*limit), .offset = static_cast<int>(*offset)};
    if (auto key = req->getOptionalParameter<std::string>("key")) filter.key_name = *key;
    auto since = queryTime(*req, "since");
    if (!since) return cb(errorResponse(since.error()));
    if (*since) filter.since = **since;
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
