-- Files of jobs: inputs the client sent and artifacts the backend produced. The bytes are in the
-- data dir's blob store under their sha256; several rows may share one blob.
CREATE TABLE job_files (
  job_id        INTEGER NOT NULL,
  role          TEXT    NOT NULL CHECK (role IN ('input','artifact')),
  position      INTEGER NOT NULL,
  name          TEXT    NOT NULL,
  content_type  TEXT    NOT NULL,
  bytes         INTEGER NOT NULL,
  sha256        TEXT    NOT NULL,
  PRIMARY KEY (job_id, role, position)
);
CREATE INDEX job_files_by_sha ON job_files (sha256);
