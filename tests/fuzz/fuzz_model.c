/* libFuzzer target: one upload through the risk.model class (model.c's own JSON
 * reader, xjson.c, and every check of an XGBoost model); a model that compiles is
 * scored, and the unrolled, blocked and plain walks must give the same margins. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "risk_score/forest.h"
#include "risk_score/model.h"

#define ROWS (2 * RISK_BLOCK_ROWS + 3)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct risk_forest *f = NULL;
        struct kiln_error err;

        if (risk_forest_compile(data, size, &f, &err) < 0 || f->n_features > 4096) {
                risk_forest_free(f);
                return 0;
        }
        /* Rows from the input's bytes, with the values that matter: 0, -0, NaN, inf. */
        static const float special[] = { 0.0f, -0.0f, NAN, INFINITY, -INFINITY, 0.5f, -1.0f, 3.4e38f };
        float *rows = malloc((size_t)ROWS * f->n_features * sizeof(float));
        float wide[ROWS];
        if (rows) {
                for (size_t i = 0; i < (size_t)ROWS * f->n_features; i++)
                        rows[i] = size ? (float)(int8_t)data[i % size] / 16.0f : 0.0f;
                for (size_t i = 0; i < (size_t)ROWS * f->n_features; i += 3)
                        rows[i] = special[(i / 3) % (sizeof(special) / sizeof(special[0]))];
                risk_forest_margins(f, rows, ROWS, wide);
                struct risk_view v = risk_view_of(f);
                for (size_t r = 0; r < ROWS; r++) {
                        const float *x = rows + r * f->n_features;
                        float plain = risk_forest_margin(f, x), unrolled = risk_view_margin(&v, x);
                        if (memcmp(&plain, &wide[r], sizeof(float)) || memcmp(&plain, &unrolled, sizeof(float)))
                                abort(); /* the walks disagree */
                        (void)risk_sigmoid(plain);
                }
        }
        free(rows);
        risk_forest_free(f);
        return 0;
}
