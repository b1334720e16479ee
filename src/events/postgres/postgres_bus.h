// Job events between the nodes sharing a PostgreSQL store: LISTEN/NOTIFY on one channel
// (statim_events; statim_events_<schema> for a store in another schema than public).
// Events published here reach this process's listeners at once (an InProcessEventBus inside)
// and go out as NOTIFY payloads on a connection of their own, at most one NOTIFY every 2 ms (the
// events of a burst share it; one after a quiet spell goes at once, and so does a job's end at
// low load);
// one listening connection per node receives the other nodes' events and publishes them here
// (remote = true). A terminal event from another node carries the ended job when someone here
// follows that job: the job its NOTIFY carried (when it fit, and has no files), else the job read
// from the store; a job nobody here follows ends with its id and status only.
//
// Notifications can be lost (a dropped listening connection, a payload too large): followers
// never wait for ever on one, because the jobs followed here are re-read from the store every
// poll interval and a job found ended gets its terminal event from that read.
//
// See events/event_bus.h for the contract.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "events/in_process/in_process_bus.h"
#include "store/job_store.h"
#include "store/postgres/pg_conn.h"

namespace statim {

struct PostgresEventBusOptions {
  std::string url;
  std::string node_id;                            // this node's events are not delivered back to it
  std::chrono::milliseconds poll_interval{1000};  // followed jobs are re-read this often
  // Under load, at most one NOTIFY this often (events share it); after a NOTIFY of a few events,
  // a part of it (see senderLoop).
  std::chrono::microseconds batch_delay{2000};
  // Whether another node may be listening (NodePresence::hasPeers); unset: always. A node alone
  // sends no notification; a node that starts says hello on the channel, so that the others
  // notify at once, before they read its record.
  std::function<bool()> peers;
  // The other nodes' events this node reads; empty: all of them. A worker node serves no client
  // that follows a job, so it reads only what its scheduler acts on ("queued", "cancelling"): a
  // notification that names none of these is dropped unparsed.
  std::vector<std::string> only_types;
};

class PostgresEventBus final : public EventBus {
 public:
  // Connects its two connections (kStorageUnavailable when the server cannot be reached).
  static Result<std::unique_ptr<PostgresEventBus>> open(PostgresEventBusOptions options, JobStore& store);
  ~PostgresEventBus() override;

  Subscription subscribe(JobId job, Listener listener, Executor on = {}, Filter wants = {}) override;
  Token subscribeAll(Listener listener, Executor on = {}, Filter wants = {}) override;
  void unsubscribe(Token token) override;
  void publish(const JobEvent& event) override;
  std::size_t listeners() const override { return local_.listeners(); }

  // Notifications sent and received, for tests and metrics.
  std::int64_t notificationsSent() const { return sent_.load(); }
  std::int64_t eventsReceived() const { return received_.load(); }

 private:
  PostgresEventBus(PostgresEventBusOptions options, JobStore& store);
  void senderLoop();
  void listenerLoop();
  // Handles one NOTIFY payload from another node.
  void receive(const std::string& payload);
  // Publishes locally, once, the terminal event of a job found ended in the store.
  void deliverEnded(Job job);
  // Re-reads the followed jobs; those that ended get their terminal event.
  void pollFollowed();
  // Remembers that `job`'s terminal event was delivered here; false if it already was.
  bool markEnded(JobId job);
  bool markEndedLocked(JobId job);  // follow_mu_ held

  PostgresEventBusOptions options_;
  std::string own_prefix_;  // how a notification this node sent begins: dropped unparsed
  JobStore& store_;
  InProcessEventBus local_;

  std::mutex out_mu_;
  std::condition_variable out_cv_;
  std::deque<std::string> outbox_;  // guarded by out_mu_: serialised events to send
  bool stopping_ = false;           // guarded by out_mu_
  bool short_pause_ = false;        // guarded by out_mu_: the sender pauses after a small NOTIFY
  int ends_queued_ = 0;             // guarded by out_mu_: terminal events in outbox_

  std::mutex follow_mu_;
  std::map<Token, JobId> followed_tokens_;  // guarded by follow_mu_
  std::map<JobId, int> followed_;           // guarded by follow_mu_: subscribers per job
  std::set<JobId> ended_;                   // guarded by follow_mu_: terminal event delivered
  std::deque<JobId> ended_order_;           // guarded by follow_mu_: oldest first, to bound ended_

  std::string channel_;                  // set by open(): statim_events, or per schema
  std::unique_ptr<PgConn> send_conn_;    // sender thread only (after open)
  std::unique_ptr<PgConn> listen_conn_;  // listener thread only (after open)
  std::atomic<std::int64_t> sent_{0}, received_{0};
  // steady_clock ticks of the last notification from another node (its hello at start, or any).
  std::atomic<std::int64_t> heard_from_peer_{std::numeric_limits<std::int64_t>::min() / 2};
  std::atomic<bool> stop_listening_{false};
  std::thread sender_, listener_;
};

}  // namespace statim
