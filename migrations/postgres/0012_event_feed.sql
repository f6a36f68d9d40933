-- 0012_event_feed: GET /events hands out every timeline event in one total order, lead_events.seq,
-- and resumes after the last one a client saw. A bigserial value is taken when a row is inserted,
-- not when its transaction commits, so a reader that resumed after seq N could miss a row with a
-- smaller seq committed later. The feed therefore reads only up to a "settled" seq: one that no
-- running transaction can still commit an event at or below (sql_lead_repo.c, event_feed_settle).
-- To know which transactions those are, every transaction inserting events holds a shared
-- transaction-level advisory lock, (1397768516, 1), taken before its seq: the reader notes the
-- sequence's last value, then the lock's holders, and settles that value once they have all ended.
-- The trigger takes the lock, then the seq, in that order (the column default would take the seq
-- first, before the trigger runs). The sequence must keep CACHE 1 (bigserial's default): a value
-- cached by a session could be handed out after the reader's note.
CREATE FUNCTION lead_events_take_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1397768516, 1);
    NEW.seq := nextval('lead_events_seq_seq');
    RETURN NEW;
END
$$;

ALTER TABLE lead_events ALTER COLUMN seq DROP DEFAULT;

CREATE TRIGGER lead_events_take_seq BEFORE INSERT ON lead_events
    FOR EACH ROW EXECUTE FUNCTION lead_events_take_seq();
