-- The transactional outbox of the Redis queue (REDIS_URL set). The transaction that queues a
-- message writes its job here; the relay publishes unrelayed rows to Redis (BullMQ layout, job
-- id = this id) after commit and on start, then sets relayed_at. The row is also SalesPad's
-- record of the job (state, attempts), updated by its workers with each outcome.
CREATE TABLE outbox (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    lead_id       TEXT    REFERENCES leads (id) ON DELETE CASCADE,
    message_id    TEXT,
    data          TEXT    NOT NULL,
    opts          TEXT    NOT NULL,
    state         TEXT    NOT NULL
                  CHECK (state IN ('waiting', 'delayed', 'active', 'completed', 'failed')),
    attempts_made INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    stalled_count INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    run_at        INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    relayed_at    INTEGER
);
CREATE INDEX outbox_unrelayed ON outbox (created_at) WHERE relayed_at IS NULL;
CREATE INDEX outbox_by_lead ON outbox (lead_id, created_at);
