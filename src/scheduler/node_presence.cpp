#include "scheduler/node_presence.h"

#include <algorithm>

#include "core/logging.h"
#include "core/thread_name.h"

namespace statim {

NodePresence::NodePresence(NodeStore& store, ModelRegistry& models, Scheduler& scheduler, NodePresenceOptions options)
    : store_(store), models_(models), scheduler_(scheduler), options_(std::move(options)) {
  beat();
  thread_ = std::thread([this] {
    nameThisThread("node-heartbeat");
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, options_.interval, [&] { return stopping_; })) {
      lock.unlock();
      beat();
      lock.lock();
    }
  });
}

NodePresence::~NodePresence() { stop(); }

void NodePresence::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (auto r = store_.removeNode(options_.node_id); !r) {
    log::warn("node: could not remove this node's record", {{"error", r.error().message}});
  }
}

NodeRecord NodePresence::self() const {
  NodeRecord n{.id = options_.node_id, .role = options_.role, .version = STATIM_VERSION};
  if (options_.role == "api") return n;  // it serves no model
  for (auto& e : models_.list()) {
    if (e.removed) continue;
    auto stats = scheduler_.stats(e.manifest.id);
    n.models[e.manifest.id] = {{"state", toString(e.state)}, {"running", stats.running}, {"capacity", stats.capacity}};
  }
  return n;
}

void NodePresence::beat() {
  if (auto r = store_.heartbeatNode(self()); !r) {
    // Once per outage, not every interval (a read-only store says so in /readyz meanwhile).
    if (r.error().message != last_error_) log::warn("node: heartbeat not recorded", {{"error", r.error().message}});
    last_error_ = r.error().message;
    return;
  }
  last_error_.clear();
  auto nodes = read();
  if (!nodes) return;
  std::lock_guard lock(mu_);
  nodes_ = std::move(*nodes);
}

std::vector<NodeView> NodePresence::views(std::vector<NodeRecord> records) const {
  const Micros alive_within = std::chrono::duration_cast<std::chrono::microseconds>(options_.interval).count() * 3;
  std::vector<NodeView> out;
  for (auto& r : records) {
    bool alive = r.silent_for <= alive_within;
    bool me = r.id == options_.node_id;
    out.push_back({std::move(r), alive, me});
  }
  return out;
}

Result<std::vector<NodeView>> NodePresence::read() {
  auto records = store_.listNodes(options_.forget_after);
  if (!records) return fail(records.error());
  return views(std::move(*records));
}

std::vector<NodeView> NodePresence::cached() const {
  std::lock_guard lock(mu_);
  return nodes_.value_or(std::vector<NodeView>{});
}

bool NodePresence::hasPeers() const {
  std::lock_guard lock(mu_);
  if (!nodes_) return true;
  return std::ranges::any_of(*nodes_, [](const NodeView& n) { return n.alive && !n.this_node; });
}

bool NodePresence::served(const std::string& model) const {
  std::lock_guard lock(mu_);
  if (!nodes_) return true;
  for (auto& n : *nodes_) {
    if (!n.alive || n.record.role == "api" || !n.record.models.contains(model)) continue;
    if (n.record.models[model].value("state", "") != toString(ModelState::kFailed)) return true;
  }
  return false;
}

}  // namespace statim
