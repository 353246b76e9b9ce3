/* kilnctl's --rows reader (daemon/ctl/rows.c), CSV side: a header line, missing
 * values, and numbers JSON rows would refuse (past float32's range, inf, hex)
 * refused the same way, naming the line and column. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl.h"
#include "unit_tmpdir.h"

static char dir[PATH_MAX];

static int setup(void **state)
{
        unit_tmpdir_make("ctl-rows", dir, sizeof(dir));
        return 0;
}

static int teardown(void **state)
{
        unit_tmpdir_remove(dir);
        return 0;
}

/* Writes `text` to DIR/rows.csv and reads it back. */
static int read_text(const char *text, float **rows, uint64_t *n, uint64_t *cols, char *err, size_t err_size)
{
        char path[PATH_MAX + 16];
        FILE *f;

        snprintf(path, sizeof(path), "%s/rows.csv", dir);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        *rows = NULL;
        return ctl_rows_read(path, rows, n, cols, err, err_size);
}

static void test_header_missing_values_and_line_endings(void **state)
{
        float *rows;
        uint64_t n, cols;
        char err[512];

        assert_int_equal(read_text("a,b,c\r\n1,,NA\r\n-0,1e-50,3.4028235e38\r\n\r\n4,null,nan", &rows, &n, &cols, err,
                                   sizeof(err)),
                         0);
        assert_int_equal(n, 3);
        assert_int_equal(cols, 3);
        assert_true(rows[0] == 1.0f && isnan(rows[1]) && isnan(rows[2]));
        assert_true(rows[3] == 0.0f && signbit(rows[3]));
        assert_true(rows[4] == 0.0f); /* below float32's range: 0, as in JSON rows */
        assert_true(rows[5] == FLT_MAX);
        assert_true(rows[6] == 4.0f && isnan(rows[7]) && isnan(rows[8]));
        free(rows);
}

static void test_numbers_json_rows_refuse_are_refused(void **state)
{
        static const char *const bad[] = { "1,1e39\n", "1,-1e39\n", "1,inf\n", "1,-Infinity\n", "1,0x1p3\n",
                                           "1,3.4028236e38\n" };
        float *rows;
        uint64_t n, cols;
        char err[512];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char text[64];
                snprintf(text, sizeof(text), "2,3\n%s", bad[i]);
                if (read_text(text, &rows, &n, &cols, err, sizeof(err)) != -EINVAL)
                        fail_msg("took %s", bad[i]);
                assert_non_null(strstr(err, "line 2, column 2: not a number in float32's range"));
                assert_null(rows);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_header_missing_values_and_line_endings, setup, teardown),
                cmocka_unit_test_setup_teardown(test_numbers_json_rows_refuse_are_refused, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
