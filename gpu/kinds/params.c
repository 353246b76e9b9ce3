/* Generic validation of job parameters against a kind's schema (see params.h).
 *
 * The schema table (struct kiln_param) drives everything: types, bounds, choices,
 * defaults and nested objects. The output is a new canonical object in which every
 * default is filled and numbers are normalised, so that equal parameters dump to
 * byte-identical JSON (the cache and coalescing key). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"

/* json_int_t is 64-bit; doubles at or beyond 2^63 do not convert. */
#define INT_LIMIT 9223372036854775808.0

static int fail_nomem(struct kiln_error *err, const char *field)
{
        if (err) {
                snprintf(err->field, sizeof(err->field), "%s", field);
                snprintf(err->message, sizeof(err->message), "out of memory while validating %s", field);
        }
        return -ENOMEM;
}

/* "a, b, c" from a NULL-terminated list, truncated to fit. */
static void join_choices(const char *const *choices, char *buf, size_t size)
{
        size_t used = 0;

        buf[0] = '\0';
        for (size_t i = 0; choices && choices[i] && used < size; i++) {
                int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", choices[i]);
                if (n < 0)
                        break;
                used += (size_t)n;
        }
}

static int choice_index(const char *const *choices, const char *s)
{
        for (int i = 0; choices && choices[i]; i++)
                if (strcmp(choices[i], s) == 0)
                        return i;
        return -1;
}

/* Checks a finite value against the parameter's finite bounds. */
static int check_bounds(const struct kiln_param *p, double d, const char *field, struct kiln_error *err)
{
        bool has_min = isfinite(p->min), has_max = isfinite(p->max);
        bool low = has_min && (p->min_exclusive ? d <= p->min : d < p->min);
        bool high = has_max && d > p->max;

        if (!low && !high)
                return 0;
        if (has_min && has_max)
                return p->min_exclusive ? kiln_error_set(err, field, "%s must be greater than %g and at most %g", field,
                                                         p->min, p->max)
                                        : kiln_error_set(err, field, "%s must be between %g and %g", field, p->min,
                                                         p->max);
        if (has_min)
                return p->min_exclusive ? kiln_error_set(err, field, "%s must be greater than %g", field, p->min)
                                        : kiln_error_set(err, field, "%s must be at least %g", field, p->min);
        return kiln_error_set(err, field, "%s must be at most %g", field, p->max);
}

static int validate_object(const struct kiln_kind *kind, const struct kiln_param *fields, const json_t *in,
                           const char *prefix, void *typed, json_t **ret, struct kiln_error *err);

static int validate_number(const struct kiln_param *p, const json_t *v, const char *field, json_t **ret,
                           struct kiln_error *err)
{
        if (!json_is_number(v))
                return kiln_error_set(err, field, "%s must be a number", field);
        double d = json_number_value(v);
        if (!isfinite(d))
                return kiln_error_set(err, field, "%s must be a finite number", field);
        int r = check_bounds(p, d, field, err);
        if (r < 0)
                return r;
        *ret = json_real(d);
        return *ret ? 0 : fail_nomem(err, field);
}

static int validate_integer(const struct kiln_param *p, const json_t *v, const char *field, json_t **ret,
                            struct kiln_error *err)
{
        bool is_int = json_is_integer(v);
        double d;
        int r;

        if (!is_int && !json_is_real(v))
                return kiln_error_set(err, field, "%s must be an integer", field);
        d = is_int ? (double)json_integer_value(v) : json_real_value(v);
        if (!isfinite(d) || d != floor(d))
                return kiln_error_set(err, field, "%s must be an integer", field);
        r = check_bounds(p, d, field, err);
        if (r < 0)
                return r;
        if (!is_int && fabs(d) >= INT_LIMIT)
                return kiln_error_set(err, field, "%s must be an integer within 64 bits", field);
        *ret = json_integer(is_int ? json_integer_value(v) : (json_int_t)d);
        return *ret ? 0 : fail_nomem(err, field);
}

static int validate_string(const struct kiln_param *p, const json_t *v, const char *field, json_t **ret,
                           struct kiln_error *err)
{
        char list[200];

        if (!json_is_string(v))
                return kiln_error_set(err, field, "%s must be a string", field);
        if (p->choices && choice_index(p->choices, json_string_value(v)) < 0) {
                join_choices(p->choices, list, sizeof(list));
                return kiln_error_set(err, field, "%s must be one of %s", field, list);
        }
        *ret = json_stringn(json_string_value(v), json_string_length(v));
        return *ret ? 0 : fail_nomem(err, field);
}

/* An array of distinct strings: with choices, members of them, returned in schema
 * order; without choices, any strings, returned in first-seen order. */
static int validate_string_set(const struct kiln_param *p, const json_t *v, const char *field, json_t **ret,
                               struct kiln_error *err)
{
        char list[200], item[160];
        size_t n_choices = 0, idx;
        bool *seen = NULL;
        json_t *out, *e;

        if (!json_is_array(v))
                return kiln_error_set(err, field, "%s must be an array of strings", field);
        while (p->choices && p->choices[n_choices])
                n_choices++;
        if (n_choices) {
                seen = calloc(n_choices, sizeof(*seen));
                if (!seen)
                        return fail_nomem(err, field);
        }
        out = json_array();
        if (!out) {
                free(seen);
                return fail_nomem(err, field);
        }

        int r = 0;
        /* The item's field name and the list of choices are written only for an
         * error: a valid set costs no formatting. */
        json_array_foreach(v, idx, e) {
                if (!json_is_string(e)) {
                        snprintf(item, sizeof(item), "%s[%zu]", field, idx);
                        r = kiln_error_set(err, item, "%s must be a string", item);
                        break;
                }
                const char *s = json_string_value(e);
                if (p->choices) {
                        int k = choice_index(p->choices, s);
                        if (k < 0) {
                                snprintf(item, sizeof(item), "%s[%zu]", field, idx);
                                join_choices(p->choices, list, sizeof(list));
                                r = kiln_error_set(err, item, "%s must be one of %s", item, list);
                                break;
                        }
                        seen[k] = true;
                        continue;
                }
                bool dup = false;
                for (size_t k = 0; k < json_array_size(out) && !dup; k++)
                        dup = strcmp(json_string_value(json_array_get(out, k)), s) == 0;
                if (!dup && json_array_append_new(out, json_string(s)) < 0) {
                        r = fail_nomem(err, field);
                        break;
                }
        }
        for (size_t k = 0; r == 0 && k < n_choices; k++)
                if (seen[k] && json_array_append_new(out, json_string(p->choices[k])) < 0)
                        r = fail_nomem(err, field);
        free(seen);
        if (r == 0 && json_array_size(out) == 0) {
                if (p->choices)
                        join_choices(p->choices, list, sizeof(list));
                r = p->choices ? kiln_error_set(err, field, "%s must name at least one of %s", field, list)
                               : kiln_error_set(err, field, "%s must name at least one string", field);
        }
        if (r < 0) {
                json_decref(out);
                return r;
        }
        *ret = out;
        return 0;
}

/* Validates one value of parameter `p`; `field` is its full name. */
static int validate_value(const struct kiln_kind *kind, const struct kiln_param *p, const json_t *v,
                          const char *field, void *typed, json_t **ret, struct kiln_error *err)
{
        switch (p->type) {
        case KILN_PARAM_NUMBER:
                return validate_number(p, v, field, ret, err);
        case KILN_PARAM_INTEGER:
                return validate_integer(p, v, field, ret, err);
        case KILN_PARAM_BOOL:
                if (!json_is_boolean(v))
                        return kiln_error_set(err, field, "%s must be true or false", field);
                *ret = json_boolean(json_is_true(v));
                return 0;
        case KILN_PARAM_STRING:
                return validate_string(p, v, field, ret, err);
        case KILN_PARAM_STRING_SET:
                return validate_string_set(p, v, field, ret, err);
        case KILN_PARAM_OBJECT:
                if (!json_is_object(v))
                        return kiln_error_set(err, field, "%s must be an object", field);
                return validate_object(kind, p->fields, v, field, typed, ret, err);
        }
        return kiln_error_set(err, field, "%s has an unknown type in the schema of %s", field, kind->name);
}

static const struct kiln_param *find_field(const struct kiln_param *fields, const char *name)
{
        for (size_t i = 0; fields && fields[i].name; i++)
                if (strcmp(fields[i].name, name) == 0)
                        return &fields[i];
        return NULL;
}

/* Whether `key` is the params field of one of the kind's inputs (lifted into an
 * input array by kiln_inputs_from_params, not a schema parameter). */
static bool is_input_param(const struct kiln_kind *kind, const char *key)
{
        for (size_t i = 0; kind->inputs && kind->inputs[i].name; i++)
                if (kind->inputs[i].json_param && strcmp(kind->inputs[i].json_param, key) == 0)
                        return true;
        return false;
}

static size_t n_choices(const char *const *choices)
{
        size_t n = 0;
        while (choices && choices[n])
                n++;
        return n;
}

/* Whether the schema's storage of `p` is one the validator can write. */
static bool storage_ok(const struct kiln_param *p)
{
        if (p->size == 0)
                return true;
        switch (p->type) {
        case KILN_PARAM_NUMBER: return p->size == sizeof(double) || p->size == sizeof(float);
        case KILN_PARAM_INTEGER: return p->size == sizeof(int32_t) || p->size == sizeof(int64_t);
        case KILN_PARAM_BOOL: return p->size == sizeof(bool);
        case KILN_PARAM_STRING: return p->choices ? p->size == sizeof(int) : p->size >= 2;
        case KILN_PARAM_STRING_SET: return p->choices && n_choices(p->choices) <= 32 && p->size == sizeof(uint32_t);
        case KILN_PARAM_OBJECT: return false;
        }
        return false;
}

/* Writes the canonical value `v` of `p` into the typed struct at p->offset. */
static int store_value(const struct kiln_kind *kind, const struct kiln_param *p, const json_t *v, const char *field,
                       void *typed, struct kiln_error *err)
{
        unsigned char *at = (unsigned char *)typed + p->offset;

        if (p->size == 0 || !typed)
                return 0;
        if (!storage_ok(p) || p->offset + p->size > kind->params_size)
                return kiln_error_set(err, field, "%s has an unusable storage in the schema of %s", field, kind->name);
        switch (p->type) {
        case KILN_PARAM_NUMBER:
                if (p->size == sizeof(double)) {
                        double d = json_number_value(v);
                        memcpy(at, &d, sizeof(d));
                } else {
                        float f = (float)json_number_value(v);
                        memcpy(at, &f, sizeof(f));
                }
                return 0;
        case KILN_PARAM_INTEGER: {
                json_int_t i = json_integer_value(v);
                if (p->size == sizeof(int64_t)) {
                        int64_t x = (int64_t)i;
                        memcpy(at, &x, sizeof(x));
                        return 0;
                }
                if (i < INT32_MIN || i > INT32_MAX)
                        return kiln_error_set(err, field, "%s must be an integer within 32 bits", field);
                int32_t x = (int32_t)i;
                memcpy(at, &x, sizeof(x));
                return 0;
        }
        case KILN_PARAM_BOOL: {
                bool b = json_is_true(v);
                memcpy(at, &b, sizeof(b));
                return 0;
        }
        case KILN_PARAM_STRING:
                if (p->choices) {
                        int idx = choice_index(p->choices, json_string_value(v));
                        memcpy(at, &idx, sizeof(idx));
                        return 0;
                }
                /* One that is required, or has no default (given, it names something: a
                 * model, a collection, a stored id), is never empty. */
                bool named = p->required || !p->def;
                if (json_string_length(v) >= p->size || strlen(json_string_value(v)) != json_string_length(v) ||
                    (named && json_string_length(v) == 0))
                        return kiln_error_set(err, field, "%s must be a string of %s%zu bytes without NUL", field,
                                              named ? "1 to " : "at most ", p->size - 1);
                memset(at, 0, p->size);
                memcpy(at, json_string_value(v), json_string_length(v));
                return 0;
        case KILN_PARAM_STRING_SET: {
                uint32_t bits = 0;
                size_t i;
                json_t *e;
                json_array_foreach(v, i, e) {
                        int k = choice_index(p->choices, json_string_value(e));
                        if (k >= 0)
                                bits |= 1u << k;
                }
                memcpy(at, &bits, sizeof(bits));
                return 0;
        }
        case KILN_PARAM_OBJECT:
                break;
        }
        return kiln_error_set(err, field, "%s has an unusable storage in the schema of %s", field, kind->name);
}

/* "prefix.name" into field[128], cut as snprintf would: it is formatted for every
 * parameter of every job, so without snprintf. */
static void field_name(char field[128], const char *prefix, const char *name)
{
        size_t pl = strlen(prefix), nl = strlen(name);
        if (pl > 127)
                pl = 127;
        memcpy(field, prefix, pl);
        if (pl < 127)
                field[pl++] = '.';
        if (nl > 127 - pl)
                nl = 127 - pl;
        memcpy(field + pl, name, nl);
        field[pl + nl] = '\0';
}

/* A schema default as a value. Defaults are JSON texts, mostly a bare number, word
 * or string, which are made directly (as json_loads makes them) rather than through
 * jansson's lexer for every job that leaves them out. */
static json_t *default_value(const char *def)
{
        size_t n = strlen(def);
        if (strcmp(def, "true") == 0)
                return json_true();
        if (strcmp(def, "false") == 0)
                return json_false();
        if (strcmp(def, "null") == 0)
                return json_null();
        if (n >= 2 && def[0] == '"' && def[n - 1] == '"' && !memchr(def + 1, '\\', n - 2) &&
            !memchr(def + 1, '"', n - 2)) {
                for (size_t i = 1; i + 1 < n; i++)
                        if ((unsigned char)def[i] < 0x20 || (unsigned char)def[i] >= 0x80)
                                return json_loads(def, JSON_DECODE_ANY, NULL);
                return json_stringn(def + 1, n - 2);
        }
        /* A plain integer: digits with an optional minus sign, no leading zero. */
        size_t i = def[0] == '-';
        if (i < n && def[i] >= '1' && def[i] <= '9' && n - i <= 15 && strspn(def + i, "0123456789") == n - i)
                return json_integer((json_int_t)strtoll(def, NULL, 10));
        if (strcmp(def, "0") == 0)
                return json_integer(0);
        /* A real: JSON's number grammar with a fraction or an exponent, read with
         * strtod as jansson reads it. */
        i = def[0] == '-';
        size_t d = strspn(def + i, "0123456789");
        bool real = false;
        if (d && (d == 1 || def[i] != '0')) {
                i += d;
                if (def[i] == '.' && (d = strspn(def + i + 1, "0123456789"))) {
                        i += 1 + d;
                        real = true;
                }
                if (def[i] == 'e' || def[i] == 'E') {
                        size_t e = i + 1 + (def[i + 1] == '+' || def[i + 1] == '-');
                        d = strspn(def + e, "0123456789");
                        i = d ? e + d : n + 1; /* an exponent without digits: not this form */
                        real = real || d;
                }
        }
        if (real && i == n) {
                double v = strtod(def, NULL);
                if (isfinite(v))
                        return json_real(v);
        }
        return json_loads(def, JSON_DECODE_ANY, NULL);
}

static int validate_object(const struct kiln_kind *kind, const struct kiln_param *fields, const json_t *in,
                           const char *prefix, void *typed, json_t **ret, struct kiln_error *err)
{
        char field[128];
        const char *key;
        json_t *v, *out;
        bool top = fields == kind->params;

        json_object_foreach((json_t *)in, key, v) {
                if (!find_field(fields, key) && !(top && is_input_param(kind, key))) {
                        field_name(field, prefix, key);
                        return kiln_error_set(err, field, "%s is not a parameter of %s", field, kind->name);
                }
        }

        out = json_object();
        if (!out)
                return fail_nomem(err, prefix);
        for (size_t i = 0; fields && fields[i].name; i++) {
                const struct kiln_param *p = &fields[i];
                json_t *given = json_object_get(in, p->name), *def = NULL, *value = NULL;
                int r;

                field_name(field, prefix, p->name);
                if (!given) {
                        if (p->required) {
                                json_decref(out);
                                return kiln_error_set(err, field, "%s is required", field);
                        }
                        if (!p->def)
                                continue;
                        def = default_value(p->def);
                        if (!def) {
                                json_decref(out);
                                return kiln_error_set(err, field, "%s has an invalid default in the schema of %s",
                                                      field, kind->name);
                        }
                        given = def;
                }
                r = validate_value(kind, p, given, field, typed, &value, err);
                json_decref(def);
                if (r >= 0)
                        r = store_value(kind, p, value, field, typed, err);
                if (r < 0) {
                        json_decref(value);
                        json_decref(out);
                        return r;
                }
                if (json_object_set_new(out, p->name, value) < 0) {
                        json_decref(out);
                        return fail_nomem(err, field);
                }
        }
        *ret = out;
        return 0;
}

int kiln_params_validate(const struct kiln_kind *kind, const json_t *in, json_t **ret_canonical,
                         void *ret_params, struct kiln_error *err)
{
        json_t *empty = NULL, *canonical = NULL;
        void *typed = NULL;
        int r;

        if (!kind)
                return kiln_error_set(err, "params", "params cannot be checked without a kind");
        if (!in) {
                empty = json_object();
                if (!empty)
                        return fail_nomem(err, "params");
                in = empty;
        }
        if (!json_is_object(in)) {
                json_decref(empty);
                return kiln_error_set(err, "params", "params must be an object");
        }
        typed = calloc(1, kind->params_size ? kind->params_size : 1);
        if (!typed) {
                json_decref(empty);
                return fail_nomem(err, "params");
        }
        r = validate_object(kind, kind->params, in, "params", typed, &canonical, err);
        json_decref(empty);
        if (r >= 0 && kind->finish) {
                struct kiln_error kerr = { .field = "params" };
                r = kind->finish(typed, &kerr);
                if (r < 0) {
                        json_decref(canonical);
                        if (err) {
                                snprintf(err->field, sizeof(err->field), "%s", kerr.field);
                                snprintf(err->message, sizeof(err->message), "%s", kerr.message);
                        }
                }
        }
        if (r < 0) {
                free(typed);
                return r;
        }
        if (ret_params && kind->params_size)
                memcpy(ret_params, typed, kind->params_size);
        free(typed);
        if (ret_canonical)
                *ret_canonical = canonical;
        else
                json_decref(canonical);
        return 0;
}

/* Checks the fields of one (nested) schema table; see kiln_params_schema_check. */
static int check_fields(const struct kiln_kind *kind, const struct kiln_param *fields, const char *prefix,
                        struct kiln_error *err)
{
        char field[128];

        for (size_t i = 0; fields && fields[i].name; i++) {
                const struct kiln_param *p = &fields[i];
                snprintf(field, sizeof(field), "%s.%s", prefix, p->name);
                if (find_field(fields, p->name) != p)
                        return kiln_error_set(err, field, "%s appears twice in the schema of %s", field, kind->name);
                if (p->type == KILN_PARAM_OBJECT) {
                        if (p->size != 0)
                                return kiln_error_set(err, field, "%s is an object and cannot be stored", field);
                        int r = check_fields(kind, p->fields, field, err);
                        if (r < 0)
                                return r;
                } else if (!storage_ok(p) || (p->size && p->offset + p->size > kind->params_size)) {
                        return kiln_error_set(err, field, "%s has an unusable storage in the schema of %s", field,
                                              kind->name);
                }
                if (p->def) {
                        json_t *def = json_loads(p->def, JSON_DECODE_ANY, NULL), *value = NULL;
                        int r = def ? validate_value(kind, p, def, field, NULL, &value, err)
                                    : kiln_error_set(err, field, "%s has an invalid default in the schema of %s", field,
                                                     kind->name);
                        json_decref(def);
                        json_decref(value);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int kiln_params_schema_check(const struct kiln_kind *kind, struct kiln_error *err)
{
        if (!kind || !kind->name || !kind->run_cpu)
                return kiln_error_set(err, "kind", "a kind needs a name and a CPU implementation");
        int r = check_fields(kind, kind->params, "params", err);
        if (r < 0)
                return r;
        for (size_t i = 0; kind->inputs && kind->inputs[i].name; i++) {
                const struct kiln_input_spec *s = &kind->inputs[i];
                char field[128];
                snprintf(field, sizeof(field), "inputs.%s", s->name);
                if (strlen(s->name) >= KILN_NAME_MAX || !s->dtypes || s->ndim < 0 || s->ndim > 4)
                        return kiln_error_set(err, field, "%s is not a usable input spec of %s", field, kind->name);
                if (s->json_param &&
                    (find_field(kind->params, s->json_param) ||
                     (kiln_input_json_dtype(s) < 0 && !(s->dtypes & KILN_DTYPE_BIT(KILN_DTYPE_BYTES)))))
                        return kiln_error_set(err, field, "%s: params.%s cannot carry it as JSON in %s", field,
                                              s->json_param, kind->name);
                for (size_t k = 0; k < i; k++)
                        if (!strcmp(kind->inputs[k].name, s->name) ||
                            (s->json_param && kind->inputs[k].json_param &&
                             !strcmp(kind->inputs[k].json_param, s->json_param)))
                                return kiln_error_set(err, field, "%s appears twice in the inputs of %s", field,
                                                      kind->name);
        }
        if (kind->object) {
                const struct kiln_param *p = kind->object_param ? find_field(kind->params, kind->object_param) : NULL;
                if (!p || p->type != KILN_PARAM_STRING || !p->required || p->choices)
                        return kiln_error_set(err, "params",
                                              "%s takes an object: its object_param must name a required free "
                                              "string of its schema",
                                              kind->name);
                for (size_t i = 0; kind->builtin_objects && kind->builtin_objects[i]; i++)
                        if (!kind->builtin_objects[i][0] || strlen(kind->builtin_objects[i]) >= p->size)
                                return kiln_error_set(err, "params",
                                                      "%s: built-in object \"%s\" does not fit params.%s", kind->name,
                                                      kind->builtin_objects[i], p->name);
        } else if (kind->builtin_objects) {
                return kiln_error_set(err, "params", "%s has built-in objects but no object class", kind->name);
        }
        return 0;
}

const char *kiln_params_object_name(const struct kiln_kind *kind, const json_t *canonical)
{
        if (!kind || !kind->object || !kind->object_param)
                return NULL;
        const char *name = json_string_value(json_object_get(canonical, kind->object_param));
        /* A built-in object is the kind's own: nothing stored to look up or bind. */
        for (size_t i = 0; name && kind->builtin_objects && kind->builtin_objects[i]; i++)
                if (strcmp(kind->builtin_objects[i], name) == 0)
                        return NULL;
        return name;
}

static const char *type_name(enum kiln_param_type t)
{
        switch (t) {
        case KILN_PARAM_NUMBER: return "number";
        case KILN_PARAM_INTEGER: return "integer";
        case KILN_PARAM_BOOL: return "bool";
        case KILN_PARAM_STRING: return "string";
        case KILN_PARAM_STRING_SET: return "string_set";
        case KILN_PARAM_OBJECT: return "object";
        }
        return "unknown";
}

static json_t *schema_fields(const struct kiln_param *fields);

/* Sets key to a new value; false (and frees nothing twice) when value is NULL. */
static bool set_new(json_t *o, const char *key, json_t *value)
{
        return value && json_object_set_new(o, key, value) == 0;
}

static json_t *schema_param(const struct kiln_param *p)
{
        json_t *o = json_object();
        bool ok = o != NULL;

        ok = ok && set_new(o, "name", json_string(p->name));
        ok = ok && set_new(o, "type", json_string(type_name(p->type)));
        ok = ok && set_new(o, "required", json_boolean(p->required));
        if (p->type == KILN_PARAM_NUMBER || p->type == KILN_PARAM_INTEGER) {
                bool integer = p->type == KILN_PARAM_INTEGER;
                if (isfinite(p->min))
                        ok = ok && set_new(o, "min", integer ? json_integer((json_int_t)p->min) : json_real(p->min));
                if (isfinite(p->max))
                        ok = ok && set_new(o, "max", integer ? json_integer((json_int_t)p->max) : json_real(p->max));
                ok = ok && set_new(o, "min_exclusive", json_boolean(p->min_exclusive));
        }
        if (ok && p->def) {
                json_t *def = json_loads(p->def, JSON_DECODE_ANY, NULL);
                ok = set_new(o, "default", def ? def : json_null());
        }
        if (p->choices) {
                json_t *c = json_array();
                for (size_t i = 0; c && p->choices[i]; i++)
                        if (json_array_append_new(c, json_string(p->choices[i])) < 0) {
                                json_decref(c);
                                c = NULL;
                        }
                ok = ok && set_new(o, "choices", c);
        }
        if (p->type == KILN_PARAM_OBJECT)
                ok = ok && set_new(o, "fields", schema_fields(p->fields));
        if (p->doc)
                ok = ok && set_new(o, "doc", json_string(p->doc));
        if (!ok) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *schema_fields(const struct kiln_param *fields)
{
        json_t *a = json_array();

        for (size_t i = 0; a && fields && fields[i].name; i++) {
                if (json_array_append_new(a, schema_param(&fields[i])) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

json_t *kiln_params_schema_json(const struct kiln_kind *kind)
{
        if (!kind)
                return NULL;
        json_t *a = schema_fields(kind->params);
        /* The object param lists the names that need no stored object. */
        for (size_t i = 0; a && kind->builtin_objects && kind->object_param && i < json_array_size(a); i++) {
                json_t *p = json_array_get(a, i);
                if (strcmp(json_string_value(json_object_get(p, "name")), kind->object_param) != 0)
                        continue;
                json_t *b = json_array();
                for (size_t k = 0; b && kind->builtin_objects[k]; k++)
                        if (json_array_append_new(b, json_string(kind->builtin_objects[k])) < 0) {
                                json_decref(b);
                                b = NULL;
                        }
                if (!set_new(p, "builtin", b)) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}
