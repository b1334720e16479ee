// The audit trail: one row per mutating request and per refused credential.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "statim/error.h"
#include "statim/job.h"

namespace statim {

struct AuditEntry {
  std::int64_t id = 0;
  Micros time = 0;
  std::optional<std::int64_t> key_id;
  std::string key_name;  // empty: no valid key
  std::string remote;    // client address
  std::string method;
  std::string route;  // the route's pattern ("/job/{id}"), or the path when none matched
  std::string path;
  std::optional<JobId> job_id;
  int status = 0;  // HTTP status answered
  std::string request_id;
};

struct AuditFilter {
  int limit = 50;
  int offset = 0;
  std::optional<std::string> key_name;
  std::optional<Micros> since;
};

struct AuditPage {
  std::vector<AuditEntry> entries;  // newest first
  std::int64_t total = 0;
};

class AuditStore {
 public:
  virtual ~AuditStore() = default;
  // Queues the row for the next commit and returns at once: auditing never delays a response.
  // A failed write is logged (the request it records has already been answered).
  virtual void appendAudit(AuditEntry entry) = 0;
  virtual Result<AuditPage> listAudit(const AuditFilter& filter) = 0;
  // Deletes rows older than `before`; returns how many.
  virtual Result<std::int64_t> deleteAuditBefore(Micros before) = 0;
};

}  // namespace statim
