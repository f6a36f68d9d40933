-- 0007_unique_people: one lead per person, and the indexes of the lead list (GET /leads).
--   * A lead's normalised email and phone (0006: email trimmed and lower-cased, phone reduced to
--     its digits) are unique: a capture of an address another lead has is refused, and of
--     concurrent captures of one address exactly one is stored. The unique indexes replace
--     0006's plain ones (same columns, same partial form).
--   * Duplicates from before: an old database may hold several leads with one address. The
--     oldest lead of each group (lowest seq) keeps the normalised value; the newer ones get
--     NULL there (their email and phone columns are kept as they were given). Inbound replies
--     from that address go to the oldest lead, as they already did, and the list's `q` finds
--     the newer ones by name only. The UPDATEs run while 0006's indexes still serve them.
--   * name_lower: the name lower-cased for `q` (a case-insensitive prefix match). The
--     application writes it (lead_name_fold); rows from before get the database's lower()
--     (SQLite's: ASCII letters only).
--   * The list reads newest first by (created_at, seq), a keyset: leads_by_created (no filter),
--     leads_by_status_created (status). A search `q` reads, for each of name_lower, email_norm
--     and phone_norm, the range of the prefix under each status asked for (all five without a
--     status filter) in leads_by_status_name / _email / _phone, which also hold created_at and
--     seq so that no table row is read; or, when the prefix is common, walks the list and tests
--     each lead. Comparisons are byte-wise (SQLite's BINARY).
UPDATE leads SET email_norm = NULL
    WHERE email_norm IS NOT NULL
      AND EXISTS (SELECT 1 FROM leads o WHERE o.email_norm = leads.email_norm AND o.seq < leads.seq);
UPDATE leads SET phone_norm = NULL
    WHERE phone_norm IS NOT NULL
      AND EXISTS (SELECT 1 FROM leads o WHERE o.phone_norm = leads.phone_norm AND o.seq < leads.seq);
DROP INDEX leads_by_email_norm;
DROP INDEX leads_by_phone_norm;
CREATE UNIQUE INDEX leads_email_norm_unique ON leads (email_norm) WHERE email_norm IS NOT NULL;
CREATE UNIQUE INDEX leads_phone_norm_unique ON leads (phone_norm) WHERE phone_norm IS NOT NULL;

ALTER TABLE leads ADD COLUMN name_lower TEXT NOT NULL DEFAULT '';
UPDATE leads SET name_lower = lower(name);

CREATE INDEX leads_by_created ON leads (created_at, seq);
CREATE INDEX leads_by_status_created ON leads (status, created_at, seq);
CREATE INDEX leads_by_status_name ON leads (status, name_lower, created_at, seq);
CREATE INDEX leads_by_status_email ON leads (status, email_norm, created_at, seq)
    WHERE email_norm IS NOT NULL;
CREATE INDEX leads_by_status_phone ON leads (status, phone_norm, created_at, seq)
    WHERE phone_norm IS NOT NULL;
