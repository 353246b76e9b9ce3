/* Why a message is refused before its op is looked at: the JSON jansson would not
 * take, named by the path of the value at fault (json_path_at), and fields an op
 * does not take; and the "ref" of such a message, for its error reply. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "json_path.h"
#include "proto.h"
#include "proto_internal.h"

/* The fields each op takes besides "op" and "ref", comma-separated: any other is
 * refused, so that a misspelt "priorty" or "timeout" is not silently a normal
 * job without a deadline. */
static const char *const op_fields[_KOP_MAX] = {
        [KOP_HELLO] = "token,client",
        [KOP_SUBMIT] = "kind,params,priority,timeout_ms,key,cache,watch",
        [KOP_STATUS] = "job", [KOP_RESULT] = "job", [KOP_WATCH] = "job", [KOP_CANCEL] = "job",
        [KOP_LIST] = "state,kind,limit,after",
        [KOP_STATS] = "", [KOP_CONFIG_GET] = "",
        [KOP_SUBSCRIBE] = "topic",
        [KOP_CACHE_PURGE] = "kind",
        [KOP_MODEL_PUT] = "name", [KOP_MODEL_LIST] = "", [KOP_MODEL_DELETE] = "name",
        [KOP_VEC_PUT] = "collection,metric,ids", [KOP_VEC_DELETE] = "collection,ids",
        [KOP_VEC_DROP] = "collection", [KOP_VEC_INFO] = "collection", [KOP_VEC_LIST] = "",
};

static bool in_list(const char *list, const char *key, size_t len)
{
        for (const char *p = list; *p;) {
                const char *e = strchr(p, ',');
                size_t n = e ? (size_t)(e - p) : strlen(p);
                if (n == len && memcmp(p, key, len) == 0)
                        return true;
                p += n + (e ? 1 : 0);
        }
        return false;
}

/* See proto_internal.h. */
int proto_check_fields(const struct proto_req *r, struct proto_error *err)
{
        const char *key, *takes = op_fields[r->op] ? op_fields[r->op] : "";
        json_t *v;
        size_t len;

        json_object_keylen_foreach(r->root, key, len, v) {
                (void)v;
                if ((len == 2 && !memcmp(key, "op", 2)) || (len == 3 && !memcmp(key, "ref", 3)) ||
                    in_list(takes, key, len))
                        continue;
                char field[64];
                snprintf(field, sizeof(field), "%.*s", proto_echo_len(key, len < 48 ? len : 48), key);
                return proto_fail(err, KERR_BAD_REQUEST, field, "\"%s\" is not a field of %s%s%s%s", field,
                            kiln_op_name(r->op), *takes ? " (it takes " : ", which takes none", takes,
                            *takes ? ")" : "");
        }
        return 0;
}

/* See proto.h. A number past what kilnd can hold is JSON all the same: within
 * params it is a bad parameter, as any other value out of range. */
int proto_json_refused(const char *text, size_t len, const json_error_t *jerr, struct proto_error *err)
{
        static const struct {
                const char *text, *why;
                bool range;
        } named[] = {
                { "too big integer", "is an integer past the 64-bit range", true },
                { "too big negative integer", "is an integer past the 64-bit range", true },
                { "real number overflow", "is a number past the range of a double", true },
                { "duplicate object key", "appears twice in its object", false },
                { "\\u0000 is not allowed", "holds a NUL character (\\u0000), which kilnd does not take", false },
                { "invalid token near 'NaN'", "is NaN, which is not JSON (a missing value is null)", false },
                { "invalid token near 'Infinity'", "is Infinity, which is not JSON", false },
                { "invalid token near '-'", "is not a JSON value (-Infinity is not JSON)", false },
                { "invalid token near", "is not a JSON value", false },
        };
        char path[sizeof(err->field)];

        for (size_t i = 0; i < N_ELEMS(named); i++)
                if (!strncmp(jerr->text, named[i].text, strlen(named[i].text)) && jerr->position >= 0 &&
                    json_path_at(text, len, (size_t)jerr->position, path, sizeof(path)) == 0 && path[0]) {
                        bool param = named[i].range && !strncmp(path, "params", 6) &&
                                     (path[6] == '.' || path[6] == '[' || !path[6]);
                        return proto_fail(err, param ? KERR_BAD_PARAMS : KERR_BAD_REQUEST, path,
                                          "\"%s\" %s (at byte %d)", path, named[i].why, jerr->position);
                }
        return proto_fail(err, KERR_BAD_REQUEST, "", "malformed JSON: %s (at byte %d)", jerr->text, jerr->position);
}

/* The end of the JSON value at text[i] (a string, an object or array skipped
 * bracket by bracket, or a literal or number up to its delimiter), or `len` when
 * it does not end. Nothing in it is checked but the brackets' balance. */
static size_t skip_value(const char *text, size_t len, size_t i)
{
        size_t depth = 0;
        bool in_string = false;

        for (; i < len; i++) {
                char c = text[i];
                if (in_string) {
                        if (c == '\\') {
                                i++;
                        } else if (c == '"') {
                                in_string = false;
                                if (!depth)
                                        return i + 1;
                        }
                } else if (c == '"') {
                        in_string = true;
                } else if (c == '{' || c == '[') {
                        depth++;
                } else if (c == '}' || c == ']') {
                        if (!depth)
                                return i; /* the end of the enclosing object */
                        if (!--depth)
                                return i + 1;
                } else if (!depth && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
                        return i;
                }
        }
        return len;
}

static size_t skip_space(const char *text, size_t len, size_t i)
{
        while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
                i++;
        return i;
}

/* The top-level "ref" of an object whose text jansson cannot read at all (a
 * number elsewhere that overflows a double, nesting past jansson's depth): its
 * members are walked without reading their values, up to the object's closing
 * brace at the end of the text (a message cut short echoes nothing: its ref may be
 * cut too), and the value of "ref", when it is valid JSON of its own, is read
 * alone. NULL when there is none. */
static json_t *scanned_ref(const char *text, size_t len)
{
        size_t i = skip_space(text, len, 0), ref_at = 0, ref_end = 0;

        if (i == len || text[i] != '{')
                return NULL;
        for (i++;;) {
                i = skip_space(text, len, i);
                if (i == len || text[i] != '"')
                        return NULL;
                size_t key = i + 1, end = skip_value(text, len, i);
                bool is_ref = end - key == 4 && !memcmp(text + key, "ref\"", 4);
                i = skip_space(text, len, end);
                if (i == len || text[i] != ':')
                        return NULL;
                size_t v = skip_space(text, len, i + 1);
                end = skip_value(text, len, v);
                if (is_ref) {
                        ref_at = v;
                        ref_end = end;
                }
                i = skip_space(text, len, end);
                if (i < len && text[i] == '}' && skip_space(text, len, i + 1) == len)
                        break;
                if (i == len || text[i] != ',')
                        return NULL;
                i++;
        }
        json_t *ref = ref_end > ref_at ? json_loadb(text + ref_at, ref_end - ref_at, JSON_DECODE_ANY, NULL) : NULL;
        if (ref && (json_is_string(ref) || json_is_integer(ref) || json_is_boolean(ref) || json_is_null(ref)))
                return ref;
        json_decref(ref);
        return NULL;
}

/* The "ref" of a message the strict parse refused although it is JSON, for the
 * error reply to echo: a duplicate key, a "\u0000" in a string, an integer past
 * int64. It is read again with duplicates and NUL allowed, which keeps every value
 * as it was written (so it also names the parts sent with it). Only when that too
 * fails (an integer past int64) is it read with integers as reals; then a ref that
 * is a string, a literal or an integer below 2^53 (which a real holds exactly) is
 * echoed, and none of any other kind, which could not be echoed as it was written.
 * When even that fails (1e400 overflows a double; nesting too deep), the members
 * are walked as text (scanned_ref). NULL when there is none. */
json_t *proto_lenient_ref(const char *text, size_t len)
{
        json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, NULL), *ref;

        if (root) {
                ref = json_is_object(root) ? json_incref(json_object_get(root, "ref")) : NULL;
                json_decref(root);
                return ref;
        }
        root = json_loadb(text, len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, NULL);
        if (!root)
                return scanned_ref(text, len);
        ref = json_is_object(root) ? json_object_get(root, "ref") : NULL;
        if (json_is_real(ref) && fabs(json_real_value(ref)) < 9007199254740992.0 &&
            json_real_value(ref) == trunc(json_real_value(ref)))
                ref = json_integer((json_int_t)json_real_value(ref));
        else if (json_is_string(ref) || json_is_boolean(ref) || json_is_null(ref))
                json_incref(ref);
        else
                ref = NULL;
        json_decref(root);
        return ref;
}
