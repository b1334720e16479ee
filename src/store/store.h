// Everything a statim node keeps durably, behind one interface: jobs (the queue and their
// history), API keys, the audit trail, the webhook outbox, the nodes and the jobs' files. One
// folder per implementation (sqlite/: one node; postgres/: several nodes share it); each passes
// the conformance tests in tests/unit/store/ (store_test.h lists the kinds they run on).
#pragma once

#include "store/audit_store.h"
#include "store/blob_store.h"
#include "store/job_store.h"
#include "store/key_store.h"
#include "store/node_store.h"
#include "store/webhook_store.h"

namespace statim {

class Store : public JobStore, public KeyStore, public AuditStore, public WebhookStore, public NodeStore {
 public:
  // The jobs' files (inputs and artifacts), content-addressed.
  virtual BlobStore& blobs() = 0;
  // The schema version after migrations (/healthz, logs).
  virtual int schemaVersion() const = 0;
};

}  // namespace statim
