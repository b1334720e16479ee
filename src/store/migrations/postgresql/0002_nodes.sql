-- The nodes that share this database: see src/store/node_store.h.
CREATE TABLE nodes (
  id            text    PRIMARY KEY,
  role          text    NOT NULL,
  version       text    NOT NULL DEFAULT '',
  models        text    NOT NULL DEFAULT '{}',  -- JSON: model id -> {state, running, capacity}
  started_at    bigint  NOT NULL,
  heartbeat_at  bigint  NOT NULL
);
