// WebhookStore on PostgreSQL. Rows are added by the job transitions (pg_jobs.cpp).
#include <format>

#include "store/postgres/postgres_store.h"

namespace statim {
namespace {

constexpr const char* kDeliveryCols =
    "id, job_id, event, url, status, attempts, next_attempt_at, last_status_code, last_error, created_at, "
    "delivered_at";

WebhookDelivery rowToDelivery(const PgResult& r, int i) {
  WebhookDelivery d;
  d.id = r.int64(i, 0);
  d.job_id = r.int64(i, 1);
  d.event = r.text(i, 2);
  d.url = r.text(i, 3);
  d.status = r.text(i, 4);
  d.attempts = static_cast<int>(r.int64(i, 5));
  d.next_attempt_at = r.optInt(i, 6);
  if (auto code = r.optInt(i, 7)) d.last_status_code = static_cast<int>(*code);
  d.last_error = r.text(i, 8);
  d.created_at = r.int64(i, 9);
  d.delivered_at = r.optInt(i, 10);
  return d;
}

}  // namespace

Result<std::vector<WebhookDelivery>> PostgresStore::claimDueDeliveries(Micros now, Micros lease, int limit) {
  return write<std::vector<WebhookDelivery>>([=](PgConn& c) -> Result<std::vector<WebhookDelivery>> {
    // SKIP LOCKED: nodes dispatching at once take different rows; the lease keeps a row from being
    // sent twice while its node sends it.
    auto r = c.exec(std::format("WITH due AS (SELECT id AS pick FROM webhook_deliveries d WHERE status = 'pending'"
                                "  AND next_attempt_at <= $1"
                                // A job's events go out in order: one waits until the job's earlier ones are settled.
                                "  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e"
                                "                  WHERE e.job_id = d.job_id AND e.id < d.id AND e.status = 'pending')"
                                "  ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
                                " UPDATE webhook_deliveries SET next_attempt_at = $2 FROM due WHERE id = due.pick"
                                " RETURNING {}",
                                kDeliveryCols),
                    PgParams(now, now + lease, limit));
    if (!r) return statim::fail(r.error());
    std::vector<WebhookDelivery> out;
    for (int i = 0; i < r->rows(); ++i) out.push_back(rowToDelivery(*r, i));
    std::ranges::sort(out, [](auto& a, auto& b) { return a.id < b.id; });
    return out;
  });
}

Result<void> PostgresStore::recordAttempt(std::int64_t id, const WebhookAttempt& a, bool delivered,
                                          std::optional<Micros> retry_at) {
  return write<void>([=](PgConn& c) -> Result<void> {
    std::optional<std::int64_t> code;
    if (a.status_code) code = *a.status_code;
    auto ins = c.exec(
        "INSERT INTO webhook_attempts (delivery_id, at, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5)",
        PgParams(id, a.at, code, a.error, a.duration_ms));
    if (!ins) return statim::fail(ins.error());
    const char* status = delivered ? "delivered" : retry_at ? "pending" : "failed";
    std::optional<std::int64_t> delivered_at;
    if (delivered) delivered_at = a.at;
    auto r = c.exec(
        "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, last_status_code = $3, last_error = $4,"
        " next_attempt_at = $5, delivered_at = $6 WHERE id = $1",
        PgParams(id, status, code, a.error, retry_at, delivered_at));
    if (!r) return statim::fail(r.error());
    return ok();
  });
}

Result<std::vector<WebhookDelivery>> PostgresStore::listDeliveries(JobId job_id) {
  return read<std::vector<WebhookDelivery>>([&](PgConn& c) -> Result<std::vector<WebhookDelivery>> {
    auto r = c.exec(std::format("SELECT {} FROM webhook_deliveries WHERE job_id = $1 ORDER BY id", kDeliveryCols),
                    PgParams(job_id));
    if (!r) return statim::fail(r.error());
    std::vector<WebhookDelivery> out;
    for (int i = 0; i < r->rows(); ++i) out.push_back(rowToDelivery(*r, i));
    auto attempts = c.exec(
        "SELECT delivery_id, at, status_code, error, duration_ms FROM webhook_attempts"
        " WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE job_id = $1) ORDER BY at",
        PgParams(job_id));
    if (!attempts) return statim::fail(attempts.error());
    for (int i = 0; i < attempts->rows(); ++i) {
      auto d = std::ranges::find(out, attempts->int64(i, 0), &WebhookDelivery::id);
      if (d == out.end()) continue;
      WebhookAttempt a{attempts->int64(i, 1), std::nullopt, attempts->text(i, 3), attempts->real(i, 4)};
      if (auto code = attempts->optInt(i, 2)) a.status_code = static_cast<int>(*code);
      d->history.push_back(std::move(a));
    }
    return out;
  });
}

}  // namespace statim
