// WebhookStore on SQLite. Rows are added by the job transitions (sqlite_jobs.cpp).
#include <format>

#include "store/sqlite/sqlite_store.h"

namespace statim {
namespace {

constexpr const char* kDeliveryCols =
    "id, job_id, event, url, status, attempts, next_attempt_at, last_status_code, last_error, created_at, "
    "delivered_at";

WebhookDelivery rowToDelivery(const SqliteStatement& s) {
  WebhookDelivery d;
  d.id = s.columnInt(0);
  d.job_id = s.columnInt(1);
  d.event = s.columnText(2);
  d.url = s.columnText(3);
  d.status = s.columnText(4);
  d.attempts = static_cast<int>(s.columnInt(5));
  d.next_attempt_at = s.columnOptInt(6);
  if (auto code = s.columnOptInt(7)) d.last_status_code = static_cast<int>(*code);
  d.last_error = s.columnText(8);
  d.created_at = s.columnInt(9);
  d.delivered_at = s.columnOptInt(10);
  return d;
}

}  // namespace

Result<std::vector<WebhookDelivery>> SqliteStore::claimDueDeliveries(Micros now, Micros lease, int limit) {
  return write<std::vector<WebhookDelivery>>([&](SqliteDb& db) -> Result<std::vector<WebhookDelivery>> {
    auto st = db.prepare(std::format(
        "UPDATE webhook_deliveries SET next_attempt_at = ?2 WHERE id IN"
        " (SELECT id FROM webhook_deliveries d WHERE status = 'pending' AND next_attempt_at <= ?1"
        // A job's events go out in order: one waits until the job's earlier ones are settled.
        "  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e"
        "                  WHERE e.job_id = d.job_id AND e.id < d.id AND e.status = 'pending')"
        "  ORDER BY next_attempt_at LIMIT ?3) RETURNING {}",
        kDeliveryCols));
    if (!st) return statim::fail(st.error());
    std::vector<WebhookDelivery> out;
    (*st)->bind(1, now).bind(2, now + lease).bind(3, std::int64_t{limit});
    if (auto r = (*st)->forEachRow([&](const SqliteStatement& s) { out.push_back(rowToDelivery(s)); }); !r) {
      return statim::fail(r.error());
    }
    return out;
  });
}

Result<void> SqliteStore::recordAttempt(std::int64_t id, const WebhookAttempt& a, bool delivered,
                                        std::optional<Micros> retry_at) {
  return write<void>([&](SqliteDb& db) -> Result<void> {
    auto ins = db.prepare(
        "INSERT INTO webhook_attempts (delivery_id, at, status_code, error, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!ins) return statim::fail(ins.error());
    std::optional<std::int64_t> code;
    if (a.status_code) code = *a.status_code;
    if (auto r = (*ins)->bind(1, id).bind(2, a.at).bind(3, code).bind(4, a.error).bindDouble(5, a.duration_ms).run();
        !r) {
      return r;
    }
    const char* status = delivered ? "delivered" : retry_at ? "pending" : "failed";
    auto st = db.prepare(
        "UPDATE webhook_deliveries SET status = ?2, attempts = attempts + 1, last_status_code = ?3, last_error = ?4,"
        " next_attempt_at = ?5, delivered_at = ?6 WHERE id = ?1");
    if (!st) return statim::fail(st.error());
    std::optional<std::int64_t> delivered_at;
    if (delivered) delivered_at = a.at;
    return (*st)->bind(1, id).bind(2, status).bind(3, code).bind(4, a.error).bind(5, retry_at).bind(6, delivered_at).run();
  });
}

Result<std::vector<WebhookDelivery>> SqliteStore::listDeliveries(JobId job_id) {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  auto st = lease->db->prepare(std::format("SELECT {} FROM webhook_deliveries WHERE job_id = ?1 ORDER BY id", kDeliveryCols));
  if (!st) return statim::fail(st.error());
  std::vector<WebhookDelivery> out;
  (*st)->bind(1, job_id);
  if (auto r = (*st)->forEachRow([&](const SqliteStatement& s) { out.push_back(rowToDelivery(s)); }); !r) {
    return statim::fail(r.error());
  }
  auto attempts =
      lease->db->prepare("SELECT at, status_code, error, duration_ms FROM webhook_attempts WHERE delivery_id = ?1 ORDER BY at");
  if (!attempts) return statim::fail(attempts.error());
  for (auto& d : out) {
    (*attempts)->bind(1, d.id);
    auto r = (*attempts)->forEachRow([&](const SqliteStatement& s) {
      WebhookAttempt a{s.columnInt(0), std::nullopt, s.columnText(2), s.columnDouble(3)};
      if (auto code = s.columnOptInt(1)) a.status_code = static_cast<int>(*code);
      d.history.push_back(std::move(a));
    });
    if (!r) return statim::fail(r.error());
  }
  return out;
}

}  // namespace statim
