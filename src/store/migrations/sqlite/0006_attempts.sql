-- A job's earlier attempts: each run that ended because its worker vanished (the lease expired, the
-- server stopped) and was requeued, as a JSON array of {attempt, started_at, lease_owner,
-- requeued_at} (the job's own started_at / finished_at describe its last attempt).
ALTER TABLE jobs ADD COLUMN earlier_attempts TEXT NOT NULL DEFAULT '[]';
