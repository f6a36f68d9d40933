/* mock_content.c: canned AI-style content (see mock_content.h). */
#include "features/leads/infrastructure/mock_content.h"

#include "core/arena.h"
#include "core/jsonw.h"
#include "features/leads/domain/content_gen.h"

#include <jansson.h>
#include <string.h>
#include <strings.h>

#define CONTENT_MAX (MESSAGE_CONTENT_MAX)

static int
finish(struct jsonw *w, const char *to, struct generated *out, struct sp_error *err)
{
    const char *s;
    if (jsonw_finish(w, &s, NULL) != SP_OK)
        return sp_error_set(err, SP_ETOOLARGE, "messageContent", "generated message too large");
    out->to = to;
    out->channel_message = s;
    return SP_OK;
}

static int
welcome(struct content_gen *g, const struct lead *l, enum channel c, struct arena *a,
        struct generated *out, struct sp_error *err)
{
    const char *to = lead_address_for(l, c);
    struct jsonw w;

    (void)g;
    if (to == NULL)
        return sp_error_set(err, SP_EINVAL, channel_name(c), "lead has no %s address",
                            channel_name(c));
    jsonw_init(&w, a, CONTENT_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "to", to);
    if (c == CHANNEL_EMAIL) {
        jsonw_kstr(&w, "subject", lead_text_one_line(a, arena_printf(a, "Welcome, %s!", l->name)));
        jsonw_kstr(&w, "body",
                   arena_printf(a,
                                "Hi %s,\n\nThank you for reaching out to us! We help sales teams "
                                "follow up with every lead in minutes instead of days.\n\nJust "
                                "reply to this email with your questions, or tell us a good time "
                                "for a short call.\n\nBest regards,\nThe SalesPad team",
                                l->name));
    } else {
        jsonw_kstr(&w, "text",
                   arena_printf(a,
                                "Hi %s! Thanks for your interest in SalesPad. Reply here any "
                                "time: we are happy to answer questions or set up a quick demo.",
                                l->name));
    }
    jsonw_obj_end(&w);
    return finish(&w, to, out, err);
}

static const char *
answer_text(enum reply_intent intent, const char *name)
{
    (void)name;
    switch (intent) {
    case INTENT_PRICING:
        return "Thanks for asking about pricing! Our plans start with a free trial and scale "
               "with the number of leads you handle. I can send you a tailored quote: how many "
               "new leads do you get each month?";
    case INTENT_DEMO:
        return "Great, let's set up a demo! Reply with two or three times that work for you "
               "this week and I will send a calendar invitation for a 20-minute call.";
    case INTENT_NOT_INTERESTED:
        return "Thanks for letting us know, and no problem at all. If your needs change, just "
               "reply to this message and we will pick it up from there.";
    case INTENT_STOP:
        return "Understood: you will not receive any more messages from us. Sorry for the "
               "interruption.";
    default:
        return "Thanks for your message! A member of our team will get back to you shortly. "
               "Meanwhile, feel free to ask about pricing or to book a demo.";
    }
}

/* Strips any number of leading "RE:" prefixes so a thread keeps one. */
static const char *
strip_re(const char *s)
{
    while (s && strncasecmp(s, "re:", 3) == 0) {
        s += 3;
        while (*s == ' ')
            s++;
    }
    return s;
}

static int
answer(struct content_gen *g, const struct lead *l, enum channel c, const char *inbound,
       const struct conversation *conv, struct arena *a, struct generated *out,
       struct sp_error *err)
{
    json_t *in = inbound ? json_loads(inbound, 0, NULL) : NULL;
    const char *to = lead_address_for(l, c);
    const char *text, *subject;
    enum reply_intent intent;
    struct jsonw w;
    int rc;

    (void)g;
    (void)conv; /* the template answers the newest reply only */
    text = json_string_value(json_object_get(in, c == CHANNEL_EMAIL ? "body" : "text"));
    subject = json_string_value(json_object_get(in, "subject"));
    /* Only ever to the lead's own address: a reply's "from" is the use case's business (it
     * validates it and, for a lead with no address on the channel, makes it the lead's). */
    if (to == NULL) {
        json_decref(in);
        return sp_error_set(err, SP_EINVAL, "messageContent",
                            "lead has no %s address and messageContent.from is missing",
                            channel_name(c));
    }
    intent = reply_intent_detect(text);
    jsonw_init(&w, a, CONTENT_MAX);
    jsonw_obj_begin(&w);
    jsonw_kstr(&w, "to", to);
    if (c == CHANNEL_EMAIL) {
        const char *thread = subject && strip_re(subject)[0]
                                 ? strip_re(subject)
                                 : arena_printf(a, "Welcome, %s!", l->name);
        /* the subject is a header: no line break from the prospect's text gets into it */
        jsonw_kstr(&w, "subject", lead_text_one_line(a, arena_printf(a, "RE: %s", thread)));
        jsonw_kstr(&w, "body",
                   arena_printf(a, "Hi %s,\n\n%s\n\nBest regards,\nThe SalesPad team", l->name,
                                answer_text(intent, l->name)));
    } else {
        jsonw_kstr(&w, "text", arena_printf(a, "Hi %s! %s", l->name, answer_text(intent, l->name)));
    }
    jsonw_kstr(&w, "intent", reply_intent_name(intent));
    jsonw_obj_end(&w);
    rc = finish(&w, to, out, err);
    json_decref(in);
    return rc;
}

static const struct content_gen_ops mock_ops = {"mock", welcome, answer};
static struct content_gen mock_gen = {&mock_ops};

struct content_gen *
mock_content_gen(void)
{
    return &mock_gen;
}
