-- 0005_messages_by_channel: the details view and GET /leads/:id/messages read one channel's
-- newest messages a page at a time (keyset on seq, newest first) and list the channels a lead
-- has messages on in order of their first message; this index serves both without touching
-- the other channels' rows. Events page on lead_events_by_lead (lead_id, seq) from 0001.
CREATE INDEX messages_by_lead_channel ON messages (lead_id, channel, seq);
