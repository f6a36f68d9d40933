-- 0013_search_buckets: a search `q` of three characters or more (GET /leads?q=) walks, for each of
-- name_lower, email_norm and phone_norm, the leads whose column starts with the same three
-- characters as the prefix, newest first, and tests the whole prefix and the status from the
-- index alone; it stops once the page is full or after a budget of entries, and only then reads
-- the prefix's range in 0007's leads_by_status_* indexes (sql_lead_repo.c, SQL_LEAD_LIST_BUCKETS).
-- A bucket is a few tens of thousands of leads where the whole list is millions, so the walk
-- finds a page of a prefix common in its bucket after a few hundred entries, where 0007's walk
-- along leads_by_created read thousands of leads for a prefix of one lead in a hundred.
-- The expression must be written exactly so in a query for SQLite to use the index.
CREATE INDEX leads_by_name_bucket
    ON leads (substr(name_lower, 1, 3), created_at, seq, name_lower, status);
CREATE INDEX leads_by_email_bucket
    ON leads (substr(email_norm, 1, 3), created_at, seq, email_norm, status);
CREATE INDEX leads_by_phone_bucket
    ON leads (substr(phone_norm, 1, 3), created_at, seq, phone_norm, status);
