/* libFuzzer target: one JSON value checked and copied compactly
 * (daemon/json_compact.c), against jansson. What json_value_compact takes jansson
 * must read too (but for what jansson alone refuses: an escaped lone surrogate,
 * numbers past int64 or double, \u0000 in a key), as the same value as the
 * compact copy, and the copy must be taken again unchanged. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json_compact.h"

static bool jansson_only_refusal(const char *why)
{
        return strstr(why, "invalid Unicode") || strstr(why, "too big") || strstr(why, "overflow") ||
               strstr(why, "NUL byte in object key");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *text = (const char *)data;
        size_t pos = 0, n = 0, n_only = 0;

        if (json_value_compact(text, size, &pos, NULL, &n_only) < 0 || pos != size)
                return 0;
        char *out = malloc(n_only + 1), *again = malloc(n_only + 1);
        pos = 0;
        if (!out || !again || json_value_compact(text, size, &pos, out, &n) < 0 || n != n_only)
                abort(); /* the length it said, and the copy it makes, disagree */
        size_t pos2 = 0, n2 = 0;
        if (json_value_compact(out, n, &pos2, again, &n2) < 0 || pos2 != n || n2 != n || memcmp(out, again, n))
                abort(); /* the compact copy is not taken again as it is */
        json_error_t err;
        json_t *a = json_loadb(text, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!a) {
                if (!jansson_only_refusal(err.text))
                        abort(); /* taken, but not JSON */
        } else {
                json_t *b = json_loadb(out, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                if (!json_equal(a, b))
                        abort(); /* the copy is another value */
                json_decref(b);
        }
        json_decref(a);
        free(out);
        free(again);
        return 0;
}
