/* test_backend_ops --self-test: the comparison (compare.c) on made-up results that
 * hold every part dtype and every value type, so that the parity test is known to
 * catch a difference of each kind, also where no GPU exists to produce one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"

int self_test(void);

/* A result with one part of each dtype and one value of each type. */
static int make(struct kiln_result *r)
{
        uint64_t shape[2] = { 2, 3 };
        const enum kiln_dtype dts[] = { KILN_DTYPE_F32, KILN_DTYPE_I32, KILN_DTYPE_U32, KILN_DTYPE_U8,
                                        KILN_DTYPE_BYTES };
        static const char *const names[] = { "f", "i", "u", "b", "raw" };

        memset(r, 0, sizeof(*r));
        for (size_t k = 0; k < 5; k++) {
                struct kiln_part *p = kiln_result_add_part(r, names[k], dts[k], 2, shape);
                if (!p)
                        return -1;
                for (size_t i = 0; i < 6; i++) {
                        if (dts[k] == KILN_DTYPE_F32)
                                ((float *)p->data)[i] = i == 5 ? NAN : 1.5f * (float)i - 2.0f;
                        else if (kiln_dtype_size(dts[k]) == 4)
                                ((int32_t *)p->data)[i] = (int32_t)i * 7 - 3;
                        else
                                ((uint8_t *)p->data)[i] = (uint8_t)(i * 40);
                }
        }
        if (kiln_result_add_scalar(r, "x", 0.25) < 0 || kiln_result_add_scalar(r, "none", NAN) < 0 ||
            kiln_result_add_int(r, "n", 42) < 0 || kiln_result_add_bool(r, "ok", true) < 0 ||
            kiln_result_add_string(r, "s", "a \"b\"") < 0 ||
            kiln_result_add_json(r, "ids", "[[\"a\",\"b\"],[\"c\",\"d\"]]") < 0 ||
            kiln_result_add_json(r, "scores", "[[0.5, -1e-3], [2, null]]") < 0)
                return -1;
        return 0;
}

struct expect {
        const char *what;
        void (*spoil)(struct kiln_result *r);
        size_t bad; /* 0: must pass; else at least one failure */
};

static void nothing(struct kiln_result *r) {}
static void f32_within(struct kiln_result *r) { ((float *)r->parts[0].data)[1] *= 1.0f + 1e-7f; }
static void f32_beyond(struct kiln_result *r) { ((float *)r->parts[0].data)[2] += 1e-3f; }
static void f32_nan(struct kiln_result *r) { ((float *)r->parts[0].data)[0] = NAN; }
static void nan_number(struct kiln_result *r) { ((float *)r->parts[0].data)[5] = 0.0f; }
static void i32_one(struct kiln_result *r) { ((int32_t *)r->parts[1].data)[4] += 1; }
static void u32_one(struct kiln_result *r) { ((uint32_t *)r->parts[2].data)[0] ^= 1u << 31; }
static void u8_one(struct kiln_result *r) { ((uint8_t *)r->parts[3].data)[3] += 1; }
static void bytes_one(struct kiln_result *r) { ((uint8_t *)r->parts[4].data)[5] ^= 0x80; }
static void shape(struct kiln_result *r) { r->parts[2].shape[0] = 3, r->parts[2].shape[1] = 2; }
static void dtype(struct kiln_result *r) { r->parts[1].dtype = KILN_DTYPE_U32; }
static void num_beyond(struct kiln_result *r) { r->scalars[0].num = 0.2501; }
static void num_to_null(struct kiln_result *r) { r->scalars[0].type = KILN_V_NULL; }
static void int_one(struct kiln_result *r) { r->scalars[2].i = 43; }
static void bool_flip(struct kiln_result *r) { r->scalars[3].b = false; }
static void str_other(struct kiln_result *r) { r->scalars[4].text[0] = 'A'; }
static void json_string(struct kiln_result *r) { strchr(r->scalars[5].text, 'c')[0] = 'x'; }
static void json_number_within(struct kiln_result *r)
{
        free(r->scalars[6].text);
        r->scalars[6].text = strdup("[[0.5000000001,-0.001],[2.0,null]]");
}
static void json_number_beyond(struct kiln_result *r)
{
        free(r->scalars[6].text);
        r->scalars[6].text = strdup("[[0.51,-0.001],[2,null]]");
}
static void json_null(struct kiln_result *r)
{
        free(r->scalars[6].text);
        r->scalars[6].text = strdup("[[0.5,-0.001],[2,0]]");
}
static void value_missing(struct kiln_result *r) { r->n_scalars--; }

int self_test(void)
{
        const struct expect all[] = {
                { "identical results", nothing, 0 },
                { "an f32 within rtol", f32_within, 0 },
                { "an f32 beyond the tolerance", f32_beyond, 1 },
                { "an f32 NaN where the CPU has a number", f32_nan, 1 },
                { "an f32 number where the CPU has NaN", nan_number, 1 },
                { "an i32 off by one", i32_one, 1 },
                { "a u32 with its top bit flipped", u32_one, 1 },
                { "a u8 off by one", u8_one, 1 },
                { "a byte changed", bytes_one, 1 },
                { "a part of another shape", shape, 1 },
                { "a part of another dtype", dtype, 1 },
                { "a number beyond the tolerance", num_beyond, 1 },
                { "a null where the CPU has a number", num_to_null, 1 },
                { "an integer off by one", int_one, 1 },
                { "a boolean flipped", bool_flip, 1 },
                { "a string changed", str_other, 1 },
                { "a string inside a JSON value changed", json_string, 1 },
                { "numbers in a JSON value within the tolerance", json_number_within, 0 },
                { "a number in a JSON value beyond the tolerance", json_number_beyond, 1 },
                { "a null in a JSON value where the CPU has a number", json_null, 1 },
                { "a value missing", value_missing, 1 },
        };
        int failures = 0;

        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
                struct kiln_result want, got;
                struct cmp_stats st = { 0 };
                if (make(&want) < 0 || make(&got) < 0) {
                        printf("self-test: out of memory\n");
                        return 1;
                }
                all[i].spoil(&got);
                cmp_results(&got, &want, 1e-5, 1e-6, &st);
                bool ok = all[i].bad ? st.bad > 0 : st.bad == 0;
                printf("%-52s %s (%zu bad%s%s)\n", all[i].what, ok ? "ok" : "WRONG", st.bad, st.first[0] ? ": " : "",
                       st.first);
                failures += !ok;
                /* The spoilers change types and counts: free what make() allocated. */
                got.parts[1].dtype = KILN_DTYPE_I32;
                if (got.scalars[0].type == KILN_V_NULL)
                        got.scalars[0].type = KILN_V_NUM;
                got.n_scalars = want.n_scalars;
                kiln_result_clear(&got);
                kiln_result_clear(&want);
        }
        printf("comparison self-test: %s\n", failures ? "FAILED" : "passed");
        return failures ? 1 : 0;
}
