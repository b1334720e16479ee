// JobStore on PostgreSQL: the job rows, the queue, and the webhook rows each transition adds.
// The closures given to write() may run more than once (a batch rerun after a lost connection,
// a write that lost a deadlock), so they copy what they use rather than move it.
#include <algorithm>
#include <format>
#include <limits>

#include "core/clock.h"
#include "store/postgres/postgres_store.h"

namespace statim {

namespace {

constexpr const char* kCols =
    "id, model, type, prompt, params, priority, status, status_message, created_at, started_at, "
    "finished_at, result, error, attempts, lease_owner, lease_expires_at, cancel_requested, owner_key_id, "
    "webhook_url, webhook_events, earlier_attempts";
constexpr int kColCount = 21;  // a column selected after kCols has this index

// The job's files as one more column (column 21 after kCols): a JSON array of
// [role, name, content_type, bytes, sha256], or NULL. One statement reads a job with its files.
constexpr const char* kFilesCol =
    "(SELECT json_agg(json_build_array(f.role, f.name, f.content_type, f.bytes, f.sha256) ORDER BY f.role, f.position)"
    " FROM job_files f WHERE f.job_id = jobs.id)";
constexpr int kFilesColumn = kColCount;

// Fills the job's inputs and artifacts from the kFilesCol column (paths from `blobs`).
void filesFromColumn(const PgResult& r, int i, const BlobStore& blobs, Job& j) {
  if (r.isNull(i, kFilesColumn)) return;
  auto files = nlohmann::json::parse(r.text(i, kFilesColumn), nullptr, false);
  if (!files.is_array()) return;
  for (auto& f : files) {
    if (!f.is_array() || f.size() != 5) continue;
    JobFile file{
        f[1].get<std::string>(), f[2].get<std::string>(), f[3].get<std::int64_t>(), f[4].get<std::string>(), {}};
    file.path = blobs.pathOf(file.sha256);
    (f[0] == "input" ? j.inputs : j.artifacts).push_back(std::move(file));
  }
}

Job rowToJob(const PgResult& r, int i) {
  Job j;
  j.id = r.int64(i, 0);
  j.model = r.text(i, 1);
  j.type = r.text(i, 2);
  j.prompt = r.text(i, 3);
  j.params = nlohmann::json::parse(r.text(i, 4), nullptr, false);
  if (j.params.is_discarded()) j.params = nlohmann::json::object();
  j.priority = static_cast<int>(r.int64(i, 5));
  j.status = parseJobStatus(r.text(i, 6)).value_or(JobStatus::kFailed);
  j.status_message = r.text(i, 7);
  j.created_at = r.int64(i, 8);
  j.started_at = r.optInt(i, 9);
  j.finished_at = r.optInt(i, 10);
  if (!r.isNull(i, 11)) {
    j.result = nlohmann::json::parse(r.text(i, 11), nullptr, false);
    if (j.result.is_discarded()) j.result = nullptr;
  }
  j.error = r.text(i, 12);
  j.attempts = static_cast<int>(r.int64(i, 13));
  j.lease_owner = r.text(i, 14);
  j.lease_expires_at = r.optInt(i, 15);
  j.cancel_requested = r.boolean(i, 16);
  j.owner_key_id = r.optInt(i, 17);
  if (!r.isNull(i, 18)) {
    Webhook w{r.text(i, 18), parseEventList(r.text(i, 19))};
    j.webhook = std::move(w);
  }
  j.earlier_attempts = nlohmann::json::parse(r.text(i, 20), nullptr, false);
  if (!j.earlier_attempts.is_array()) j.earlier_attempts = nlohmann::json::array();
  return j;
}

// Adds the delivery row for `event` to each of `ids` whose webhook asked for it.
Result<void> enqueueWebhooks(PgConn& c, const std::vector<JobId>& ids, std::string_view event) {
  if (ids.empty() || event.empty()) return ok();
  auto r = c.exec(
      "INSERT INTO webhook_deliveries (job_id, event, url, status, next_attempt_at, created_at)"
      " SELECT id, $2::text, webhook_url, 'pending', t.now, t.now FROM jobs, (SELECT statim_now_us() AS now) t"
      " WHERE id = ANY($1::bigint[]) AND webhook_url IS NOT NULL AND strpos(webhook_events, ',' || $2::text || ',') > 0"
      " ORDER BY id",
      PgParams().addArray(ids).add(event));
  if (!r) return statim::fail(r.error());
  return ok();
}
Result<void> enqueueWebhook(PgConn& c, JobId id, std::string_view event) { return enqueueWebhooks(c, {id}, event); }

Error conflict(JobId id, const std::string& owner) {
  return {ErrorCode::kConflict,
          std::format("job {} is not PROCESSING under lease '{}' (lease lost or job finished)", id, owner),
          {}};
}

Result<void> insertFiles(PgConn& c, JobId id, std::string_view role, const std::vector<JobFile>& files) {
  for (size_t i = 0; i < files.size(); ++i) {
    const JobFile& f = files[i];
    auto r = c.exec(
        "INSERT INTO job_files (job_id, role, position, name, content_type, bytes, sha256)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        PgParams(id, role, static_cast<std::int64_t>(i), f.name, f.content_type, f.bytes, f.sha256));
    if (!r) return statim::fail(r.error());
  }
  return ok();
}

// The job with its files.
Result<std::optional<Job>> selectJob(PgConn& c, const BlobStore& blobs, JobId id, bool for_update = false) {
  auto r =
      c.exec(std::format("SELECT {}, {} FROM jobs WHERE id = $1{}", kCols, kFilesCol, for_update ? " FOR UPDATE" : ""),
             PgParams(id));
  if (!r) return statim::fail(r.error());
  if (r->rows() == 0) return std::optional<Job>();
  Job j = rowToJob(*r, 0);
  filesFromColumn(*r, 0, blobs, j);
  return std::optional<Job>(std::move(j));
}

Result<std::optional<std::pair<Job, std::string>>> selectIdempotent(PgConn& c, std::int64_t owner,
                                                                    const std::string& key) {
  auto r = c.exec(std::format("SELECT {}, request_hash FROM jobs WHERE COALESCE(owner_key_id, 0) = $1"
                              " AND idempotency_key = $2",
                              kCols),
                  PgParams(owner, key));
  if (!r) return statim::fail(r.error());
  std::optional<std::pair<Job, std::string>> found;
  if (r->rows() > 0) found.emplace(rowToJob(*r, 0), r->text(0, kColCount));
  return found;
}

// The earlier job of this idempotency key as create answers it: replayed, or kConflict.
Result<std::optional<Job>> replay(PgConn& c, std::int64_t owner, const NewJob& request) {
  auto earlier = selectIdempotent(c, owner, request.idempotency_key);
  if (!earlier) return statim::fail(earlier.error());
  return replayOf(std::move(*earlier), request);
}

Result<void> checkMaxQueued(PgConn& c, const JobOwner& owner) {
  if (!owner.max_queued) return ok();
  // Nodes creating jobs for one key at once count one after the other: the limit is exact.
  if (auto r = c.exec("SELECT pg_advisory_xact_lock(1937010273, $1::int)", PgParams(owner.key_id)); !r) {
    return statim::fail(r.error());
  }
  auto r = c.exec("SELECT COUNT(*) FROM jobs WHERE owner_key_id = $1 AND status = 'QUEUED'", PgParams(owner.key_id));
  if (!r) return statim::fail(r.error());
  std::int64_t queued = r->int64(0, 0);
  if (queued < *owner.max_queued) return ok();
  return statim::fail(ErrorCode::kRateLimited,
                      std::format("key '{}' already has {} queued jobs (max_queued {}); retry when one starts",
                                  owner.key_name, queued, *owner.max_queued));
}

// The queued job as submitted: claimed by start->owner when start is set.
Job asSubmitted(Job job, const std::optional<LeaseRequest>& start) {
  if (start) {
    job.status = transition(JobStep::kStarted).status;
    job.status_message = transition(JobStep::kStarted).message;
    job.attempts = 1;
    job.lease_owner = start->owner;
  }
  return job;
}

// The row of `job` (asSubmitted).
PgStatement insertStatement(const Job& job, const NewJob& request, const std::optional<LeaseRequest>& start) {
  bool idempotent = !request.idempotency_key.empty();
  PgParams p(job.model, job.type, job.prompt, dumpJson(job.params), job.priority, toString(job.status),
             job.status_message, job.owner_key_id);
  p.add(idempotent ? std::optional<std::string>(request.idempotency_key) : std::nullopt);
  p.add(idempotent ? std::optional<std::string>(request.request_hash) : std::nullopt);
  p.add(job.webhook ? std::optional<std::string>(job.webhook->url) : std::nullopt);
  p.add(job.webhook ? std::optional<std::string>(eventList(job.webhook->events)) : std::nullopt);
  p.add(start.has_value()).add(job.attempts).add(job.lease_owner).add(start ? start->duration : Micros{0});
  return {
      "INSERT INTO jobs (model, type, prompt, params, priority, status, status_message, owner_key_id,"
      " idempotency_key, request_hash, webhook_url, webhook_events, created_at, started_at, attempts, lease_owner,"
      " lease_expires_at)"
      " SELECT $1::text, $2::text, $3::text, $4::text, $5::int, $6::text, $7::text, $8::bigint, $9::text, $10::text,"
      " $11::text, $12::text, t.now, CASE WHEN $13::bool THEN t.now END, $14::int, $15::text,"
      " CASE WHEN $13::bool THEN t.now + $16::bigint END FROM (SELECT statim_now_us() AS now) t"
      " ON CONFLICT ((COALESCE(owner_key_id, 0)), idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
      " RETURNING id, created_at",
      std::move(p)};
}

// The job (asSubmitted) as stored by insertStatement's row `r` (RETURNING id, created_at).
Job inserted(Job job, const PgResult& r, const std::optional<LeaseRequest>& start) {
  job.id = r.int64(0, 0);
  job.created_at = r.int64(0, 1);
  if (start) {
    job.started_at = job.created_at;
    job.lease_expires_at = job.created_at + start->duration;
  }
  return job;
}

// The insert of createAsync: returns the stored job, or the earlier one its idempotency key names.
Result<Job> insertJob(PgConn& c, Job job, const NewJob& request, const std::optional<LeaseRequest>& start) {
  std::int64_t owner = request.owner ? request.owner->key_id : 0;
  bool idempotent = !request.idempotency_key.empty();
  if (idempotent) {
    auto earlier = replay(c, owner, request);
    if (!earlier) return statim::fail(earlier.error());
    if (*earlier) return std::move(**earlier);
  }
  if (request.owner) {
    if (auto r = checkMaxQueued(c, *request.owner); !r) return statim::fail(r.error());
  }
  job = asSubmitted(std::move(job), start);
  PgStatement insert = insertStatement(job, request, start);
  auto r = c.exec(insert.sql, insert.params);
  if (!r) return statim::fail(r.error());
  if (r->rows() == 0) {
    // Another node created a job with this key meanwhile (and has committed it).
    auto earlier = replay(c, owner, request);
    if (!earlier) return statim::fail(earlier.error());
    if (!*earlier) return statim::fail(Error::storage("insert returned no id"));
    return std::move(**earlier);
  }
  job = inserted(std::move(job), *r, start);
  if (auto f = insertFiles(c, job.id, "input", request.inputs); !f) return statim::fail(f.error());
  job.inputs = request.inputs;
  if (job.webhook) {
    if (auto w = enqueueWebhook(c, job.id, transition(JobStep::kQueued).event); !w) return statim::fail(w.error());
    if (start) {
      if (auto w = enqueueWebhook(c, job.id, transition(JobStep::kStarted).event); !w) return statim::fail(w.error());
    }
  }
  return job;
}

// Deletes what belongs to the jobs `out.ids` (files, webhooks) and fills out.orphaned_files; the
// job rows themselves are already gone.
Result<void> deleteJobRows(PgConn& c, DeletedJobs& out) {
  if (out.ids.empty()) return ok();
  PgParams ids;
  ids.addArray(out.ids);
  auto gone = c.exec("DELETE FROM job_files WHERE job_id = ANY($1::bigint[]) RETURNING sha256", ids);
  if (!gone) return statim::fail(gone.error());
  std::vector<std::string> released;
  for (int i = 0; i < gone->rows(); ++i) released.push_back(gone->text(i, 0));
  // A second statement: the first one's snapshot still sees the rows it deleted.
  auto freed = c.exec(
      "SELECT DISTINCT s FROM unnest($1::text[]) AS u(s) WHERE NOT EXISTS (SELECT 1 FROM job_files WHERE sha256 = u.s)"
      " ORDER BY s",
      PgParams().addArray(released));
  if (!freed) return statim::fail(freed.error());
  for (int i = 0; i < freed->rows(); ++i) out.orphaned_files.push_back(freed->text(i, 0));
  for (const char* sql : {"DELETE FROM webhook_attempts WHERE delivery_id IN"
                          " (SELECT id FROM webhook_deliveries WHERE job_id = ANY($1::bigint[]))",
                          "DELETE FROM webhook_deliveries WHERE job_id = ANY($1::bigint[])"}) {
    if (auto r = c.exec(sql, ids); !r) return statim::fail(r.error());
  }
  return ok();
}

}  // namespace

void PostgresStore::createAsync(NewJob nj, std::optional<LeaseRequest> start, CreateCallback done) {
  Job job = queuedJob(nj);
  if (nj.inputs.empty() && !job.webhook && nj.idempotency_key.empty() && !(nj.owner && nj.owner->max_queued)) {
    // The row alone: no files, webhook rows, key or per-key limit to check.
    job = asSubmitted(std::move(job), start);
    auto statement = std::make_shared<PgStatement>(insertStatement(job, nj, start));
    writeOneAsync<Job>([statement] { return *statement; },
                       [job = std::move(job), start](PgResult& r) -> Result<Job> {
                         if (r.rows() != 1) return statim::fail(Error::storage("insert returned no id"));
                         return inserted(job, r, start);
                       },
                       std::move(done));
    return;
  }
  auto request = std::make_shared<NewJob>(std::move(nj));  // what the checks need besides the job
  writeAsync<Job>([job = std::move(job), request,
                   start = std::move(start)](PgConn& c) -> Result<Job> { return insertJob(c, job, *request, start); },
                  std::move(done));
}

Result<Job> PostgresStore::get(JobId id) {
  return read<Job>([&](PgConn& c) -> Result<Job> {
    auto job = selectJob(c, blobs_, id);
    if (!job) return statim::fail(job.error());
    if (!*job) return statim::fail(ErrorCode::kNotFound, std::format("job {} not found", id));
    return std::move(**job);
  });
}

Result<std::optional<std::pair<Job, std::string>>> PostgresStore::findIdempotent(std::int64_t owner,
                                                                                 const std::string& key) {
  return read<std::optional<std::pair<Job, std::string>>>([&](PgConn& c) { return selectIdempotent(c, owner, key); });
}

Result<JobPage> PostgresStore::list(const JobFilter& f) {
  return read<JobPage>([&](PgConn& c) -> Result<JobPage> {
    std::string where = "WHERE true";
    PgParams p;
    if (f.status) where += std::format(" AND status = ${}", p.add(toString(*f.status)).size());
    if (f.model) where += std::format(" AND model = ${}", p.add(*f.model).size());
    if (f.owner_key_id) where += std::format(" AND owner_key_id = ${}", p.add(*f.owner_key_id).size());
    if (f.type) where += std::format(" AND type = ${}", p.add(*f.type).size());
    if (f.created_from) where += std::format(" AND created_at >= ${}", p.add(*f.created_from).size());
    if (f.created_before) where += std::format(" AND created_at < ${}", p.add(*f.created_before).size());
    if (f.text) where += std::format(" AND prompt ILIKE ${} ESCAPE '\\'", p.add(likeContaining(*f.text)).size());
    // One snapshot, so that the page and the total agree.
    if (auto r = c.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); !r) return statim::fail(r.error());
    auto page = [&]() -> Result<JobPage> {
      JobPage out;
      auto count = c.exec(std::format("SELECT COUNT(*) FROM jobs {}", where), p);
      if (!count) return statim::fail(count.error());
      out.total = count->int64(0, 0);
      PgParams pp = p;
      size_t n = pp.add(f.limit).add(f.offset).size();
      auto rows = c.exec(std::format("SELECT {}, {} FROM jobs {} ORDER BY id DESC LIMIT ${} OFFSET ${}", kCols,
                                     kFilesCol, where, n - 1, n),
                         pp);
      if (!rows) return statim::fail(rows.error());
      for (int i = 0; i < rows->rows(); ++i) {
        out.jobs.push_back(rowToJob(*rows, i));
        filesFromColumn(*rows, i, blobs_, out.jobs.back());
      }
      return out;
    }();
    (void)c.run(page ? "COMMIT" : "ROLLBACK");
    return page;
  });
}

Result<std::optional<std::int64_t>> PostgresStore::queuedAhead(JobId id) {
  return read<std::optional<std::int64_t>>([&](PgConn& c) -> Result<std::optional<std::int64_t>> {
    // The claim's order (jobs_queue: model, priority DESC, id), counted over that index.
    auto r = c.exec(
        "SELECT (SELECT COUNT(*) FROM jobs o WHERE o.status = 'QUEUED' AND o.model = j.model"
        "  AND (o.priority > j.priority OR (o.priority = j.priority AND o.id < j.id)))"
        " FROM jobs j WHERE j.id = $1 AND j.status = 'QUEUED'",
        PgParams(id));
    if (!r) return statim::fail(r.error());
    if (r->rows() == 0) return std::optional<std::int64_t>{};
    return std::optional<std::int64_t>{r->int64(0, 0)};
  });
}

Result<std::vector<Job>> PostgresStore::claim(const std::string& model, const LeaseRequest& lease, int max) {
  // One statement, committing by itself: the claim, the rows' files (the worker reads them) and
  // the "started" webhook rows of the jobs that asked for them.
  return statement<std::vector<Job>>([&](PgConn& c) -> Result<std::vector<Job>> {
    const JobTransition& started = transition(JobStep::kStarted);
    auto r = c.exec(
        std::format(
            "WITH claimed AS ({} RETURNING {}, {} AS files),"
            " hooks AS (INSERT INTO webhook_deliveries (job_id, event, url, status, next_attempt_at, created_at)"
            "  SELECT id, $7::text, webhook_url, 'pending', statim_now_us(), statim_now_us() FROM claimed"
            "  WHERE webhook_url IS NOT NULL AND strpos(webhook_events, ',' || $7::text || ',') > 0)"
            " SELECT * FROM claimed",
            kClaimSql, kCols, kFilesCol),
        PgParams(model, max, toString(started.status), started.message, lease.owner, lease.duration, started.event));
    if (!r) return statim::fail(r.error());
    std::vector<Job> jobs;
    for (int i = 0; i < r->rows(); ++i) {
      jobs.push_back(rowToJob(*r, i));
      filesFromColumn(*r, i, blobs_, jobs.back());
    }
    std::ranges::sort(jobs, [](const Job& a, const Job& b) {
      return a.priority != b.priority ? a.priority > b.priority : a.id < b.id;
    });
    return jobs;
  });
}

Result<bool> PostgresStore::heartbeat(JobId id, const std::string& owner, Micros lease) {
  return write<bool>([=](PgConn& c) -> Result<bool> {
    auto r = c.exec(
        "UPDATE jobs SET lease_expires_at = statim_now_us() + $1 WHERE id = $2 AND status = 'PROCESSING'"
        " AND lease_owner = $3 RETURNING cancel_requested",
        PgParams(lease, id, owner));
    if (!r) return statim::fail(r.error());
    if (r->rows() == 0) return statim::fail(conflict(id, owner));
    return r->boolean(0, 0);
  });
}

Result<JobStore::Renewal> PostgresStore::renewLeases(const std::vector<std::pair<JobId, std::string>>& held,
                                                     Micros lease) {
  if (held.empty()) return Renewal{};
  std::vector<JobId> ids;
  std::vector<std::string> owners;
  for (auto& [id, owner] : held) {
    ids.push_back(id);
    owners.push_back(owner);
  }
  return write<Renewal>([ids, owners, lease](PgConn& c) -> Result<Renewal> {
    auto r = c.exec(
        "UPDATE jobs SET lease_expires_at = statim_now_us() + $1"
        " FROM unnest($2::bigint[], $3::text[]) AS h(id, owner)"
        " WHERE jobs.id = h.id AND jobs.lease_owner = h.owner AND jobs.status = 'PROCESSING'"
        " RETURNING jobs.id, jobs.cancel_requested",
        PgParams().add(lease).addArray(ids).addArray(owners));
    if (!r) return statim::fail(r.error());
    Renewal out;
    for (int i = 0; i < r->rows(); ++i) {
      out.renewed.push_back(r->int64(i, 0));
      if (r->boolean(i, 1)) out.cancel_requested.push_back(r->int64(i, 0));
    }
    std::ranges::sort(out.renewed);
    std::ranges::sort(out.cancel_requested);
    return out;
  });
}

void PostgresStore::finishAsync(Job job, const std::string& owner, JobOutcome outcome, FinishCallback done) {
  std::optional<std::string> result;
  if (!outcome.result.is_null()) result = dumpJson(outcome.result);
  for (auto& f : outcome.artifacts) f.path = blobs_.pathOf(f.sha256);
  int attempt = job.attempts;  // as claimed; 0: any (the blocking forms know only the id)
  // A claimed job says whether it has a webhook; one known by its id only may have one.
  bool maybe_hooked = job.webhook.has_value() || job.model.empty();
  job = endedJob(std::move(job), std::move(outcome));
  // Fenced on the lease's owner and attempt: a node whose lease expired (and whose job was
  // claimed again, maybe by itself) cannot overwrite the new run's outcome.
  auto update = std::make_shared<PgStatement>(PgStatement{
      "UPDATE jobs SET status = $1, status_message = $2, result = $3, error = $4, finished_at = statim_now_us(),"
      " lease_owner = '', lease_expires_at = NULL WHERE id = $5 AND status = 'PROCESSING' AND lease_owner = $6"
      " AND ($7::int = 0 OR attempts = $7::int) RETURNING finished_at",
      PgParams(toString(job.status), job.status_message, result, job.error, job.id, owner, attempt)});
  auto ended = [owner](Job job, const PgResult& r) -> Result<Job> {
    if (r.rows() == 0) return statim::fail(conflict(job.id, owner));  // changed nothing
    job.finished_at = r.int64(0, 0);
    return job;
  };
  if (job.artifacts.empty() && !maybe_hooked) {
    // The row alone: no artifact or webhook rows.
    writeOneAsync<Job>([update] { return *update; },
                       [ended, job = std::move(job)](PgResult& r) { return ended(job, r); }, std::move(done));
    return;
  }
  writeAsync<Job>(
      [update, ended, maybe_hooked, job = std::move(job)](PgConn& c) -> Result<Job> {
        auto r = c.exec(update->sql, update->params);
        if (!r) return statim::fail(r.error());
        auto e = ended(job, *r);
        if (!e) return e;
        if (auto f = insertFiles(c, e->id, "artifact", e->artifacts); !f) return statim::fail(f.error());
        if (maybe_hooked) {
          if (auto w = enqueueWebhook(c, e->id, eventName(e->status)); !w) return statim::fail(w.error());
        }
        return e;
      },
      std::move(done));
}

Result<CancelOutcome> PostgresStore::requestCancel(JobId id) {
  return write<CancelOutcome>([=, this](PgConn& c) -> Result<CancelOutcome> {
    // The row is locked while its status decides what to change.
    auto before = selectJob(c, blobs_, id, true);
    if (!before) return statim::fail(before.error());
    if (!*before) return statim::fail(Error::notFound(std::format("job {} not found", id)));
    const JobTransition* step = nullptr;
    Result<PgResult> changed = statim::fail(Error::internal("no change"));
    if ((*before)->status == JobStatus::kQueued) {
      step = &transition(JobStep::kCancelledQueued);
      changed = c.exec("UPDATE jobs SET status = $2, status_message = $3, finished_at = statim_now_us() WHERE id = $1",
                       PgParams(id, toString(step->status), step->message));
    } else if ((*before)->status == JobStatus::kProcessing) {
      step = &transition(JobStep::kCancelling);
      changed = c.exec("UPDATE jobs SET cancel_requested = true, status_message = $2 WHERE id = $1",
                       PgParams(id, step->message));
    }
    if (!step) return CancelOutcome{**before, (*before)->status};
    if (!changed) return statim::fail(changed.error());
    if ((*before)->webhook) {
      if (auto w = enqueueWebhook(c, id, step->event); !w) return statim::fail(w.error());
    }
    auto after = selectJob(c, blobs_, id);
    if (!after) return statim::fail(after.error());
    if (!*after) return statim::fail(Error::notFound(std::format("job {} not found", id)));
    return CancelOutcome{std::move(**after), (*before)->status};
  });
}

Result<RequeueReport> PostgresStore::requeueAbandoned(Micros expired_before, int max_attempts) {
  // The caller's cut-off, taken relative to its clock, is applied to the database's: leases are
  // the database's time, and nodes' clocks may differ.
  Micros now = nowMicros();
  Micros offset = expired_before >= now ? std::min<Micros>(expired_before - now, Micros{100} * 365 * 86400 * 1000000)
                                        : std::max<Micros>(expired_before - now, -Micros{100} * 365 * 86400 * 1000000);
  return write<RequeueReport>([=](PgConn& c) -> Result<RequeueReport> {
    RequeueReport report;
    const JobTransition& abandoned = transition(JobStep::kAbandoned);
    auto failed = c.exec(
        "UPDATE jobs SET status = $3, status_message = $4, finished_at = statim_now_us(),"
        " error = 'abandoned: the worker running this job stopped ' || attempts || ' times"
        " (jobs.max_attempts = ' || $2::int || ')', lease_owner = '', lease_expires_at = NULL"
        " WHERE status = 'PROCESSING' AND lease_expires_at < statim_now_us() + $1 AND attempts >= $2::int RETURNING id",
        PgParams(offset, max_attempts, toString(abandoned.status), abandoned.message));
    if (!failed) return statim::fail(failed.error());
    for (int i = 0; i < failed->rows(); ++i) report.failed.push_back(failed->int64(i, 0));
    std::ranges::sort(report.failed);
    if (auto w = enqueueWebhooks(c, report.failed, abandoned.event); !w) return statim::fail(w.error());
    const JobTransition& requeued = transition(JobStep::kRequeued);
    auto back = c.exec(
        "UPDATE jobs SET status = $3, status_message = $4 || ' (attempt ' || attempts || ' of ' || $2::int"
        " || ' used)', lease_owner = '', lease_expires_at = NULL,"
        " earlier_attempts = (earlier_attempts::jsonb || jsonb_build_array(jsonb_build_object('attempt', attempts,"
        " 'started_at', started_at, 'lease_owner', lease_owner, 'requeued_at', statim_now_us())))::text"
        " WHERE status = 'PROCESSING' AND lease_expires_at < statim_now_us() + $1 AND attempts < $2::int RETURNING id",
        PgParams(offset, max_attempts, toString(requeued.status), requeued.message));
    if (!back) return statim::fail(back.error());
    for (int i = 0; i < back->rows(); ++i) report.requeued.push_back(back->int64(i, 0));
    std::ranges::sort(report.requeued);
    return report;
  });
}

Result<std::map<std::string, std::int64_t>> PostgresStore::queuedByModel() {
  return read<std::map<std::string, std::int64_t>>([](PgConn& c) -> Result<std::map<std::string, std::int64_t>> {
    auto r = c.exec("SELECT model, COUNT(*) FROM jobs WHERE status = 'QUEUED' GROUP BY model");
    if (!r) return statim::fail(r.error());
    std::map<std::string, std::int64_t> out;
    for (int i = 0; i < r->rows(); ++i) out[r->text(i, 0)] = r->int64(i, 1);
    return out;
  });
}

Result<DeletedJobs> PostgresStore::deleteFinishedBefore(Micros before) {
  return write<DeletedJobs>([=](PgConn& c) -> Result<DeletedJobs> {
    DeletedJobs out;
    auto r = c.exec(
        "DELETE FROM jobs WHERE finished_at < $1 AND status IN ('COMPLETED','FAILED','CANCELLED')"
        " RETURNING id, finished_at",
        PgParams(before));
    if (!r) return statim::fail(r.error());
    for (int i = 0; i < r->rows(); ++i) {
      out.ids.push_back(r->int64(i, 0));
      out.released_at = std::max(out.released_at, r->int64(i, 1));
    }
    std::ranges::sort(out.ids);
    if (auto d = deleteJobRows(c, out); !d) return statim::fail(d.error());
    return out;
  });
}

Result<DeletedJobs> PostgresStore::deleteJob(JobId id) {
  return write<DeletedJobs>([=](PgConn& c) -> Result<DeletedJobs> {
    DeletedJobs out;
    auto r = c.exec(
        "DELETE FROM jobs WHERE id = $1 AND status IN ('COMPLETED','FAILED','CANCELLED') RETURNING id, finished_at",
        PgParams(id));
    if (!r) return statim::fail(r.error());
    if (r->rows() == 0) {
      auto now = c.exec("SELECT status FROM jobs WHERE id = $1", PgParams(id));
      if (!now) return statim::fail(now.error());
      if (now->rows() == 0) return statim::fail(Error::notFound(std::format("job {} not found", id)));
      return statim::fail(Error{ErrorCode::kConflict,
                                std::format("job {} is {}: only an ended job can be deleted; cancel it first "
                                            "(POST /job/{}/cancel)",
                                            id, now->text(0, 0), id),
                                {}});
    }
    out.ids.push_back(r->int64(0, 0));
    out.released_at = r->int64(0, 1);
    if (auto d = deleteJobRows(c, out); !d) return statim::fail(d.error());
    return out;
  });
}

Result<std::vector<std::string>> PostgresStore::unreferencedFiles(const std::vector<std::string>& sha256s) {
  if (sha256s.empty()) return std::vector<std::string>{};
  return read<std::vector<std::string>>([&](PgConn& c) -> Result<std::vector<std::string>> {
    auto r = c.exec(
        "SELECT s FROM unnest($1::text[]) WITH ORDINALITY AS u(s, n)"
        " WHERE NOT EXISTS (SELECT 1 FROM job_files WHERE sha256 = u.s) ORDER BY n",
        PgParams().addArray(sha256s));
    if (!r) return statim::fail(r.error());
    std::vector<std::string> out;
    for (int i = 0; i < r->rows(); ++i) out.push_back(r->text(i, 0));
    return out;
  });
}

}  // namespace statim
