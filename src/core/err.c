/* err.c: tables behind the SP_ERRORS list and the first-error-wins setter. */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct err_info {
    int code;
    const char *name;
    int retryable;
    const char *text;
};

static const struct err_info infos[] = {
#define SP_ERR_INFO(name, retry, text) {SP_##name, #name, retry, text},
    SP_ERRORS(SP_ERR_INFO)
#undef SP_ERR_INFO
};

static const struct err_info *
find(int code)
{
    for (size_t i = 0; i < sizeof(infos) / sizeof(infos[0]); i++)
        if (infos[i].code == code)
            return &infos[i];
    return NULL;
}

const char *
sp_err_name(int code)
{
    const struct err_info *e = find(code);
    if (code == SP_OK)
        return "OK";
    return e ? e->name : "EUNKNOWN";
}

const char *
sp_err_str(int code)
{
    const struct err_info *e = find(code);
    if (code == SP_OK)
        return "success";
    return e ? e->text : "unknown error";
}

int
sp_err_retryable(int code)
{
    const struct err_info *e = find(code);
    return e ? e->retryable : 0;
}

int
sp_error_set(struct sp_error *err, int code, const char *field, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || err->code != SP_OK)
        return code;
    err->code = code;
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return code;
}

void
sp_error_clear(struct sp_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}
