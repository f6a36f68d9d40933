-- 0006_inbound: what the provider webhooks need.
--   * Messages take the statuses a delivery receipt brings (delivered, read) and the ones the
--     operator features use (suppressed; kind manual). SQLite cannot change a CHECK in place:
--     the table is rebuilt, rows and indexes kept (nothing references messages by key).
--   * Leads carry their addresses normalised for matching an inbound sender: email trimmed
--     and lower-cased, phone reduced to its digits (E.164 without the '+'). The application
--     writes them; rows from before are filled here (the phone only of its usual separators).
--   * inbound_receipts: one row per provider event already taken in (a WhatsApp wamid, an
--     email's Message-Id, a webhook's one-time token), so a redelivery stores nothing new.
--     The row is written in the unit of work of what the event caused.
CREATE TABLE messages_0006 (
    seq             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    lead_id         TEXT    NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    channel         TEXT    NOT NULL,
    direction       TEXT    NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    kind            TEXT    NOT NULL CHECK (kind IN ('welcome', 'ai_reply', 'reply', 'manual')),
    status          TEXT    NOT NULL
                    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'received',
                                      'delivered', 'read', 'suppressed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    provider_id     TEXT,
    recipient       TEXT,
    channel_message TEXT    NOT NULL,
    sent_at         INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
INSERT INTO messages_0006 SELECT seq, id, lead_id, channel, direction, kind, status, attempts,
    last_error, provider_id, recipient, channel_message, sent_at, created_at, updated_at
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_0006 RENAME TO messages;
CREATE INDEX messages_by_lead ON messages (lead_id, seq);
CREATE INDEX messages_by_lead_channel ON messages (lead_id, channel, seq);
CREATE INDEX messages_by_provider_id ON messages (provider_id) WHERE provider_id IS NOT NULL;

ALTER TABLE leads ADD COLUMN email_norm TEXT;
ALTER TABLE leads ADD COLUMN phone_norm TEXT;
UPDATE leads SET email_norm = lower(trim(email)) WHERE email IS NOT NULL;
UPDATE leads SET phone_norm = replace(replace(replace(replace(replace(replace(replace(
    phone, ' ', ''), '-', ''), '.', ''), '(', ''), ')', ''), '+', ''), '/', '')
    WHERE phone IS NOT NULL;
CREATE INDEX leads_by_email_norm ON leads (email_norm) WHERE email_norm IS NOT NULL;
CREATE INDEX leads_by_phone_norm ON leads (phone_norm) WHERE phone_norm IS NOT NULL;

CREATE TABLE inbound_receipts (
    source     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX inbound_receipts_by_age ON inbound_receipts (source, created_at);
