/* t_json.c: JSON assertions (see t_json.h). */
#include "fakes/t_json.h"

#include "t.h"

#include <jansson.h>

static json_t *
load(const char *file, int line, const char *text)
{
    json_error_t jerr;
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, &jerr) : NULL;
    if (v == NULL)
        t_fail(file, line, "not JSON: %s", text ? text : "(null)");
    return v;
}

void
t_json_eq(const char *file, int line, const char *want, const char *got)
{
    json_t *w = load(file, line, want), *g = load(file, line, got);
    char *ws = json_dumps(w, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    char *gs = json_dumps(g, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    int same = ws && gs && strcmp(ws, gs) == 0;

    if (!same) {
        static char msg[8192];
        snprintf(msg, sizeof(msg), "JSON differs:\n      want %s\n      got  %s", ws ? ws : "?",
                 gs ? gs : "?");
        free(ws);
        free(gs);
        json_decref(w);
        json_decref(g);
        t_fail(file, line, "%s", msg);
    }
    free(ws);
    free(gs);
    json_decref(w);
    json_decref(g);
}

void
t_json_same(const char *file, int line, const char *want, const char *got)
{
    json_t *w = load(file, line, want), *g = load(file, line, got);
    int same = json_equal(w, g);

    json_decref(w);
    json_decref(g);
    if (!same)
        t_fail(file, line, "JSON values differ:\n      want %s\n      got  %s", want, got);
}

static json_t *
at(json_t *root, const char *path)
{
    char key[128];
    json_t *v = root;

    while (v && *path) {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof(key), "%.*s", (int)n, path);
        v = json_object_get(v, key);
        path += n;
        if (*path == '.')
            path++;
    }
    return v;
}

const char *
t_json_str(const char *json, const char *path)
{
    static char buf[4096];
    json_t *root = load(__FILE__, __LINE__, json);
    json_t *v = at(root, path);
    const char *out = NULL;

    if (json_is_string(v)) {
        snprintf(buf, sizeof(buf), "%s", json_string_value(v));
        out = buf;
    }
    json_decref(root);
    return out;
}

long long
t_json_int(const char *json, const char *path)
{
    json_t *root = load(__FILE__, __LINE__, json);
    json_t *v = at(root, path);
    long long out;

    if (json_is_integer(v))
        out = json_integer_value(v);
    else if (json_is_boolean(v))
        out = json_is_true(v);
    else {
        json_decref(root);
        t_fail(__FILE__, __LINE__, "no integer at %s in %s", path, json);
    }
    json_decref(root);
    return out;
}
