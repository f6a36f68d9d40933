-- 0010_idempotency: safe retries of POST requests (Idempotency-Key). One row per key and
-- client scope (the API key's digest, or "" without keys): the request's digest and the answer
-- given, written in the unit of work of the request's effect (src/app/idempotency.c), so a
-- key is stored if and only if its effect is. Rows older than IDEMPOTENCY_TTL_S are replaced
-- when their key comes again, and pruned.
CREATE TABLE idempotency_keys (
    scope          TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    request_hash   TEXT    NOT NULL,
    status         INTEGER NOT NULL,
    content_type   TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
