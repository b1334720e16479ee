-- A cancel request for a PROCESSING job; the node running it sees the flag and stops the job.
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
