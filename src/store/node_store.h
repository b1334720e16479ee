// The nodes that share a store: each statim process records itself (its role and the models it
// serves with their states) and renews that record every few seconds; GET /nodes lists them and
// GET /models tells which nodes serve each model. Times are the database's.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "statim/error.h"
#include "statim/job.h"

namespace statim {

struct NodeRecord {
  std::string id;
  std::string role;                                  // all | api | worker
  std::string version;                               // statim's
  nlohmann::json models = nlohmann::json::object();  // model id -> {"state": ..., "running": n, "capacity": n}
  Micros started_at = 0;
  Micros heartbeat_at = 0;  // set by the store (the database's clock)
  Micros silent_for = 0;    // listNodes: time since the last heartbeat, by the database's clock
};

class NodeStore {
 public:
  virtual ~NodeStore() = default;
  // Records this node (started_at is kept from the first record).
  virtual Result<void> heartbeatNode(const NodeRecord& node) = 0;
  // A node that stops cleanly removes its record.
  virtual Result<void> removeNode(const std::string& id) = 0;
  // Every recorded node, oldest first; those silent longer than `forget_after` are deleted first.
  virtual Result<std::vector<NodeRecord>> listNodes(Micros forget_after) = 0;
};

}  // namespace statim
