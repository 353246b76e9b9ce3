/* KEY=VALUE words to a job's JSON parameters, typed by the kind's schema. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl.h"
#include "kind.h"

/* Finds the schema entry for a dotted key, descending into object fields; NULL
 * when the kind or any segment is unknown. `key` is modified temporarily. */
static const struct kiln_param *schema_lookup(const struct kiln_param *params, char *key)
{
        char *dot = strchr(key, '.');

        if (dot)
                *dot = '\0';
        const struct kiln_param *found = NULL;
        for (const struct kiln_param *p = params; p && p->name; p++)
                if (!strcmp(p->name, key)) {
                        found = p;
                        break;
                }
        if (dot) {
                *dot = '.';
                if (!found || found->type != KILN_PARAM_OBJECT)
                        return NULL;
                return schema_lookup(found->fields, dot + 1);
        }
        return found;
}

/* The value as JSON when it parses as JSON, else as a string. */
static json_t *guess(const char *v)
{
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        return j ? j : json_string(v);
}

static bool parse_double(const char *v, double *ret)
{
        char *end;

        if (!*v)
                return false;
        errno = 0;
        double d = strtod(v, &end);
        if (*end || errno || !isfinite(d))
                return false;
        *ret = d;
        return true;
}

static json_t *parse_bool(const char *v)
{
        static const char *const yes[] = { "true", "yes", "on", "1" }, *const no[] = { "false", "no", "off", "0" };

        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                if (!strcasecmp(v, yes[i]))
                        return json_true();
                if (!strcasecmp(v, no[i]))
                        return json_false();
        }
        return json_string(v);
}

static json_t *parse_set(const char *v)
{
        if (*v == '[')
                return guess(v);
        json_t *a = json_array();
        const char *p = v;
        while (a && *p) {
                size_t n = strcspn(p, ",");
                if (n && json_array_append_new(a, json_stringn(p, n)) < 0) {
                        json_decref(a);
                        return NULL;
                }
                p += n;
                if (*p == ',')
                        p++;
        }
        return a;
}

/* Converts one value to the JSON type its schema entry asks for. */
static json_t *convert(const struct kiln_param *p, const char *v)
{
        double d;

        if (!p)
                return guess(v);
        switch (p->type) {
        case KILN_PARAM_NUMBER:
                return parse_double(v, &d) ? json_real(d) : json_string(v);
        case KILN_PARAM_INTEGER:
                /* "1e3" is an integer too; a fraction goes as a real for the server to refuse. */
                if (!parse_double(v, &d))
                        return json_string(v);
                if (d == floor(d) && fabs(d) < 9007199254740992.0)
                        return json_integer((json_int_t)d);
                return json_real(d);
        case KILN_PARAM_BOOL:
                return parse_bool(v);
        case KILN_PARAM_STRING:
                return json_string(v);
        case KILN_PARAM_STRING_SET:
                return parse_set(v);
        case KILN_PARAM_OBJECT:
                return guess(v);
        }
        return json_string(v);
}

/* Sets root[a][b]...[leaf] = value (stolen), creating objects on the way.
 * -EEXIST when the leaf is already set (a key given twice). */
static int set_dotted(json_t *root, char *key, json_t *value)
{
        json_t *o = root;
        char *seg = key, *dot;

        while ((dot = strchr(seg, '.'))) {
                *dot = '\0';
                json_t *next = json_object_get(o, seg);
                if (next && !json_is_object(next)) { /* "a=1 a.b=2" */
                        *dot = '.';
                        json_decref(value);
                        return -EEXIST;
                }
                if (!next) {
                        next = json_object();
                        if (!next || json_object_set_new(o, seg, next) < 0) {
                                json_decref(value);
                                return -ENOMEM;
                        }
                }
                *dot = '.';
                o = next;
                seg = dot + 1;
        }
        if (json_object_get(o, seg)) {
                json_decref(value);
                return -EEXIST;
        }
        return json_object_set_new(o, seg, value) < 0 ? -ENOMEM : 0;
}

static bool key_ok(const char *key)
{
        /* no empty segment: "", ".a", "a.", "a..b" */
        if (!*key || *key == '.' || key[strlen(key) - 1] == '.' || strstr(key, ".."))
                return false;
        return true;
}

int ctl_params_from_words(const char *kind, char *const *words, int n, json_t **ret, char *err, size_t err_size)
{
        const struct kiln_kind *k = kiln_kind_find(kind);
        json_t *params = json_object();

        if (!params) {
                snprintf(err, err_size, "out of memory");
                return -ENOMEM;
        }
        for (int i = 0; i < n; i++) {
                const char *eq = strchr(words[i], '=');
                if (!eq) {
                        snprintf(err, err_size, "\"%s\" is not KEY=VALUE", words[i]);
                        json_decref(params);
                        return -EINVAL;
                }
                char *key = strndup(words[i], (size_t)(eq - words[i]));
                if (!key || !key_ok(key)) {
                        int r = key ? -EINVAL : -ENOMEM;
                        snprintf(err, err_size, key ? "\"%s\" has an empty key" : "out of memory", words[i]);
                        free(key);
                        json_decref(params);
                        return r;
                }
                json_t *v = convert(k ? schema_lookup(k->params, key) : NULL, eq + 1);
                int r = v ? set_dotted(params, key, v) : -ENOMEM;
                if (r == -EEXIST)
                        snprintf(err, err_size, "%s is given twice", key);
                else if (r < 0)
                        snprintf(err, err_size, "out of memory");
                free(key);
                if (r < 0) {
                        json_decref(params);
                        return r == -EEXIST ? -EINVAL : r;
                }
        }
        *ret = params;
        return 0;
}
