-- The nodes that use this store (one, with SQLite): see src/store/node_store.h.
CREATE TABLE nodes (
  id            TEXT    PRIMARY KEY,
  role          TEXT    NOT NULL,
  version       TEXT    NOT NULL DEFAULT '',
  models        TEXT    NOT NULL DEFAULT '{}',
  started_at    INTEGER NOT NULL,
  heartbeat_at  INTEGER NOT NULL
);
