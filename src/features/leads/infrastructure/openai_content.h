/* openai_content.h: answers from an OpenAI-compatible chat-completions API (AI_PROVIDER=openai).
 *
 * An answer is one POST {base_url}/chat/completions with a bearer key, through libcurl
 * (infra/curl_client.h; TLS verified, plain http only to a loopback host, for tests). The request
 * holds the model, a system message (the configured prompt, then the lead's name and the
 * channel) and the conversation on the channel, oldest first: the prospect's messages as "user",
 * ours as "assistant". The answer's text is choices[0].message.content, put into the channel's
 * message shape (email {"to","subject","body"}, whatsapp {"to","text"}). Welcomes are not the
 * model's: they stay the mock's templates (generated inside the capture request, no network).
 *
 * Errors (content_gen.h): HTTP 429, 408, 409 and 5xx, a 2xx without a usable answer and a
 * transport failure are SP_EPROVIDER (a Retry-After goes to err->retry_after_ms); a timeout is
 * SP_ETIMEDOUT; 400, 401, 403, 404, 422 and the other statuses are SP_EPERMANENT. The error
 * text is "ai: HTTP <status> <the provider's message>" and never holds the key. Thread-safe: the
 * configuration is read-only and each thread has its own curl handle. */
#pragma once

#include "core/err.h"
#include "features/leads/domain/content_gen.h"

#include <stddef.h>

struct arena;
struct openai_content;

/* AI_SYSTEM_PROMPT when unset. */
#define OPENAI_PROMPT_DEFAULT                                                                      \
    "You are a polite, helpful sales assistant for SalesPad, writing to a prospect who answered "  \
    "our message. Answer their latest message briefly and warmly, in their language, in plain "    \
    "text without markdown. Answer questions honestly; do not invent prices, features or "         \
    "commitments: offer to have a colleague follow up, or to book a short demo call, instead. "    \
    "Never ask for passwords or payment details. Do not sign with a person's name."

struct openai_content_config {
    const char *base_url;      /* https://api.openai.com/v1 */
    const char *api_key;       /* the bearer key (secret) */
    const char *model;         /* e.g. gpt-4o-mini */
    const char *system_prompt; /* the assistant's instructions */
    long timeout_ms;           /* the whole HTTP exchange of one answer */
};

/* Copies what it needs of cfg. SP_EINVAL (field = the setting, message never holding the key)
 * for a missing or malformed setting. Caller frees with openai_content_free(). */
int openai_content_new(const struct openai_content_config *cfg, struct openai_content **out,
                       struct sp_error *err) SP_MUST_CHECK;
/* The content generator of g. */
struct content_gen *openai_content_base(struct openai_content *g);
/* NULL-safe; wipes the key. */
void openai_content_free(struct openai_content *g);

/* For `salespad check-providers`: GET {base_url}/models with the key, nothing generated. SP_OK
 * when the key is accepted; *detail (arena) says whether the model is listed. Errors as for
 * answers. */
int openai_content_check(struct openai_content *g, struct arena *a, const char **detail,
                         struct sp_error *err) SP_MUST_CHECK;

/* ---- the pure parts, exposed for the unit tests ------------------------------------------- */

#define OPENAI_TURN_MAX 8000 /* bytes of one message's text sent to the model */
#define OPENAI_REQUEST_MAX (256 * 1024)
#define OPENAI_ANSWER_MAX 4096 /* bytes of an answer kept (WhatsApp's text limit) */

/* The chat-completions request body (JSON, arena): the model, the system message, then each
 * message of conv (NULL or empty: only `inbound`, the prospect's channel message JSON) as
 * user/assistant with its text (an email's body, a WhatsApp text; messages without one are left
 * out), each cut to OPENAI_TURN_MAX bytes at a character boundary. SP_EINVAL when the request
 * would pass OPENAI_REQUEST_MAX. */
int openai_request_build(const char *model, const char *system_prompt, const struct lead *l,
                         enum channel c, const char *inbound, const struct conversation *conv,
                         struct arena *a, const char **out, size_t *len,
                         struct sp_error *err) SP_MUST_CHECK;

/* choices[0].message.content of a 2xx body, trimmed and cut to OPENAI_ANSWER_MAX bytes at a
 * character boundary, in the arena; NULL when the body holds no non-empty text. */
const char *openai_answer_text(const char *body, size_t body_len, struct arena *a);

/* What a non-2xx answer means: sets err ("ai: HTTP <status> <error.message>", retry_after_ms
 * from retry_after_s when retryable) and returns SP_EPROVIDER or SP_EPERMANENT. body may be
 * NULL or not JSON. */
int openai_error_classify(long status, const char *body, size_t body_len, long retry_after_s,
                          struct sp_error *err);
