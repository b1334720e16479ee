-- statim's schema on PostgreSQL: the same tables as on SQLite (src/store/migrations/sqlite/),
-- with times in microseconds since the epoch (UTC) as bigint. Every time a node needs to agree
-- on with other nodes (leases, created/started/finished) is the database's: statim_now_us(), the
-- transaction's time (now()), one value for every row a transaction writes.
CREATE FUNCTION statim_now_us() RETURNS bigint LANGUAGE sql STABLE
  AS $$ SELECT (extract(epoch FROM now()) * 1000000)::bigint $$;

-- Jobs: the durable record and the queue.
CREATE TABLE jobs (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never reused
  model            text    NOT NULL,
  type             text    NOT NULL,
  prompt           text    NOT NULL,
  params           text    NOT NULL DEFAULT '{}',  -- JSON as the client sent it (key order kept)
  priority         integer NOT NULL DEFAULT 0,
  status           text    NOT NULL CHECK (status IN ('QUEUED','PROCESSING','COMPLETED','FAILED','CANCELLED')),
  status_message   text    NOT NULL DEFAULT '',
  created_at       bigint  NOT NULL,
  started_at       bigint,
  finished_at      bigint,
  result           text,
  error            text    NOT NULL DEFAULT '',
  attempts         integer NOT NULL DEFAULT 0,
  lease_owner      text    NOT NULL DEFAULT '',
  lease_expires_at bigint,
  cancel_requested boolean NOT NULL DEFAULT false,
  owner_key_id     bigint,
  idempotency_key  text,
  request_hash     text,
  webhook_url      text,
  webhook_events   text   -- ",completed,failed," (commas around each)
);
-- The queue: a model's best QUEUED job is the first row of this partial index, so a claim reads
-- a few index entries and never sorts the backlog.
CREATE INDEX jobs_queue ON jobs (model, priority DESC, id) WHERE status = 'QUEUED';
CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE status = 'PROCESSING';
CREATE INDEX jobs_by_status ON jobs (status, id);
CREATE INDEX jobs_by_model ON jobs (model, id);
CREATE INDEX jobs_by_owner ON jobs (owner_key_id, status, id);
CREATE UNIQUE INDEX jobs_idempotency ON jobs ((COALESCE(owner_key_id, 0)), idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- API keys: only the SHA-256 of each key is kept (see the SQLite schema).
CREATE TABLE api_keys (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name        text    NOT NULL,
  prefix      text    NOT NULL,
  hash        text    NOT NULL,
  scope       text    NOT NULL CHECK (scope IN ('user','admin')),
  models      text,
  rate        text,
  max_queued  bigint,
  created_at  bigint  NOT NULL,
  revoked_at  bigint
);
CREATE UNIQUE INDEX api_keys_prefix ON api_keys (prefix);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

CREATE TABLE audit_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  time        bigint  NOT NULL,
  key_id      bigint,
  key_name    text    NOT NULL DEFAULT '',
  remote      text    NOT NULL DEFAULT '',
  method      text    NOT NULL,
  route       text    NOT NULL,
  path        text    NOT NULL,
  job_id      bigint,
  status      integer NOT NULL,
  request_id  text    NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_time ON audit_log (time);
CREATE INDEX audit_by_key ON audit_log (key_name, id);

-- The webhook outbox (see the SQLite schema): rows are claimed with FOR UPDATE SKIP LOCKED and a
-- lease (next_attempt_at pushed forward), so one node sends each.
CREATE TABLE webhook_deliveries (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id           bigint  NOT NULL,
  event            text    NOT NULL,
  url              text    NOT NULL,
  status           text    NOT NULL CHECK (status IN ('pending','delivered','failed')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  bigint,
  last_status_code integer,
  last_error       text    NOT NULL DEFAULT '',
  created_at       bigint  NOT NULL,
  delivered_at     bigint
);
CREATE INDEX webhook_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_by_job ON webhook_deliveries (job_id);
CREATE TABLE webhook_attempts (
  delivery_id  bigint  NOT NULL,
  at           bigint  NOT NULL,
  status_code  integer,
  error        text    NOT NULL DEFAULT '',
  duration_ms  double precision NOT NULL
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id);

CREATE TABLE job_files (
  job_id        bigint  NOT NULL,
  role          text    NOT NULL CHECK (role IN ('input','artifact')),
  position      integer NOT NULL,
  name          text    NOT NULL,
  content_type  text    NOT NULL,
  bytes         bigint  NOT NULL,
  sha256        text    NOT NULL,
  PRIMARY KEY (job_id, role, position)
);
CREATE INDEX job_files_by_sha ON job_files (sha256);
