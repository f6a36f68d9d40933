-- Leases that outlive a slow job and holders that can be proven dead. lease_token is the
-- reserving holder's token (fences complete/retry/fail: a job whose lease was lost cannot be
-- ended by its old holder); holder names the worker process, whose keeper renews the leases of
-- all its active jobs in one statement, and whose death (its advisory lock on PostgreSQL, its
-- flock'd file on SQLite released) lets any other worker take its jobs at once. Both look only
-- at active jobs, which the partial index jobs_leased already singles out: no index of their own
-- (one more index write per activation and per outcome, on the hot path).
-- (lead_id holds the job's group, message_id its key: the names predate the queue port.)
ALTER TABLE jobs ADD COLUMN lease_token TEXT;
ALTER TABLE jobs ADD COLUMN holder TEXT;
