-- Jobs: the durable record and the queue. Times are microseconds since the epoch (UTC).
CREATE TABLE jobs (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after deletes
  model            TEXT    NOT NULL,
  type             TEXT    NOT NULL,
  prompt           TEXT    NOT NULL,
  params           TEXT    NOT NULL DEFAULT '{}',
  priority         INTEGER NOT NULL DEFAULT 0,
  status           TEXT    NOT NULL CHECK (status IN ('QUEUED','PROCESSING','COMPLETED','FAILED','CANCELLED')),
  status_message   TEXT    NOT NULL DEFAULT '',
  created_at       INTEGER NOT NULL,
  started_at       INTEGER,
  finished_at      INTEGER,
  result           TEXT,
  error            TEXT    NOT NULL DEFAULT '',
  attempts         INTEGER NOT NULL DEFAULT 0,
  lease_owner      TEXT    NOT NULL DEFAULT '',
  lease_expires_at INTEGER
);
-- The queue: best QUEUED job of a model is the first row of this index.
CREATE INDEX jobs_queue ON jobs (model, priority DESC, id) WHERE status = 'QUEUED';
CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE status = 'PROCESSING';
CREATE INDEX jobs_by_status ON jobs (status, id);
CREATE INDEX jobs_by_model ON jobs (model, id);
