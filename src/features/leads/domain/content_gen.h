/* content_gen.h: the AI content generator port: welcome messages and answers to replies.
 *
 * Output is a channel message as JSON object text in the caller's arena: email
 * {"to","subject","body"}, whatsapp {"to","text"}. Generators must not block on the network
 * for long (a slow real provider belongs behind a job). */
#pragma once

#include "core/err.h"
#include "features/leads/domain/lead.h"

struct arena;
struct content_gen;

/* A generated outbound message: its recipient and its channel message JSON (arena). */
struct generated {
    const char *to;
    const char *channel_message;
};

struct content_gen_ops {
    const char *name;
    /* The welcome message for lead `l` on `c`, addressed to the lead's address on `c`. */
    int (*welcome)(struct content_gen *g, const struct lead *l, enum channel c, struct arena *a,
                   struct generated *out, struct sp_error *err);
    /* The answer to `inbound` (the prospect's channel message JSON) on `c`, addressed to the
     * lead's address on `c` and never to anything read from `inbound` (its "from" included).
     * SP_EINVAL when the lead has no address on `c`. Header fields (an email's subject) hold
     * no line break or other control character, whatever the prospect wrote. */
    int (*answer)(struct content_gen *g, const struct lead *l, enum channel c, const char *inbound,
                  struct arena *a, struct generated *out, struct sp_error *err);
};

struct content_gen {
    const struct content_gen_ops *ops;
};

static inline int SP_MUST_CHECK
content_gen_welcome(struct content_gen *g, const struct lead *l, enum channel c, struct arena *a,
                    struct generated *out, struct sp_error *err)
{
    return g->ops->welcome(g, l, c, a, out, err);
}

static inline int SP_MUST_CHECK
content_gen_answer(struct content_gen *g, const struct lead *l, enum channel c, const char *inbound,
                   struct arena *a, struct generated *out, struct sp_error *err)
{
    return g->ops->answer(g, l, c, inbound, a, out, err);
}
