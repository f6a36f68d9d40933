-- The transactional outbox of the Redis queue (REDIS_URL set). The transaction that queues a
-- message writes its job here; the relay publishes unrelayed rows to Redis (BullMQ layout, job
-- id = this id) after commit and on start, then sets relayed_at. The row is also SalesPad's
-- record of the job (state, attempts), updated by its workers with each outcome.
CREATE TABLE outbox (
    id            text        PRIMARY KEY,
    name          text        NOT NULL,
    lead_id       uuid        REFERENCES leads (id) ON DELETE CASCADE,
    message_id    uuid,
    data          text        NOT NULL,
    opts          text        NOT NULL,
    state         text        NOT NULL
                  CHECK (state IN ('waiting', 'delayed', 'active', 'completed', 'failed')),
    attempts_made integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL,
    stalled_count integer     NOT NULL DEFAULT 0,
    last_error    text,
    run_at        timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    relayed_at    timestamptz
);
CREATE INDEX outbox_unrelayed ON outbox (created_at) WHERE relayed_at IS NULL;
CREATE INDEX outbox_by_lead ON outbox (lead_id, created_at);
