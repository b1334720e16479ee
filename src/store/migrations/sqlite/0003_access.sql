-- API keys: only the SHA-256 of each key is kept. `prefix` (the key's first characters, not
-- secret) finds the row; the hash is then compared in constant time.
CREATE TABLE api_keys (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  name        TEXT    NOT NULL,
  prefix      TEXT    NOT NULL,
  hash        TEXT    NOT NULL,
  scope       TEXT    NOT NULL CHECK (scope IN ('user','admin')),
  models      TEXT,             -- JSON list of model ids, NULL = every model
  rate        TEXT,             -- "10/s", NULL = unlimited
  max_queued  INTEGER,          -- NULL = unlimited
  created_at  INTEGER NOT NULL,
  revoked_at  INTEGER
);
CREATE UNIQUE INDEX api_keys_prefix ON api_keys (prefix);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

-- Who owns a job, the client's idempotency key for it, and where to report its life.
ALTER TABLE jobs ADD COLUMN owner_key_id INTEGER;
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
ALTER TABLE jobs ADD COLUMN request_hash TEXT;
ALTER TABLE jobs ADD COLUMN webhook_url TEXT;
ALTER TABLE jobs ADD COLUMN webhook_events TEXT;  -- ",completed,failed," (commas around each)
CREATE INDEX jobs_by_owner ON jobs (owner_key_id, status, id);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (COALESCE(owner_key_id, 0), idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- The audit trail: every mutating request and every refused credential.
CREATE TABLE audit_log (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  time        INTEGER NOT NULL,
  key_id      INTEGER,
  key_name    TEXT    NOT NULL DEFAULT '',
  remote      TEXT    NOT NULL DEFAULT '',
  method      TEXT    NOT NULL,
  route       TEXT    NOT NULL,
  path        TEXT    NOT NULL,
  job_id      INTEGER,
  status      INTEGER NOT NULL,
  request_id  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_time ON audit_log (time);
CREATE INDEX audit_by_key ON audit_log (key_name, id);

-- Webhook outbox: a row per (job, event) to deliver, written in the same transaction as the
-- job's transition, so no event is lost to a crash. Workers claim due rows by pushing
-- next_attempt_at forward (a lease), which also keeps two nodes from sending the same row.
CREATE TABLE webhook_deliveries (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id           INTEGER NOT NULL,
  event            TEXT    NOT NULL,
  url              TEXT    NOT NULL,
  status           TEXT    NOT NULL CHECK (status IN ('pending','delivered','failed')),
  attempts         INTEGER NOT NULL DEFAULT 0,
  next_attempt_at  INTEGER,
  last_status_code INTEGER,
  last_error       TEXT    NOT NULL DEFAULT '',
  created_at       INTEGER NOT NULL,
  delivered_at     INTEGER
);
CREATE INDEX webhook_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_by_job ON webhook_deliveries (job_id);
CREATE TABLE webhook_attempts (
  delivery_id  INTEGER NOT NULL,
  at           INTEGER NOT NULL,
  status_code  INTEGER,
  error        TEXT    NOT NULL DEFAULT '',
  duration_ms  REAL    NOT NULL
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id);
