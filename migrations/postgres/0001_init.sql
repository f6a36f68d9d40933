-- 0001_init: leads, their messages and timeline events, and the send-message job queue.
-- Each table has an internal bigint key (seq) giving insertion order and the UUID the API exposes
-- as `id`, as in the NestJS build's schema.

CREATE TABLE leads (
    seq        bigserial    PRIMARY KEY,
    id         uuid         NOT NULL UNIQUE,
    name       varchar(255) NOT NULL,
    email      varchar(255),
    phone      varchar(50),
    status     text         NOT NULL DEFAULT 'new'
               CHECK (status IN ('new', 'contacted', 'replied', 'converted', 'dead')),
    created_at timestamptz  NOT NULL,
    updated_at timestamptz  NOT NULL
);

CREATE TABLE messages (
    seq             bigserial   PRIMARY KEY,
    id              uuid        NOT NULL UNIQUE,
    lead_id         uuid        NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    channel         text        NOT NULL,
    direction       text        NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    kind            text        NOT NULL CHECK (kind IN ('welcome', 'ai_reply', 'reply')),
    status          text        NOT NULL
                    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'received')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    provider_id     text,
    recipient       text,
    channel_message jsonb       NOT NULL,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX messages_by_lead ON messages (lead_id, seq);

CREATE TABLE lead_events (
    seq             bigserial   PRIMARY KEY,
    id              uuid        NOT NULL UNIQUE,
    lead_id         uuid        NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    type            text        NOT NULL,
    correlation_ids jsonb       NOT NULL,
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL
);
CREATE INDEX lead_events_by_lead ON lead_events (lead_id, seq);

CREATE TABLE jobs (
    id            bigserial   PRIMARY KEY,
    name          text        NOT NULL,
    lead_id       uuid        REFERENCES leads (id) ON DELETE CASCADE,
    message_id    uuid,
    data          jsonb       NOT NULL,
    state         text        NOT NULL
                  CHECK (state IN ('waiting', 'delayed', 'active', 'completed', 'failed')),
    attempts_made integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL,
    backoff_ms    bigint      NOT NULL,
    stalled_count integer     NOT NULL DEFAULT 0,
    run_at        timestamptz NOT NULL,
    lease_until   timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    finished_at   timestamptz
);
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('waiting', 'delayed');
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'active';
CREATE INDEX jobs_by_lead ON jobs (lead_id, id);
