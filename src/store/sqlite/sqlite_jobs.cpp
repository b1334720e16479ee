// JobStore on SQLite: the job rows, the queue, and the webhook rows each transition adds.
#include <algorithm>
#include <format>

#include "core/clock.h"
#include "store/sqlite/sqlite_store.h"

namespace statim {
namespace {

constexpr const char* kCols =
    "id, model, type, prompt, params, priority, status, status_message, created_at, started_at, "
    "finished_at, result, error, attempts, lease_owner, lease_expires_at, cancel_requested, owner_key_id, "
    "webhook_url, webhook_events, earlier_attempts";
constexpr int kColCount = 21;  // a column selected after kCols has this index

Job rowToJob(const SqliteStatement& s) {
  Job j;
  j.id = s.columnInt(0);
  j.model = s.columnText(1);
  j.type = s.columnText(2);
  j.prompt = s.columnText(3);
  j.params = nlohmann::json::parse(s.columnText(4), nullptr, false);
  if (j.params.is_discarded()) j.params = nlohmann::json::object();
  j.priority = static_cast<int>(s.columnInt(5));
  j.status = parseJobStatus(s.columnText(6)).value_or(JobStatus::kFailed);
  j.status_message = s.columnText(7);
  j.created_at = s.columnInt(8);
  j.started_at = s.columnOptInt(9);
  j.finished_at = s.columnOptInt(10);
  if (!s.columnIsNull(11)) {
    j.result = nlohmann::json::parse(s.columnText(11), nullptr, false);
    if (j.result.is_discarded()) j.result = nullptr;
  }
  j.error = s.columnText(12);
  j.attempts = static_cast<int>(s.columnInt(13));
  j.lease_owner = s.columnText(14);
  j.lease_expires_at = s.columnOptInt(15);
  j.cancel_requested = s.columnInt(16) != 0;
  j.owner_key_id = s.columnOptInt(17);
  if (!s.columnIsNull(18)) {
    Webhook w{s.columnText(18), parseEventList(s.columnText(19))};
    j.webhook = std::move(w);
  }
  j.earlier_attempts = nlohmann::json::parse(s.columnText(20), nullptr, false);
  if (!j.earlier_attempts.is_array()) j.earlier_attempts = nlohmann::json::array();
  return j;
}

// Adds the delivery row for `event` when the job's webhook asked for it (no-op otherwise).
Result<void> enqueueWebhook(SqliteDb& db, JobId id, std::string_view event, Micros now) {
  auto st = db.prepare(
      "INSERT INTO webhook_deliveries (job_id, event, url, status, next_attempt_at, created_at)"
      " SELECT id, ?2, webhook_url, 'pending', ?3, ?3 FROM jobs"
      " WHERE id = ?1 AND webhook_url IS NOT NULL AND instr(webhook_events, ',' || ?2 || ',') > 0");
  if (!st) return statim::fail(st.error());
  return (*st)->bind(1, id).bind(2, event).bind(3, now).run();
}

Result<Job> selectJob(SqliteDb& db, JobId id) {
  auto st = db.prepare(std::format("SELECT {} FROM jobs WHERE id = ?1", kCols));
  if (!st) return statim::fail(st.error());
  auto& s = **st;
  s.bind(1, id);
  auto row = s.step();
  if (!row) return statim::fail(row.error());
  if (!*row) return statim::fail(ErrorCode::kNotFound, std::format("job {} not found", id));
  Job j = rowToJob(s);
  s.reset();
  return j;
}

Error conflict(JobId id, const std::string& owner) {
  return {ErrorCode::kConflict,
          std::format("job {} is not PROCESSING under lease '{}' (lease lost or job finished)", id, owner),
          {}};
}

Result<void> insertFiles(SqliteDb& db, JobId id, std::string_view role, const std::vector<JobFile>& files) {
  auto st = db.prepare(
      "INSERT INTO job_files (job_id, role, position, name, content_type, bytes, sha256)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if (!st) return statim::fail(st.error());
  for (size_t i = 0; i < files.size(); ++i) {
    const JobFile& f = files[i];
    auto r = (*st)->bind(1, id).bind(2, role).bind(3, static_cast<std::int64_t>(i)).bind(4, f.name)
                 .bind(5, f.content_type).bind(6, f.bytes).bind(7, f.sha256).run();
    (*st)->reset();
    if (!r) return r;
  }
  return ok();
}

// The earlier job created with this owner's idempotency key, if any.
Result<std::optional<std::pair<Job, std::string>>> selectIdempotent(SqliteDb& db, std::int64_t owner,
                                                                  const std::string& key) {
  auto st = db.prepare(std::format(
      "SELECT {}, request_hash FROM jobs WHERE COALESCE(owner_key_id, 0) = ?1 AND idempotency_key = ?2", kCols));
  if (!st) return statim::fail(st.error());
  std::optional<std::pair<Job, std::string>> found;
  (*st)->bind(1, owner).bind(2, key);
  if (auto r =
          (*st)->forEachRow([&](const SqliteStatement& s) { found.emplace(rowToJob(s), s.columnText(kColCount)); });
      !r) {
    return statim::fail(r.error());
  }
  return found;
}

Result<void> checkMaxQueued(SqliteDb& db, const JobOwner& owner) {
  if (!owner.max_queued) return ok();
  auto st = db.prepare("SELECT COUNT(*) FROM jobs WHERE owner_key_id = ?1 AND status = 'QUEUED'");
  if (!st) return statim::fail(st.error());
  std::int64_t queued = 0;
  (*st)->bind(1, owner.key_id);
  if (auto r = (*st)->forEachRow([&](const SqliteStatement& s) { queued = s.columnInt(0); }); !r) {
    return statim::fail(r.error());
  }
  if (queued < *owner.max_queued) return ok();
  return statim::fail(ErrorCode::kRateLimited,
                      std::format("key '{}' already has {} queued jobs (max_queued {}); retry when one starts",
                                  owner.key_name, queued, *owner.max_queued));
}

// The insert of createAsync, on the writer. Fills job.id and created_at (and the lease, with
// `start`), or replaces `job` by the earlier one its idempotency key names.
Result<void> insertJob(SqliteDb& db, Job& job, const NewJob& request, const std::optional<LeaseRequest>& start) {
  std::int64_t owner = request.owner ? request.owner->key_id : 0;
  if (!request.idempotency_key.empty()) {
    auto earlier = selectIdempotent(db, owner, request.idempotency_key);
    if (!earlier) return statim::fail(earlier.error());
    auto replayed = replayOf(std::move(*earlier), request);
    if (!replayed) return statim::fail(replayed.error());
    if (*replayed) {
      job = std::move(**replayed);
      return ok();
    }
  }
  if (request.owner) {
    if (auto r = checkMaxQueued(db, *request.owner); !r) return r;
  }
  job.created_at = nowMicros();
  if (start) {
    job.status = transition(JobStep::kStarted).status;
    job.status_message = transition(JobStep::kStarted).message;
    job.started_at = job.created_at;
    job.attempts = 1;
    job.lease_owner = start->owner;
    job.lease_expires_at = job.created_at + start->duration;
  }
  auto st = db.prepare(
      "INSERT INTO jobs (model, type, prompt, params, priority, status, status_message, created_at, owner_key_id,"
      " idempotency_key, request_hash, webhook_url, webhook_events, started_at, attempts, lease_owner,"
      " lease_expires_at)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?13, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?14, ?15, ?16, ?17) RETURNING id");
  if (!st) return statim::fail(st.error());
  auto& s = **st;
  s.bind(1, job.model)
      .bind(2, job.type)
      .bind(3, job.prompt)
      .bind(4, dumpJson(job.params))
      .bind(5, std::int64_t{job.priority})
      .bind(6, job.status_message)
      .bind(7, job.created_at)
      .bind(8, job.owner_key_id)
      .bind(13, toString(job.status))
      .bind(14, job.started_at)
      .bind(15, std::int64_t{job.attempts})
      .bind(16, job.lease_owner)
      .bind(17, job.lease_expires_at);
  if (!request.idempotency_key.empty()) s.bind(9, request.idempotency_key).bind(10, request.request_hash);
  if (job.webhook) s.bind(11, job.webhook->url).bind(12, eventList(job.webhook->events));
  auto row = s.step();
  if (!row || !*row) {
    s.reset();
    return statim::fail(row ? Error::storage("insert returned no id") : row.error());
  }
  job.id = s.columnInt(0);
  s.reset();
  if (auto r = insertFiles(db, job.id, "input", request.inputs); !r) return r;
  job.inputs = request.inputs;
  if (!job.webhook) return ok();
  if (auto r = enqueueWebhook(db, job.id, transition(JobStep::kQueued).event, job.created_at); !r) return r;
  if (start) return enqueueWebhook(db, job.id, transition(JobStep::kStarted).event, job.created_at);
  return ok();
}

}  // namespace

Result<void> loadJobFiles(SqliteDb& db, const BlobStore& blobs, Job& job) {
  auto st = db.prepare(
      "SELECT role, name, content_type, bytes, sha256 FROM job_files WHERE job_id = ?1 ORDER BY role, position");
  if (!st) return statim::fail(st.error());
  (*st)->bind(1, job.id);
  return (*st)->forEachRow([&](const SqliteStatement& s) {
    JobFile f{s.columnText(1), s.columnText(2), s.columnInt(3), s.columnText(4), {}};
    f.path = blobs.pathOf(f.sha256);
    (s.columnText(0) == "input" ? job.inputs : job.artifacts).push_back(std::move(f));
  });
}

void SqliteStore::createAsync(NewJob nj, std::optional<LeaseRequest> start, CreateCallback done) {
  Job job = queuedJob(nj);
  // See NewJob::answered_at_end: its client is told nothing before the job ends, so its worker
  // may start it before the commit is flushed (which follows at once).
  const Sync sync = nj.answered_at_end ? Sync::kAfterDelivery : Sync::kFsync;
  auto request = std::make_shared<NewJob>(std::move(nj));  // what the checks need besides the job
  writeAsync<Job>(
      [job = std::move(job), request, start = std::move(start)](SqliteDb& db) mutable -> Result<Job> {
        if (auto r = insertJob(db, job, *request, start); !r) return statim::fail(r.error());
        // A replay names the earlier job now: flush it, in case its own client waits for its end.
        if (job.replayed && !request->answered_at_end) {
          if (auto r = db.syncLog(); !r) return statim::fail(r.error());
        }
        return std::move(job);
      },
      std::move(done), sync);
}

Result<Job> SqliteStore::get(JobId id) {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  auto job = selectJob(*lease->db, id);
  if (!job) return job;
  if (auto r = loadJobFiles(*lease->db, blobs_, *job); !r) return statim::fail(r.error());
  return job;
}

Result<std::optional<std::pair<Job, std::string>>> SqliteStore::findIdempotent(std::int64_t owner,
                                                                               const std::string& key) {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  return selectIdempotent(*lease->db, owner, key);
}

Result<JobPage> SqliteStore::list(const JobFilter& f) {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  std::string where = "WHERE 1=1";
  if (f.status) where += " AND status = ?1";
  if (f.model) where += " AND model = ?2";
  if (f.owner_key_id) where += " AND owner_key_id = ?5";
  if (f.type) where += " AND type = ?6";
  if (f.created_from) where += " AND created_at >= ?7";
  if (f.created_before) where += " AND created_at < ?8";
  if (f.text) where += " AND prompt LIKE ?9 ESCAPE '\\'";  // SQLite's LIKE: ASCII letters in any case
  JobPage page;
  // One read transaction so the page and the total agree.
  if (auto r = lease->db->exec("BEGIN"); !r) return statim::fail(r.error());
  auto finish = [&](auto result) {
    (void)lease->db->exec("COMMIT");
    return result;
  };
  auto count = lease->db->prepare(std::format("SELECT COUNT(*) FROM jobs {}", where));
  if (!count) return finish(Result<JobPage>(std::unexpected(count.error())));
  auto bindFilter = [&](SqliteStatement& s) {
    if (f.status) s.bind(1, toString(*f.status));
    if (f.model) s.bind(2, *f.model);
    if (f.owner_key_id) s.bind(5, *f.owner_key_id);
    if (f.type) s.bind(6, *f.type);
    if (f.created_from) s.bind(7, *f.created_from);
    if (f.created_before) s.bind(8, *f.created_before);
    if (f.text) s.bind(9, likeContaining(*f.text));
  };
  bindFilter(**count);
  if (auto row = (*count)->step(); !row) return finish(Result<JobPage>(std::unexpected(row.error())));
  page.total = (*count)->columnInt(0);
  (*count)->reset();
  auto st = lease->db->prepare(std::format("SELECT {} FROM jobs {} ORDER BY id DESC LIMIT ?3 OFFSET ?4", kCols, where));
  if (!st) return finish(Result<JobPage>(std::unexpected(st.error())));
  bindFilter(**st);
  (*st)->bind(3, std::int64_t{f.limit}).bind(4, std::int64_t{f.offset});
  while (true) {
    auto row = (*st)->step();
    if (!row) return finish(Result<JobPage>(std::unexpected(row.error())));
    if (!*row) break;
    page.jobs.push_back(rowToJob(**st));
  }
  (*st)->reset();
  for (auto& j : page.jobs) {
    if (auto r = loadJobFiles(*lease->db, blobs_, j); !r) return finish(Result<JobPage>(std::unexpected(r.error())));
  }
  (*st)->reset();
  return finish(Result<JobPage>(std::move(page)));
}

// Sync::kLater: a power loss may undo a claim; the job is then queued again and runs again.
Result<std::vector<Job>> SqliteStore::claim(const std::string& model, const LeaseRequest& lease, int max) {
  return writeLater<std::vector<Job>>([&](SqliteDb& db) -> Result<std::vector<Job>> {
    Micros now = nowMicros();
    const JobTransition& started = transition(JobStep::kStarted);
    // One job per statement, best first, all in this write's transaction. (One statement with
    // `id IN (SELECT ... LIMIT n)` measured ~2x slower on the writer thread, which is the
    // store's ceiling, than this scalar form: 4.2k vs 2.0k echo jobs/s at 32 clients.)
    auto st =
        db.prepare(std::format("UPDATE jobs SET status = ?5, status_message = ?6, started_at = ?1,"
                               " attempts = attempts + 1, lease_owner = ?2, lease_expires_at = ?3"
                               " WHERE id = (SELECT id FROM jobs WHERE model = ?4 AND status = 'QUEUED'"
                               "             ORDER BY priority DESC, id LIMIT 1)"
                               " RETURNING {}",
                               kCols));
    if (!st) return statim::fail(st.error());
    auto& s = **st;
    std::vector<Job> jobs;
    while (static_cast<int>(jobs.size()) < max) {
      s.bind(1, now).bind(2, lease.owner).bind(3, now + lease.duration).bind(4, model);
      s.bind(5, toString(started.status)).bind(6, started.message);
      auto row = s.step();
      if (!row) return statim::fail(row.error());
      if (!*row) break;
      jobs.push_back(rowToJob(s));
      s.reset();
    }
    s.reset();
    for (auto& job : jobs) {
      if (job.webhook) {
        if (auto r = enqueueWebhook(db, job.id, started.event, now); !r) return statim::fail(r.error());
      }
      if (auto r = loadJobFiles(db, blobs_, job); !r) return statim::fail(r.error());  // the worker reads them
    }
    return jobs;
  });
}

Result<bool> SqliteStore::heartbeat(JobId id, const std::string& owner, Micros lease) {
  return writeLater<bool>([&](SqliteDb& db) -> Result<bool> {
    auto st = db.prepare(
        "UPDATE jobs SET lease_expires_at = ?1 WHERE id = ?2 AND status = 'PROCESSING' AND lease_owner = ?3"
        " RETURNING cancel_requested");
    if (!st) return statim::fail(st.error());
    auto& s = **st;
    s.bind(1, nowMicros() + lease).bind(2, id).bind(3, owner);
    auto row = s.step();
    if (!row) return statim::fail(row.error());
    if (!*row) return statim::fail(conflict(id, owner));
    bool cancel = s.columnInt(0) != 0;
    s.reset();
    return cancel;
  });
}

void SqliteStore::finishAsync(Job job, const std::string& owner, JobOutcome outcome, FinishCallback done) {
  std::optional<std::string> result;
  if (!outcome.result.is_null()) result = dumpJson(outcome.result);
  for (auto& f : outcome.artifacts) f.path = blobs_.pathOf(f.sha256);
  // The final job is built here, not read back: the writer thread is the store's one serial
  // resource, and the caller's copy is the row but for what this write changes.
  std::int64_t attempt = job.attempts;  // as claimed; 0: any (the blocking forms know only the id)
  // A claimed job says whether it has a webhook; one known by its id only may have one.
  bool maybe_hooked = job.webhook.has_value() || job.model.empty();
  job = endedJob(std::move(job), std::move(outcome));
  writeAsync<Job>(
      [owner, attempt, maybe_hooked, result = std::move(result),
       job = std::move(job)](SqliteDb& db) mutable -> Result<Job> {
        // Fenced on the lease's owner and attempt: an earlier run cannot overwrite a newer one.
        auto st = db.prepare(
            "UPDATE jobs SET status = ?1, status_message = ?2, result = ?3, error = ?4, finished_at = ?5,"
            " lease_owner = '', lease_expires_at = NULL WHERE id = ?6 AND status = 'PROCESSING' AND lease_owner = ?7"
            " AND (?8 = 0 OR attempts = ?8)");
        if (!st) return statim::fail(st.error());
        auto& s = **st;
        Micros now = job.finished_at.value_or(nowMicros());  // the outcome's ended_at, if any
        std::string_view status = toString(job.status);
        s.bind(1, status).bind(2, job.status_message).bind(4, job.error).bind(5, now).bind(6, job.id).bind(7, owner);
        s.bind(8, attempt);
        if (result) s.bind(3, *result);
        if (auto r = s.run(); !r) return statim::fail(r.error());
        if (db.changes() == 0) return statim::fail(conflict(job.id, owner));
        if (auto r = insertFiles(db, job.id, "artifact", job.artifacts); !r) return statim::fail(r.error());
        if (maybe_hooked) {
          if (auto r = enqueueWebhook(db, job.id, eventName(job.status), now); !r) return statim::fail(r.error());
        }
        job.finished_at = now;
        return std::move(job);
      },
      std::move(done));
}

Result<CancelOutcome> SqliteStore::requestCancel(JobId id) {
  return write<CancelOutcome>([&](SqliteDb& db) -> Result<CancelOutcome> {
    // One transaction: read the status, then change it according to what it was.
    auto select = [&] { return selectJob(db, id); };
    auto before = select();
    if (!before) return statim::fail(before.error());
    const char* sql = nullptr;
    const JobTransition* step = nullptr;
    if (before->status == JobStatus::kQueued) {
      step = &transition(JobStep::kCancelledQueued);
      sql = "UPDATE jobs SET status = ?3, status_message = ?4, finished_at = ?2 WHERE id = ?1";
    } else if (before->status == JobStatus::kProcessing) {
      step = &transition(JobStep::kCancelling);
      sql = "UPDATE jobs SET cancel_requested = 1, status_message = ?4 WHERE id = ?1 AND ?2 > 0";
    }
    if (!sql) return CancelOutcome{*before, before->status};
    auto st = db.prepare(sql);
    if (!st) return statim::fail(st.error());
    Micros now = nowMicros();
    (*st)->bind(1, id).bind(2, now).bind(3, toString(step->status)).bind(4, step->message);
    if (auto r = (*st)->run(); !r) return statim::fail(r.error());
    if (!step->event.empty()) {
      if (auto r = enqueueWebhook(db, id, step->event, now); !r) return statim::fail(r.error());
    }
    auto after = select();
    if (!after) return statim::fail(after.error());
    return CancelOutcome{std::move(*after), before->status};
  });
}

Result<RequeueReport> SqliteStore::requeueAbandoned(Micros expired_before, int max_attempts) {
  return write<RequeueReport>([&](SqliteDb& db) -> Result<RequeueReport> {
    RequeueReport report;
    auto collect = [&](const JobTransition& step, const std::string& sql, std::vector<JobId>& out) -> Result<void> {
      auto st = db.prepare(sql);
      if (!st) return statim::fail(st.error());
      (*st)->bind(1, expired_before).bind(2, std::int64_t{max_attempts}).bind(3, nowMicros());
      (*st)->bind(4, toString(step.status)).bind(5, step.message);
      while (true) {
        auto row = (*st)->step();
        if (!row) return statim::fail(row.error());
        if (!*row) break;
        out.push_back((*st)->columnInt(0));
      }
      (*st)->reset();
      return ok();
    };
    const JobTransition& abandoned = transition(JobStep::kAbandoned);
    auto failed = collect(abandoned,
                          "UPDATE jobs SET status = ?4, status_message = ?5, finished_at = ?3,"
                          " error = 'abandoned: the worker running this job stopped ' || attempts || ' times"
                          " (jobs.max_attempts = ' || ?2 || ')', lease_owner = '', lease_expires_at = NULL"
                          " WHERE status = 'PROCESSING' AND lease_expires_at < ?1 AND attempts >= ?2 RETURNING id",
                          report.failed);
    if (!failed) return statim::fail(failed.error());
    for (JobId id : report.failed) {
      if (auto r = enqueueWebhook(db, id, abandoned.event, nowMicros()); !r) return statim::fail(r.error());
    }
    auto requeued =
        collect(transition(JobStep::kRequeued),
                "UPDATE jobs SET status = ?4, status_message = ?5 ||"
                " ' (attempt ' || attempts || ' of ' || ?2 || ' used)', lease_owner = '', lease_expires_at = NULL,"
                " earlier_attempts = json_insert(earlier_attempts, '$[#]', json_object('attempt', attempts,"
                " 'started_at', started_at, 'lease_owner', lease_owner, 'requeued_at', ?3))"
                " WHERE status = 'PROCESSING' AND lease_expires_at < ?1 AND attempts < ?2 AND ?3 > 0 RETURNING id",
                report.requeued);
    if (!requeued) return statim::fail(requeued.error());
    return report;
  });
}

Result<std::optional<std::int64_t>> SqliteStore::queuedAhead(JobId id) {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  // The same order as the claim's (jobs_queue: model, priority DESC, id), counted over that index.
  auto st = lease->db->prepare(
      "SELECT (SELECT COUNT(*) FROM jobs o WHERE o.status = 'QUEUED' AND o.model = j.model"
      "  AND (o.priority > j.priority OR (o.priority = j.priority AND o.id < j.id)))"
      " FROM jobs j WHERE j.id = ?1 AND j.status = 'QUEUED'");
  if (!st) return statim::fail(st.error());
  (*st)->bind(1, id);
  auto row = (*st)->step();
  if (!row) return statim::fail(row.error());
  std::optional<std::int64_t> ahead;
  if (*row) ahead = (*st)->columnInt(0);
  (*st)->reset();
  return ahead;
}

Result<std::map<std::string, std::int64_t>> SqliteStore::queuedByModel() {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  auto st = lease->db->prepare("SELECT model, COUNT(*) FROM jobs WHERE status = 'QUEUED' GROUP BY model");
  if (!st) return statim::fail(st.error());
  std::map<std::string, std::int64_t> out;
  while (true) {
    auto row = (*st)->step();
    if (!row) return statim::fail(row.error());
    if (!*row) break;
    out[(*st)->columnText(0)] = (*st)->columnInt(1);
  }
  (*st)->reset();
  return out;
}

Result<void> deleteJobRows(SqliteDb& db, DeletedJobs& out) {
  auto files = db.prepare("DELETE FROM job_files WHERE job_id = ?1 RETURNING sha256");
  auto still = db.prepare("SELECT 1 FROM job_files WHERE sha256 = ?1 LIMIT 1");
  if (!files) return statim::fail(files.error());
  if (!still) return statim::fail(still.error());
  std::vector<std::string> freed;
  for (JobId id : out.ids) {
    (*files)->bind(1, id);
    if (auto r = (*files)->forEachRow([&](const SqliteStatement& s) { freed.push_back(s.columnText(0)); }); !r) {
      return statim::fail(r.error());
    }
  }
  std::ranges::sort(freed);
  freed.erase(std::unique(freed.begin(), freed.end()), freed.end());
  for (auto& sha : freed) {
    bool used = false;
    (*still)->bind(1, sha);
    if (auto r = (*still)->forEachRow([&](const SqliteStatement&) { used = true; }); !r) return statim::fail(r.error());
    if (!used) out.orphaned_files.push_back(sha);
  }
  for (const char* sql : {"DELETE FROM webhook_attempts WHERE delivery_id IN"
                          " (SELECT id FROM webhook_deliveries WHERE job_id = ?1)",
                          "DELETE FROM webhook_deliveries WHERE job_id = ?1"}) {
    auto del = db.prepare(sql);
    if (!del) return statim::fail(del.error());
    for (JobId id : out.ids) {
      if (auto r = (*del)->bind(1, id).run(); !r) return statim::fail(r.error());
      (*del)->reset();
    }
  }
  return {};
}

Result<DeletedJobs> SqliteStore::deleteFinishedBefore(Micros before) {
  return write<DeletedJobs>([&](SqliteDb& db) -> Result<DeletedJobs> {
    DeletedJobs out;
    auto st = db.prepare(
        "DELETE FROM jobs WHERE finished_at < ?1 AND status IN ('COMPLETED','FAILED','CANCELLED')"
        " RETURNING id, finished_at");
    if (!st) return statim::fail(st.error());
    (*st)->bind(1, before);
    if (auto r = (*st)->forEachRow([&](const SqliteStatement& s) {
          out.ids.push_back(s.columnInt(0));
          out.released_at = std::max(out.released_at, s.columnInt(1));
        });
        !r) {
      return statim::fail(r.error());
    }
    if (auto r = deleteJobRows(db, out); !r) return statim::fail(r.error());
    return out;
  });
}

Result<DeletedJobs> SqliteStore::deleteJob(JobId id) {
  return write<DeletedJobs>([&](SqliteDb& db) -> Result<DeletedJobs> {
    DeletedJobs out;
    auto st = db.prepare(
        "DELETE FROM jobs WHERE id = ?1 AND status IN ('COMPLETED','FAILED','CANCELLED') RETURNING id, finished_at");
    if (!st) return statim::fail(st.error());
    (*st)->bind(1, id);
    if (auto r = (*st)->forEachRow([&](const SqliteStatement& s) {
          out.ids.push_back(s.columnInt(0));
          out.released_at = s.columnInt(1);
        });
        !r) {
      return statim::fail(r.error());
    }
    if (out.ids.empty()) {
      auto status = db.prepare("SELECT status FROM jobs WHERE id = ?1");
      if (!status) return statim::fail(status.error());
      (*status)->bind(1, id);
      std::string now;
      if (auto r = (*status)->forEachRow([&](const SqliteStatement& s) { now = s.columnText(0); }); !r) {
        return statim::fail(r.error());
      }
      if (now.empty()) return statim::fail(Error::notFound(std::format("job {} not found", id)));
      return statim::fail(Error{ErrorCode::kConflict,
                                std::format("job {} is {}: only an ended job can be deleted; cancel it first "
                                            "(POST /job/{}/cancel)",
                                            id, now, id),
                                {}});
    }
    if (auto r = deleteJobRows(db, out); !r) return statim::fail(r.error());
    return out;
  });
}

Result<std::vector<std::string>> SqliteStore::unreferencedFiles(const std::vector<std::string>& sha256s) {
  auto lease = reader();
  if (!lease) return statim::fail(lease.error());
  auto st = lease->db->prepare("SELECT 1 FROM job_files WHERE sha256 = ?1 LIMIT 1");
  if (!st) return statim::fail(st.error());
  std::vector<std::string> out;
  for (auto& sha : sha256s) {
    bool used = false;
    (*st)->bind(1, sha);
    if (auto r = (*st)->forEachRow([&](const SqliteStatement&) { used = true; }); !r) return statim::fail(r.error());
    if (!used) out.push_back(sha);
  }
  return out;
}

}  // namespace statim
