#include "store/job_store.h"

#include <format>
#include <future>

namespace statim {
namespace {

// Runs an asynchronous store call and waits for its callback.
template <typename T, typename Start>
Result<T> await(Start start) {
  std::promise<Result<T>> p;
  auto f = p.get_future();
  start([&p](Result<T> r) { p.set_value(std::move(r)); });
  return f.get();
}

}  // namespace

Result<Job> JobStore::create(NewJob job) {
  return await<Job>([&](CreateCallback done) { createAsync(std::move(job), std::move(done)); });
}

Result<std::optional<Job>> JobStore::claimNext(const std::string& model, const std::string& owner, Micros lease) {
  auto jobs = claim(model, {owner, lease}, 1);
  if (!jobs) return std::unexpected(jobs.error());
  if (jobs->empty()) return std::optional<Job>();
  return std::optional<Job>(std::move(jobs->front()));
}

Result<JobStore::Renewal> JobStore::renewLeases(const std::vector<std::pair<JobId, std::string>>& held, Micros lease) {
  Renewal out;
  for (auto& [id, owner] : held) {
    auto r = heartbeat(id, owner, lease);
    if (!r && r.error().code != ErrorCode::kConflict) return std::unexpected(r.error());
    if (!r) continue;
    out.renewed.push_back(id);
    if (*r) out.cancel_requested.push_back(id);
  }
  return out;
}

std::string eventList(const std::vector<std::string>& events) {
  std::string out = ",";
  for (auto& e : events) out += e + ",";
  return out;
}

std::vector<std::string> parseEventList(std::string_view text) {
  std::vector<std::string> out;
  for (size_t i = 1; i < text.size();) {
    size_t comma = text.find(',', i);
    if (comma == std::string_view::npos) break;
    if (comma > i) out.emplace_back(text.substr(i, comma - i));
    i = comma + 1;
  }
  return out;
}

std::string dumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Job queuedJob(NewJob& nj) {
  Job job;
  job.model = std::move(nj.model);
  job.type = std::move(nj.type);
  job.prompt = std::move(nj.prompt);
  job.params = std::move(nj.params);
  job.priority = nj.priority;
  job.status = transition(JobStep::kQueued).status;
  job.status_message =
      nj.status_message.empty() ? std::string(transition(JobStep::kQueued).message) : std::move(nj.status_message);
  job.webhook = std::move(nj.webhook);
  if (nj.owner) job.owner_key_id = nj.owner->key_id;
  return job;
}

std::string likeContaining(const std::string& text) {
  std::string out = "%";
  for (char c : text) {
    if (c == '%' || c == '_' || c == '\\') out += '\\';
    out += c;
  }
  return out + "%";
}

Result<std::optional<Job>> replayOf(std::optional<std::pair<Job, std::string>> earlier, const NewJob& request) {
  if (!earlier) return std::optional<Job>();
  auto& [found, hash] = *earlier;
  if (hash != request.request_hash) {
    return fail(Error{ErrorCode::kConflict,
                      std::format("Idempotency-Key '{}' was already used with a different request (job {})",
                                  request.idempotency_key, found.id),
                      "Idempotency-Key"});
  }
  found.replayed = true;
  return std::optional<Job>(std::move(found));
}

Job endedJob(Job job, JobOutcome outcome) {
  const JobTransition& step = transition(outcome.status == JobStatus::kFailed      ? JobStep::kFailed
                                         : outcome.status == JobStatus::kCancelled ? JobStep::kCancelledRunning
                                                                                   : JobStep::kCompleted);
  job.status = step.status;
  job.status_message = step.message;
  job.result = std::move(outcome.result);
  job.error = std::move(outcome.error);
  job.artifacts = std::move(outcome.artifacts);
  job.lease_owner.clear();
  job.lease_expires_at.reset();
  if (outcome.ended_at) job.finished_at = outcome.ended_at;
  if (outcome.status == JobStatus::kCancelled) job.cancel_requested = true;
  return job;
}

// The blocking forms of finishAsync: the job is known by its id only.
Result<void> JobStore::finish(JobId id, const std::string& owner, JobOutcome outcome) {
  Job job;
  job.id = id;
  auto r = await<Job>([&](FinishCallback done) { finishAsync(std::move(job), owner, std::move(outcome), std::move(done)); });
  if (!r) return std::unexpected(r.error());
  return ok();
}

Result<void> JobStore::complete(JobId id, const std::string& owner, const nlohmann::json& result,
                                const std::vector<JobFile>& artifacts) {
  return finish(id, owner, {JobStatus::kCompleted, result, {}, artifacts});
}

Result<void> JobStore::fail(JobId id, const std::string& owner, const std::string& error) {
  return finish(id, owner, {JobStatus::kFailed, nullptr, error, {}});
}

Result<void> JobStore::finishCancelled(JobId id, const std::string& owner, const nlohmann::json& partial) {
  return finish(id, owner, {JobStatus::kCancelled, partial, {}, {}});
}

}  // namespace statim
