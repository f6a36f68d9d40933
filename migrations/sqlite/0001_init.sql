-- 0001_init: leads, their messages and timeline events, and the send-message job queue.
-- Times are milliseconds since the Unix epoch (UTC). Each table has an internal integer key
-- (seq) giving insertion order, and the UUID the API exposes as `id`.

CREATE TABLE leads (
    seq        INTEGER PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    name       TEXT    NOT NULL,
    email      TEXT,
    phone      TEXT,
    status     TEXT    NOT NULL DEFAULT 'new'
               CHECK (status IN ('new', 'contacted', 'replied', 'converted', 'dead')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE messages (
    seq             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    lead_id         TEXT    NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    channel         TEXT    NOT NULL,
    direction       TEXT    NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    kind            TEXT    NOT NULL CHECK (kind IN ('welcome', 'ai_reply', 'reply')),
    status          TEXT    NOT NULL
                    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'received')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    provider_id     TEXT,
    recipient       TEXT,
    channel_message TEXT    NOT NULL,
    sent_at         INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX messages_by_lead ON messages (lead_id, seq);

CREATE TABLE lead_events (
    seq             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    lead_id         TEXT    NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    type            TEXT    NOT NULL,
    correlation_ids TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX lead_events_by_lead ON lead_events (lead_id, seq);

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    lead_id       TEXT    REFERENCES leads (id) ON DELETE CASCADE,
    message_id    TEXT,
    data          TEXT    NOT NULL,
    state         TEXT    NOT NULL
                  CHECK (state IN ('waiting', 'delayed', 'active', 'completed', 'failed')),
    attempts_made INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    backoff_ms    INTEGER NOT NULL,
    stalled_count INTEGER NOT NULL DEFAULT 0,
    run_at        INTEGER NOT NULL,
    lease_until   INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER
);
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('waiting', 'delayed');
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'active';
CREATE INDEX jobs_by_lead ON jobs (lead_id, id);
