-- 0006_inbound: what the provider webhooks need.
--   * Messages take the statuses a delivery receipt brings (delivered, read) and the ones the
--     operator features use (suppressed; kind manual).
--   * Leads carry their addresses normalised for matching an inbound sender: email trimmed
--     and lower-cased, phone reduced to its digits (E.164 without the '+'). The application
--     writes them; rows from before are filled here.
--   * inbound_receipts: one row per provider event already taken in (a WhatsApp wamid, an
--     email's Message-Id, a webhook's one-time token), so a redelivery stores nothing new.
--     The row is written in the unit of work of what the event caused.
ALTER TABLE messages DROP CONSTRAINT messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('welcome', 'ai_reply', 'reply', 'manual'));
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'received',
                      'delivered', 'read', 'suppressed'));
CREATE INDEX messages_by_provider_id ON messages (provider_id) WHERE provider_id IS NOT NULL;

ALTER TABLE leads ADD COLUMN email_norm text;
ALTER TABLE leads ADD COLUMN phone_norm text;
UPDATE leads SET email_norm = lower(btrim(email)) WHERE email IS NOT NULL;
UPDATE leads SET phone_norm = regexp_replace(phone, '[^0-9]', '', 'g') WHERE phone IS NOT NULL;
CREATE INDEX leads_by_email_norm ON leads (email_norm) WHERE email_norm IS NOT NULL;
CREATE INDEX leads_by_phone_norm ON leads (phone_norm) WHERE phone_norm IS NOT NULL;

CREATE TABLE inbound_receipts (
    source     text        NOT NULL,
    key        text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX inbound_receipts_by_age ON inbound_receipts (source, created_at);
