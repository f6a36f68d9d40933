/* jsonr.c: one field of a JSON object (see jsonr.h). */
#include "core/jsonr.h"

#include <jansson.h>
#include <string.h>

int
jsonr_str(const char *json, const char *key, char *out, size_t cap)
{
    json_t *root = json ? json_loads(json, JSON_REJECT_DUPLICATES, NULL) : NULL;
    json_t *v = json_object_get(root, key);
    int rc = SP_EINVAL;

    if (json_is_string(v)) {
        size_t len = json_string_length(v);
        rc = len < cap ? SP_OK : SP_ETOOLARGE;
        if (rc == SP_OK)
            memcpy(out, json_string_value(v), len + 1);
    }
    json_decref(root);
    return rc;
}
