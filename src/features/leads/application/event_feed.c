/* event_feed.c: the feed's reads (see event_feed.h). */
#include "features/leads/application/event_feed.h"

#include "core/uuid.h"

#include <ctype.h>
#include <string.h>

int
event_feed_settle(struct lead_repo *r, struct lead_feed_fence *f, struct sp_error *err)
{
    return lead_repo_event_feed_settle(r, f, err);
}

int
event_feed_read(struct lead_repo *r, int64_t *cursor, int64_t upto, const char *lead_id, int max,
                struct arena *a, struct lead_event **out, int *n, struct sp_error *err)
{
    int64_t last = 0;
    int scanned = 0, rc;

    *out = NULL;
    *n = 0;
    if (max < 1 || upto <= *cursor)
        return SP_OK;
    rc = lead_repo_event_feed_page(r, *cursor, upto, lead_id, max, a, out, n, &scanned, &last, err);
    if (rc != SP_OK)
        return rc;
    /* A full page may stop short of upto: the next read starts after its last row. A short one
     * read everything up to upto, including the positions no event of `lead_id` has (or none at
     * all: rolled back). */
    *cursor = scanned == max ? last : upto;
    return SP_OK;
}

int
event_feed_resume(struct lead_repo *r, const char *last_event_id, int64_t *cursor,
                  struct sp_error *err)
{
    char id[SP_UUID_LEN + 1];

    *cursor = 0;
    if (last_event_id == NULL || !sp_uuid_valid(last_event_id, strlen(last_event_id)))
        return sp_error_set(err, SP_EINVAL, "Last-Event-ID", "Last-Event-ID must be a UUID");
    for (int i = 0; i <= SP_UUID_LEN; i++) /* ids are stored in lower case */
        id[i] = (char)tolower((unsigned char)last_event_id[i]);
    return lead_repo_event_position(r, id, cursor, err);
}
