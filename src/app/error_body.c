/* error_body.c: the NestJS error body (see error_body.h). */
#include "app/error_body.h"

#include "core/arena.h"
#include "core/http.h"
#include "core/jsonw.h"

#include <string.h>

const char *
error_body_nest(struct arena *a, int status, const char *const *messages, int n, int as_array,
                size_t *len)
{
    struct jsonw w;
    const char *body;

    jsonw_init(&w, a, HTTP_ERROR_BODY_MAX);
    jsonw_obj_begin(&w);
    jsonw_key(&w, "message");
    if (as_array) {
        jsonw_arr_begin(&w);
        for (int i = 0; i < n; i++)
            jsonw_str(&w, messages[i] ? messages[i] : "");
        jsonw_arr_end(&w);
    } else {
        jsonw_str(&w, n > 0 && messages[0] ? messages[0] : http_reason(status));
    }
    jsonw_kstr(&w, "error", http_reason(status));
    jsonw_kint(&w, "statusCode", status);
    jsonw_obj_end(&w);
    if (jsonw_finish(&w, &body, len) != SP_OK) { /* past HTTP_ERROR_BODY_MAX: the reason only */
        body = arena_printf(a, "{\"message\":\"%s\",\"error\":\"%s\",\"statusCode\":%d}",
                            http_reason(status), http_reason(status), status);
        *len = strlen(body);
    }
    return body;
}

void
error_body_install(void)
{
    http_error_render_set(error_body_nest);
}
