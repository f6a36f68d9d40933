/* webhooks_http.h: the providers' doors in: WhatsApp Cloud API webhooks (verification,
 * messages, delivery statuses) and inbound email in Mailgun's inbound-route format. Each
 * checks the provider's signature, parses the provider's format (messaging/infrastructure)
 * and calls the leads slice's use cases: leads_receive for a prospect's message,
 * leads_apply_receipt for a delivery status. Nothing here talks to a provider. */
#pragma once

#include "core/http.h"

#include <stdatomic.h>

struct leads_deps;

/* Settings of the webhooks, borrowed from the configuration; NULL when unset. */
struct webhooks_config {
    const char *whatsapp_app_secret;      /* WHATSAPP_APP_SECRET: unset, POST answers 503 */
    const char *whatsapp_verify_token;    /* WHATSAPP_VERIFY_TOKEN: unset, GET answers 403 */
    const char *whatsapp_phone_number_id; /* set: changes for other numbers are ignored */
    const char *email_signing_key;        /* EMAIL_WEBHOOK_SIGNING_KEY: unset, POST answers 503 */
    const char *email_reply_secret;       /* EMAIL_REPLY_SECRET: reads reply+{token} recipients */
    atomic_uint calls;                    /* paces the pruning of used tokens */
};

/* GET /webhooks/whatsapp: Meta's subscription check. 200 with hub.challenge as text/plain when
 * hub.mode is "subscribe" and hub.verify_token is WHATSAPP_VERIFY_TOKEN; 403 otherwise. */
void webhooks_http_whatsapp_verify(struct webhooks_config *c, struct http_request *req,
                                   struct http_response *resp);
/* POST /webhooks/whatsapp: 401 without a valid X-Hub-Signature-256, 400 for a body that is not
 * the documented envelope, 503 when storage fails (Meta delivers again: what was stored is
 * deduplicated), else 200 once every message and status is stored. */
void webhooks_http_whatsapp(struct webhooks_config *c, const struct leads_deps *d,
                            struct http_request *req, struct http_response *resp);
/* POST /webhooks/email: 415 for a body that is not a form, 400 for a form without the fields,
 * 401 for a bad signature, a timestamp more than 5 minutes away or a token used before, 503
 * when storage fails, else 200 (a redelivered Message-Id changes nothing). */
void webhooks_http_email(struct webhooks_config *c, const struct leads_deps *d,
                         struct http_request *req, struct http_response *resp);
