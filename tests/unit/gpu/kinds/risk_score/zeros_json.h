/* A JSON array of n zeros, "[0,0,...,0]" (malloc'd, NUL-terminated; its length in
 * *ret_len): two bytes of text for each 16-byte value a parse makes, so it takes
 * the most memory a document of its size can. For test_xjson and test_model. */
#pragma once

#include <stdlib.h>

static inline char *zeros_json(size_t n, size_t *ret_len)
{
        size_t len = 2 * n + 1;
        char *text = malloc(len + 1);

        if (!text)
                return NULL;
        text[0] = '[';
        for (size_t i = 0; i < n; i++) {
                text[1 + 2 * i] = '0';
                text[2 + 2 * i] = i + 1 < n ? ',' : ']';
        }
        text[len] = '\0';
        *ret_len = len;
        return text;
}
