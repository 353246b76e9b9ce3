/* Why a message is refused before its op is looked at: the JSON jansson would not
 * take, named by the path of the value at fault (json_path_at), and fields an op
 * does not take. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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
