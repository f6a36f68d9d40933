-- 0009_jobs_list: the operator's job routes (GET /jobs, GET /jobs/:id, POST /jobs/:id/retry).
--   * GET /jobs lists jobs newest first a page at a time (keyset), every state or one: on the
--     database queue by id (the primary key) or (state, id); on the Redis queue its records, the
--     outbox rows, by (created_at, id) or (state, created_at, id). Any page of any filter reads
--     one index range, never the rows of other states. The cost: each state change of a job
--     moves its entry in the state index (the jobs table already had two partial indexes on
--     state, jobs_due and jobs_leased; the outbox had none).
--   * outbox.requeued_at: an operator's retry of a failed job on the Redis queue, written with
--     the record's reset (state waiting, attempts 0) and relayed_at NULL in the retry's
--     transaction; the relay applies it in Redis (the reprocess script) after the commit and
--     clears it with relayed_at, as it publishes a new job.
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX outbox_by_created ON outbox (created_at, id);
CREATE INDEX outbox_by_state ON outbox (state, created_at, id);
ALTER TABLE outbox ADD COLUMN requeued_at INTEGER;
