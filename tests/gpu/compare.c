/* Comparing results value by value (see compare.h). */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"

static void __attribute__((format(printf, 2, 3))) bad(struct cmp_stats *st, const char *fmt, ...)
{
        va_list ap;

        st->bad++;
        if (st->first[0])
                return;
        va_start(ap, fmt);
        vsnprintf(st->first, sizeof(st->first), fmt, ap);
        va_end(ap);
}

/* Whether two numbers agree; updates worst and max_abs. */
static bool num_ok(double got, double want, double rtol, double atol, struct cmp_stats *st)
{
        st->values++;
        if (isnan(got) || isnan(want))
                return isnan(got) && isnan(want);
        if (isinf(got) || isinf(want))
                return got == want;
        double err = fabs(got - want), tol = atol + rtol * fabs(want);
        double ratio = tol > 0 ? err / tol : (err > 0 ? INFINITY : 0);
        if (err > st->max_abs)
                st->max_abs = err;
        if (ratio > st->worst)
                st->worst = ratio;
        return ratio <= 1.0;
}

/* Compares two JSON texts token by token: numbers within tolerance, everything
 * else (strings with their escapes, punctuation, literals) byte for byte, outside
 * strings ignoring white space. */
static bool json_ok(const char *a, const char *b, double rtol, double atol, struct cmp_stats *st)
{
        bool ok = true;

        for (;;) {
                while (*a == ' ' || *a == '\n' || *a == '\t' || *a == '\r')
                        a++;
                while (*b == ' ' || *b == '\n' || *b == '\t' || *b == '\r')
                        b++;
                if (!*a || !*b)
                        return ok && !*a && !*b;
                if ((*a == '-' || (*a >= '0' && *a <= '9')) && (*b == '-' || (*b >= '0' && *b <= '9'))) {
                        char *ea, *eb;
                        double x = strtod(a, &ea), y = strtod(b, &eb);
                        if (ea == a || eb == b)
                                return false;
                        ok = num_ok(x, y, rtol, atol, st) && ok;
                        a = ea;
                        b = eb;
                        continue;
                }
                if (*a == '"' && *b == '"') {
                        do {
                                if (*a != *b)
                                        return false;
                                if (*a == '\\' && a[1]) {
                                        if (a[1] != b[1])
                                                return false;
                                        a++;
                                        b++;
                                }
                                a++;
                                b++;
                        } while (*a && *a != '"');
                        if (*a != *b)
                                return false;
                        if (*a) {
                                a++;
                                b++;
                        }
                        continue;
                }
                if (*a != *b)
                        return false;
                a++;
                b++;
        }
}

static void cmp_value(const struct kiln_value *g, const struct kiln_value *w, double rtol, double atol,
                      struct cmp_stats *st)
{
        if (strcmp(g->name, w->name) || g->type != w->type) {
                bad(st, "value %s (type %d) where the CPU has %s (type %d)", g->name, (int)g->type, w->name,
                    (int)w->type);
                return;
        }
        switch (w->type) {
        case KILN_V_NULL:
                st->values++;
                return;
        case KILN_V_NUM:
                if (!num_ok(g->num, w->num, rtol, atol, st))
                        bad(st, "value %s: %.17g, the CPU %.17g", w->name, g->num, w->num);
                return;
        case KILN_V_INT:
                st->values++;
                if (g->i != w->i)
                        bad(st, "value %s: %lld, the CPU %lld", w->name, (long long)g->i, (long long)w->i);
                return;
        case KILN_V_BOOL:
                st->values++;
                if (g->b != w->b)
                        bad(st, "value %s: %d, the CPU %d", w->name, g->b, w->b);
                return;
        case KILN_V_STR:
                st->values++;
                if (strcmp(g->text, w->text))
                        bad(st, "value %s: \"%.60s\", the CPU \"%.60s\"", w->name, g->text, w->text);
                return;
        case KILN_V_JSON:
                if (!json_ok(g->text, w->text, rtol, atol, st))
                        bad(st, "value %s: %.60s, the CPU %.60s", w->name, g->text, w->text);
                return;
        }
        bad(st, "value %s has an unknown type", w->name);
}

static void cmp_part(const struct kiln_part *g, const struct kiln_part *w, double rtol, double atol,
                     struct cmp_stats *st)
{
        bool same_shape = g->ndim == w->ndim;
        for (int d = 0; same_shape && d < w->ndim; d++)
                same_shape = g->shape[d] == w->shape[d];
        if (strcmp(g->name, w->name) || g->dtype != w->dtype || !same_shape || g->bytes != w->bytes) {
                bad(st, "part %s (%s, %zu bytes) where the CPU has %s (%s, %zu bytes)", g->name,
                    kiln_dtype_name(g->dtype), g->bytes, w->name, kiln_dtype_name(w->dtype), w->bytes);
                return;
        }
        size_t n = w->bytes / kiln_dtype_size(w->dtype);
        for (size_t i = 0; i < n; i++) {
                switch (w->dtype) {
                case KILN_DTYPE_F32: {
                        float a, b;
                        memcpy(&a, (const char *)g->data + 4 * i, 4);
                        memcpy(&b, (const char *)w->data + 4 * i, 4);
                        if (!num_ok(a, b, rtol, atol, st))
                                bad(st, "part %s[%zu]: %.9g, the CPU %.9g", w->name, i, (double)a, (double)b);
                        break;
                }
                case KILN_DTYPE_I32:
                case KILN_DTYPE_U32: {
                        uint32_t a, b;
                        memcpy(&a, (const char *)g->data + 4 * i, 4);
                        memcpy(&b, (const char *)w->data + 4 * i, 4);
                        st->values++;
                        if (a != b)
                                bad(st, "part %s[%zu]: %lld, the CPU %lld", w->name, i,
                                    w->dtype == KILN_DTYPE_I32 ? (long long)(int32_t)a : (long long)a,
                                    w->dtype == KILN_DTYPE_I32 ? (long long)(int32_t)b : (long long)b);
                        break;
                }
                case KILN_DTYPE_U8:
                case KILN_DTYPE_BYTES: {
                        unsigned char a = ((const unsigned char *)g->data)[i], b = ((const unsigned char *)w->data)[i];
                        st->values++;
                        if (a != b)
                                bad(st, "part %s[%zu]: %u, the CPU %u", w->name, i, a, b);
                        break;
                }
                }
        }
}

void cmp_results(const struct kiln_result *got, const struct kiln_result *want, double rtol, double atol,
                 struct cmp_stats *st)
{
        if (got->n_parts != want->n_parts || got->n_scalars != want->n_scalars) {
                bad(st, "%d parts and %d values where the CPU has %d and %d", got->n_parts, got->n_scalars,
                    want->n_parts, want->n_scalars);
                return;
        }
        for (int i = 0; i < want->n_scalars; i++)
                cmp_value(&got->scalars[i], &want->scalars[i], rtol, atol, st);
        for (int i = 0; i < want->n_parts; i++)
                cmp_part(&got->parts[i], &want->parts[i], rtol, atol, st);
}
