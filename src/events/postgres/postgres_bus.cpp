#include "events/postgres/postgres_bus.h"

#include <poll.h>

#include <algorithm>
#include <format>

#include <libpq-fe.h>

#include "core/crypto.h"
#include "core/logging.h"
#include "core/thread_name.h"

namespace statim {
namespace {

// The channel of the statim cluster whose tables are in `schema`: NOTIFY is database-wide, and
// two clusters in two schemas of one database must not hear each other.
std::string channelFor(const std::string& schema) {
  if (schema.empty() || schema == "public") return "statim_events";
  std::string name = "statim_events_" + schema;
  if (name.size() > 63) name = "statim_events_" + crypto::sha256Hex(schema).substr(0, 16);
  return name;
}

std::string quotedIdentifier(const std::string& identifier) {
  std::string out = "\"";
  for (char c : identifier) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}
// NOTIFY payloads must stay under 8000 bytes.
constexpr size_t kMaxPayload = 7800;
constexpr size_t kEndedKept = 100000;
// A node that heard from another (its hello, or any event) notifies for this long even when its
// node records do not show the other yet.
constexpr auto kPeerMemory = std::chrono::steady_clock::duration(std::chrono::seconds(30));

// The ended job, carried in its terminal event's payload so that the node following it need not
// read it back from the store. Jobs with files (their paths are a node's own) are not carried.
std::optional<nlohmann::json> jobWire(const Job& j) {
  if (!j.inputs.empty() || !j.artifacts.empty()) return std::nullopt;
  auto time = [](const std::optional<Micros>& t) { return t ? nlohmann::json(*t) : nlohmann::json(); };
  nlohmann::json w = {{"model", j.model},
                      {"type", j.type},
                      {"prompt", j.prompt},
                      {"params", j.params},
                      {"priority", j.priority},
                      {"status", toString(j.status)},
                      {"message", j.status_message},
                      {"created", j.created_at},
                      {"started", time(j.started_at)},
                      {"finished", time(j.finished_at)},
                      {"result", j.result},
                      {"error", j.error},
                      {"attempts", j.attempts},
                      {"earlier_attempts", j.earlier_attempts},
                      {"owner", j.owner_key_id ? nlohmann::json(*j.owner_key_id) : nlohmann::json()}};
  if (j.webhook) w["webhook"] = {{"url", j.webhook->url}, {"events", j.webhook->events}};
  return w;
}

std::optional<Job> jobFromWire(JobId id, const nlohmann::json& w) {
  try {
    Job j;
    j.id = id;
    j.model = w.at("model");
    j.type = w.at("type");
    j.prompt = w.at("prompt");
    j.params = w.at("params");
    j.priority = w.at("priority");
    auto status = parseJobStatus(w.at("status").get<std::string>());
    if (!status) return std::nullopt;
    j.status = *status;
    j.status_message = w.at("message");
    j.created_at = w.at("created");
    if (!w.at("started").is_null()) j.started_at = w["started"].get<Micros>();
    if (!w.at("finished").is_null()) j.finished_at = w["finished"].get<Micros>();
    j.result = w.at("result");
    j.error = w.at("error");
    j.attempts = w.at("attempts");
    j.earlier_attempts = w.at("earlier_attempts");
    if (!w.at("owner").is_null()) j.owner_key_id = w["owner"].get<std::int64_t>();
    if (auto h = w.find("webhook"); h != w.end()) {
      j.webhook = Webhook{h->at("url"), h->at("events").get<std::vector<std::string>>()};
    }
    return j;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;  // not one this node can read: the store has it
  }
}

bool isTerminalName(const std::string& type) {
  return type == eventName(JobStatus::kCompleted) || type == eventName(JobStatus::kFailed) ||
         type == eventName(JobStatus::kCancelled);
}

}  // namespace

Result<std::unique_ptr<PostgresEventBus>> PostgresEventBus::open(PostgresEventBusOptions options, JobStore& store) {
  // A NOTIFY's transaction need not wait for the WAL flush: notifications are not kept through a
  // crash of the server anyway (the polling fallback covers a lost one), and each flush cost
  // an fsync per NOTIFY.
  auto send = PgConn::connect(options.url, std::string(kPgNoFlushWait));
  if (!send) return fail(send.error());
  auto listen = PgConn::connect(options.url);
  if (!listen) return fail(listen.error());
  auto schema = (*listen)->exec("SELECT current_schema()");
  if (!schema) return fail(schema.error());
  std::string channel = channelFor(schema->isNull(0, 0) ? "" : schema->text(0, 0));
  if (auto r = (*listen)->run("LISTEN " + quotedIdentifier(channel)); !r) return fail(r.error());
  auto bus = std::unique_ptr<PostgresEventBus>(new PostgresEventBus(std::move(options), store));
  bus->channel_ = std::move(channel);
  bus->send_conn_ = std::move(*send);
  bus->listen_conn_ = std::move(*listen);
  // Say hello: nodes alone (sending nothing) start sending now that this one listens.
  bus->outbox_.push_back(nlohmann::json::array({bus->options_.node_id, 0, "hello", nlohmann::json::object()}).dump());
  bus->sender_ = std::thread([b = bus.get()] { b->senderLoop(); });
  bus->listener_ = std::thread([b = bus.get()] { b->listenerLoop(); });
  return bus;
}

PostgresEventBus::PostgresEventBus(PostgresEventBusOptions options, JobStore& store)
    : options_(std::move(options)),
      // A notification is the events of one node: [[node_id, job_id, type, data], ...].
      own_prefix_(
          "[[" + nlohmann::json(options_.node_id).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + ","),
      store_(store) {}

PostgresEventBus::~PostgresEventBus() {
  {
    std::lock_guard lock(out_mu_);
    stopping_ = true;
  }
  out_cv_.notify_all();
  stop_listening_ = true;
  if (sender_.joinable()) sender_.join();
  if (listener_.joinable()) listener_.join();
}

EventBus::Subscription PostgresEventBus::subscribe(JobId job, Listener listener, Executor on, Filter wants) {
  // Under follow_mu_, as receive() decides that nobody follows an ended job and publishes its
  // id-and-status end: a subscription comes before that (and gets the stored job) or after it
  // (and is told `ended` by the local bus). Lock order: follow_mu_, then the local bus's.
  std::lock_guard lock(follow_mu_);
  auto sub = local_.subscribe(job, std::move(listener), std::move(on), std::move(wants));
  followed_tokens_[sub.token] = job;
  ++followed_[job];
  return sub;
}

EventBus::Token PostgresEventBus::subscribeAll(Listener listener, Executor on, Filter wants) {
  return local_.subscribeAll(std::move(listener), std::move(on), std::move(wants));
}

void PostgresEventBus::unsubscribe(Token token) {
  local_.unsubscribe(token);
  std::lock_guard lock(follow_mu_);
  auto it = followed_tokens_.find(token);
  if (it == followed_tokens_.end()) return;
  if (auto f = followed_.find(it->second); f != followed_.end() && --f->second <= 0) followed_.erase(f);
  followed_tokens_.erase(it);
}

bool PostgresEventBus::markEnded(JobId job) {
  std::lock_guard lock(follow_mu_);
  return markEndedLocked(job);
}

bool PostgresEventBus::markEndedLocked(JobId job) {
  if (!ended_.insert(job).second) return false;
  ended_order_.push_back(job);
  if (ended_order_.size() > kEndedKept) {
    ended_.erase(ended_order_.front());
    ended_order_.pop_front();
  }
  // The local bus drops a job's listeners at its terminal event.
  followed_.erase(job);
  std::erase_if(followed_tokens_, [&](const auto& t) { return t.second == job; });
  return true;
}

void PostgresEventBus::publish(const JobEvent& event) {
  // A job found ended in the store (pollFollowed) may have had its terminal event delivered
  // already: the scheduler's own comes after its commit.
  if (!event.terminal() || markEnded(event.job_id)) local_.publish(event);
  if (event.remote || event.type == "result") return;
  if (options_.peers && !options_.peers() &&
      std::chrono::steady_clock::now().time_since_epoch().count() - heard_from_peer_.load() > kPeerMemory.count()) {
    return;  // alone: nobody to tell
  }
  auto dump = [&](const nlohmann::json& data) {
    return nlohmann::json::array({options_.node_id, event.job_id, event.type, data})
        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  std::string line;
  if (event.terminal()) {
    // The ended job goes with its end when it fits: the follower on another node (the API node
    // answering a client) then has it without reading it back from the store.
    if (auto wire = jobWire(*event.job)) {
      nlohmann::json data = event.data;
      data["job"] = std::move(*wire);
      line = dump(data);
      if (line.size() + 2 > kMaxPayload) line.clear();
    }
  }
  if (line.empty()) line = dump(event.data);
  if (line.size() + 2 > kMaxPayload) {
    // Too large for a notification: other nodes' followers miss it (a terminal event they get
    // from the store; what a "token" carries, from the job's result).
    log::warn("events: an event too large for NOTIFY is not sent to other nodes",
              {{"job_id", event.job_id}, {"event", event.type}, {"bytes", line.size()}});
    return;
  }
  bool wake = false;
  {
    std::lock_guard lock(out_mu_);
    wake = outbox_.empty();
    // A job's end, in a short pause (the last NOTIFY carried a few events: low load), goes at
    // once: a client waits for it on another node, and at one client the pause after the job's
    // "started" was a fifth of the job's time there.
    if (event.terminal() && ++ends_queued_ == 1 && short_pause_) wake = true;
    outbox_.push_back(std::move(line));
  }
  // Otherwise only the first event wakes the sender: while it pauses, the others only join the
  // batch (a wake-up per event cost the API node two context switches per job under load).
  if (wake) out_cv_.notify_one();
}

void PostgresEventBus::senderLoop() {
  nameThisThread("events-send");
  // A NOTIFY of this many events or more holds the next one back for all of batch_delay.
  constexpr std::int64_t kFullBatch = 4;
  auto last_send = std::chrono::steady_clock::time_point{};
  std::int64_t last_events = 0;
  while (true) {
    std::deque<std::string> batch;
    {
      std::unique_lock lock(out_mu_);
      out_cv_.wait(lock, [&] { return stopping_ || !outbox_.empty(); });
      if (outbox_.empty()) return;
      // An event after a quiet spell goes at once. After a send, the next waits for a part of
      // batch_delay that grows with the last send's events: under load, the events of a burst
      // gather into one NOTIFY per batch_delay (each notification wakes every listening node and
      // costs the server more than its size); at low load, the few events of one job (started,
      // result, completed: within a millisecond) each wait a quarter of it, not all of it.
      // A job's end cuts a short pause (see publish), never the full one of a busy node.
      auto pause = options_.batch_delay * std::min(last_events, kFullBatch) / kFullBatch;
      short_pause_ = last_events < kFullBatch;
      if (!stopping_) {
        out_cv_.wait_until(lock, last_send + pause, [&] { return stopping_ || (short_pause_ && ends_queued_ > 0); });
      }
      short_pause_ = false;
      ends_queued_ = 0;
      batch.swap(outbox_);
    }
    last_send = std::chrono::steady_clock::now();
    last_events = static_cast<std::int64_t>(batch.size());
    std::vector<std::string> payloads;
    std::string payload;
    for (auto& line : batch) {
      if (!payload.empty() && payload.size() + line.size() + 2 > kMaxPayload) {
        payloads.push_back(payload + "]");
        payload.clear();
      }
      payload += payload.empty() ? "[" : ",";
      payload += line;
    }
    if (!payload.empty()) payloads.push_back(payload + "]");
    for (int round = 0; round < 2; ++round) {
      if (!send_conn_->healthy() && !send_conn_->reset()) continue;
      auto r = send_conn_->exec("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                                PgParams().add(channel_).addArray(payloads));
      if (r) {
        sent_ += static_cast<std::int64_t>(payloads.size());
        break;
      }
      if (round == 1 || send_conn_->healthy()) {
        log::warn("events: notifications not sent (other nodes' followers fall back to polling)",
                  {{"events", batch.size()}, {"error", r.error().message}});
        break;
      }
    }
  }
}

void PostgresEventBus::listenerLoop() {
  nameThisThread("events-listen");
  auto next_poll = std::chrono::steady_clock::now() + options_.poll_interval;
  bool lost = false;
  while (!stop_listening_) {
    if (lost || !listen_conn_->healthy()) {
      // Reconnect, listen again, and read the followed jobs: notifications sent meanwhile are lost.
      if (!listen_conn_->reset() || !listen_conn_->run("LISTEN " + quotedIdentifier(channel_))) {
        for (int i = 0; i < 10 && !stop_listening_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      if (lost) log::info("events: listening again after a lost connection");
      lost = false;
      pollFollowed();
    }
    pollfd fd{PQsocket(listen_conn_->raw()), POLLIN, 0};
    int ready = ::poll(&fd, 1, 100);
    if (ready > 0) {
      if (!PQconsumeInput(listen_conn_->raw())) {
        log::warn("events: the listening connection was lost; reconnecting",
                  {{"error", std::string(PQerrorMessage(listen_conn_->raw()))}});
        lost = true;
        continue;
      }
      while (PGnotify* n = PQnotifies(listen_conn_->raw())) {
        std::string payload = n->extra ? n->extra : "";
        PQfreemem(n);
        receive(payload);
      }
    }
    if (std::chrono::steady_clock::now() >= next_poll) {
      next_poll = std::chrono::steady_clock::now() + options_.poll_interval;
      pollFollowed();
    }
  }
}

void PostgresEventBus::receive(const std::string& payload) {
  // Every node hears every notification on the channel, its own included. Those it has no use
  // for are dropped before parsing: under load, parsing them was most of a node's listening.
  if (payload.starts_with(own_prefix_)) return;
  heard_from_peer_ = std::chrono::steady_clock::now().time_since_epoch().count();
  if (!options_.only_types.empty()) {
    auto names = [&](std::string_view type) { return payload.find(std::format("\"{}\"", type)) != std::string::npos; };
    if (std::ranges::none_of(options_.only_types, names)) return;
  }
  auto events = nlohmann::json::parse(payload, nullptr, false);
  if (!events.is_array()) return;
  for (auto& e : events) {
    if (!e.is_array() || e.size() != 4 || !e[0].is_string() || !e[1].is_number_integer() || !e[2].is_string()) continue;
    if (e[0].get<std::string>() == options_.node_id) continue;  // our own, delivered at publish
    if (e[2] == "hello") continue;
    if (!options_.only_types.empty() &&
        std::ranges::find(options_.only_types, e[2].get_ref<const std::string&>()) == options_.only_types.end()) {
      continue;  // it came in one notification with an event this node reads
    }
    ++received_;
    JobEvent event{e[1].get<JobId>(), e[2].get<std::string>(), e[3].is_object() ? e[3] : nlohmann::json::object()};
    event.remote = true;
    if (isTerminalName(event.type)) {
      // Its id and status only: what closes a job nobody here follows (or one gone from the store).
      auto idAndStatus = [&]() -> std::optional<Job> {
        Job j;
        j.id = event.job_id;
        j.status = parseJobStatus(event.data.value("status", "")).value_or(JobStatus::kFailed);
        if (eventName(j.status) != event.type) return std::nullopt;
        return j;
      };
      {
        // Checked and published under follow_mu_, which subscribe() holds too (see there).
        std::lock_guard lock(follow_mu_);
        if (!followed_.contains(event.job_id)) {
          event.data.erase("job");
          if (!markEndedLocked(event.job_id)) continue;  // delivered already
          event.job = idAndStatus();
          if (event.job) local_.publish(event);
          continue;
        }
      }
      if (!markEnded(event.job_id)) continue;  // read from the store already
      std::optional<Job> carried;
      if (auto w = event.data.find("job"); w != event.data.end()) carried = jobFromWire(event.job_id, *w);
      event.data.erase("job");
      if (carried && isTerminal(carried->status) && eventName(carried->status) == event.type) {
        event.job = std::move(carried);
      } else if (auto j = store_.get(event.job_id); j && isTerminal(j->status)) {
        event.job = std::move(*j);
      } else {
        event.job = idAndStatus();
        if (!event.job) continue;
      }
    }
    local_.publish(event);
  }
}

void PostgresEventBus::deliverEnded(Job job) {
  if (!markEnded(job.id)) return;
  JobId id = job.id;
  std::string status(toString(job.status));
  JobEvent event{id, std::string(eventName(job.status)), {{"status", status}}, std::move(job)};
  event.remote = true;
  local_.publish(event);
}

void PostgresEventBus::pollFollowed() {
  std::vector<JobId> ids;
  {
    std::lock_guard lock(follow_mu_);
    for (auto& [id, n] : followed_) ids.push_back(id);
  }
  for (JobId id : ids) {
    auto job = store_.get(id);
    if (job && isTerminal(job->status)) deliverEnded(std::move(*job));
  }
}

}  // namespace statim
