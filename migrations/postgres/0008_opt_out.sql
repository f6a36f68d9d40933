-- 0008_opt_out: do not contact. One row per lead and channel the lead asked not to be contacted
-- on (POST /leads/:id/opt-out, a reply asking to stop, an email's one-click unsubscribe); the
-- row goes when the lead may be contacted there again (DELETE /leads/:id/opt-out). The worker
-- reads it when it claims a message and suppresses the send. The first opt-out stands: a
-- second one of the same channel changes nothing (the primary key).
CREATE TABLE lead_opt_outs (
    lead_id    uuid        NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    channel    text        NOT NULL CHECK (channel IN ('email', 'whatsapp')),
    reason     text,
    source     text        NOT NULL CHECK (source IN ('api', 'reply', 'unsubscribe')),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (lead_id, channel)
);
