// This node's record in the store (NodeStore) and what it knows of the others: every interval
// it records its role and each model it serves (state, running, capacity), then reads every
// node's record. GET /nodes and GET /models read from here; with jobs.reject_unserved, the
// scheduler asks it whether any live node serves a model. A clean stop removes the record; a
// node that died is shown not alive once silent for 3 intervals and forgotten after
// `forget_after`.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "models/model_registry.h"
#include "scheduler/scheduler.h"
#include "store/node_store.h"

namespace statim {

struct NodePresenceOptions {
  std::string node_id;
  std::string role = "all";
  std::chrono::milliseconds interval{2000};
  Micros forget_after = Micros{600} * 1000000;  // 10 minutes
};

struct NodeView {
  NodeRecord record;
  bool alive = false;  // heard from within 3 intervals
  bool this_node = false;
};

class NodePresence {
 public:
  // Records this node at once, then every interval on its own thread.
  NodePresence(NodeStore& store, ModelRegistry& models, Scheduler& scheduler, NodePresenceOptions options);
  ~NodePresence();  // stop()
  // Stops the thread and removes this node's record. Idempotent.
  void stop();

  // Every node as read now from the store (GET /nodes).
  Result<std::vector<NodeView>> read();
  // The nodes as last read (every interval): cheap, for GET /models.
  std::vector<NodeView> cached() const;
  // Whether a live node that runs models lists `model` (in any state but failed). True until the
  // first read, so that nothing is refused for want of knowing.
  bool served(const std::string& model) const;
  // Whether another node is alive (true until the first read).
  bool hasPeers() const;
  const std::string& nodeId() const { return options_.node_id; }

 private:
  NodeRecord self() const;
  void beat();
  std::vector<NodeView> views(std::vector<NodeRecord> records) const;

  NodeStore& store_;
  ModelRegistry& models_;
  Scheduler& scheduler_;
  NodePresenceOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                       // guarded by mu_
  std::optional<std::vector<NodeView>> nodes_;  // guarded by mu_: as last read
  std::string last_error_;                      // beat() only (the constructor, then the thread)
  std::thread thread_;
};

}  // namespace statim
