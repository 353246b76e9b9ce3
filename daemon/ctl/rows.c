/* kilnctl submit --rows FILE: the feature rows of a risk.score job, from a NumPy
 * .npy file (float32 [n][f]) or a CSV file, as the f32 [n][f] part `rows`. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ctl.h"

#define CSV_MAX_BYTES (1ull << 32)

static bool ends_with(const char *s, const char *tail)
{
        size_t n = strlen(s), k = strlen(tail);
        return n >= k && strcasecmp(s + n - k, tail) == 0;
}

static int read_npy(const char *path, float **ret_rows, uint64_t *ret_n, uint64_t *ret_cols, char *err,
                    size_t err_size)
{
        struct ctl_npy h;
        int fd, r = ctl_npy_open_f32_matrix(path, &fd, &h, err, err_size);

        if (r < 0)
                return r;
        uint64_t bytes = h.shape[0] * h.shape[1] * sizeof(float);
        float *rows = bytes <= SIZE_MAX ? malloc((size_t)bytes) : NULL;
        if (!rows) {
                snprintf(err, err_size, "%s: out of memory for %" PRIu64 " bytes of rows", path, bytes);
                close(fd);
                return -ENOMEM;
        }
        r = ctl_pread_all(fd, rows, (size_t)bytes, h.data_offset);
        close(fd);
        if (r < 0) {
                snprintf(err, err_size, "cannot read %s: %s", path, r == -ENODATA ? "it is truncated" : strerror(-r));
                free(rows);
                return r;
        }
        *ret_rows = rows;
        *ret_n = h.shape[0];
        *ret_cols = h.shape[1];
        return 0;
}

/* One CSV field (trimmed) as a float: empty, nan, NA or null is missing (NaN).
 * Returns false when it is not a number. */
static bool field_value(const char *s, size_t len, float *ret)
{
        char buf[128], *end;

        while (len && (*s == ' ' || *s == '\t'))
                s++, len--;
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
                len--;
        if (len >= 2 && s[0] == '"' && s[len - 1] == '"')
                s++, len -= 2;
        if (len == 0 || (len == 2 && !strncasecmp(s, "na", 2)) || (len == 3 && !strncasecmp(s, "nan", 3)) ||
            (len == 4 && !strncasecmp(s, "null", 4))) {
                *ret = NAN;
                return true;
        }
        if (len >= sizeof(buf))
                return false;
        memcpy(buf, s, len);
        buf[len] = '\0';
        /* A finite decimal number, as JSON rows take: no inf or hex, nothing that
         * rounds past float32's range (tiny values round to 0, as in JSON rows). */
        if (strpbrk(buf, "xX"))
                return false;
        *ret = strtof(buf, &end);
        return end != buf && !*end && isfinite(*ret);
}

/* True when no field of the line is a number or a missing value: a header. */
static bool header_line(const char *s, size_t len)
{
        size_t start = 0;

        for (size_t i = 0; i <= len; i++) {
                if (i < len && s[i] != ',')
                        continue;
                float v;
                if (field_value(s + start, i - start, &v))
                        return false;
                start = i + 1;
        }
        return true;
}

/* Parses one line into row[0..cols) (cols 0: count them, at most `max`). Returns
 * the number of fields, or -(1 + column) of the first field that is not a number. */
static long parse_line(const char *s, size_t len, float *row, size_t max)
{
        size_t n = 0, start = 0;

        for (size_t i = 0; i <= len; i++) {
                if (i < len && s[i] != ',')
                        continue;
                float v;
                if (!field_value(s + start, i - start, &v))
                        return -(long)(n + 1);
                if (row && n < max)
                        row[n] = v;
                n++;
                start = i + 1;
        }
        return (long)n;
}

static int read_csv(const char *path, float **ret_rows, uint64_t *ret_n, uint64_t *ret_cols, char *err,
                    size_t err_size)
{
        FILE *f = fopen(path, "rb");
        char *line = NULL;
        size_t cap = 0, n = 0, cols = 0, rows_cap = 0;
        float *rows = NULL;
        ssize_t len;
        long lineno = 0;
        int r = 0;

        if (!f) {
                r = -errno;
                snprintf(err, err_size, "cannot open %s: %s", path, strerror(-r));
                return r;
        }
        while ((len = getline(&line, &cap, f)) >= 0) {
                lineno++;
                while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                        line[--len] = '\0';
                if (len == 0)
                        continue;
                if (lineno == 1 && header_line(line, (size_t)len))
                        continue; /* a header line names the columns */
                long k = parse_line(line, (size_t)len, NULL, 0);
                if (k < 0) {
                        snprintf(err, err_size, "%s line %ld, column %ld: not a number in float32's range (empty, "
                                 "nan, NA or null for a missing value)", path, lineno, -k);
                        r = -EINVAL;
                        break;
                }
                if (n == 0)
                        cols = (size_t)k;
                if ((size_t)k != cols) {
                        snprintf(err, err_size, "%s line %ld has %ld values where the first row has %zu", path,
                                 lineno, k, cols);
                        r = -EINVAL;
                        break;
                }
                if ((n + 1) * cols * sizeof(float) > CSV_MAX_BYTES) {
                        snprintf(err, err_size, "%s: more rows than kilnctl reads from CSV (4 GiB of floats)", path);
                        r = -EFBIG;
                        break;
                }
                if (n == rows_cap) {
                        size_t c = rows_cap ? rows_cap * 2 : 1024;
                        float *p = realloc(rows, c * cols * sizeof(float));
                        if (!p) {
                                snprintf(err, err_size, "%s: out of memory", path);
                                r = -ENOMEM;
                                break;
                        }
                        rows = p;
                        rows_cap = c;
                }
                parse_line(line, (size_t)len, rows + n * cols, cols);
                n++;
        }
        if (r >= 0 && ferror(f)) {
                r = -EIO;
                snprintf(err, err_size, "cannot read %s", path);
        }
        if (r >= 0 && n == 0) {
                r = -EINVAL;
                snprintf(err, err_size, "%s holds no rows of numbers", path);
        }
        free(line);
        fclose(f);
        if (r < 0) {
                free(rows);
                return r;
        }
        *ret_rows = rows;
        *ret_n = n;
        *ret_cols = cols;
        return 0;
}

int ctl_rows_read(const char *path, float **ret_rows, uint64_t *ret_n, uint64_t *ret_cols, char *err,
                  size_t err_size)
{
        if (ends_with(path, ".npy"))
                return read_npy(path, ret_rows, ret_n, ret_cols, err, err_size);
        if (ends_with(path, ".csv"))
                return read_csv(path, ret_rows, ret_n, ret_cols, err, err_size);
        snprintf(err, err_size, "%s: --rows takes a .npy (float32 [n][features]) or a .csv file", path);
        return -EINVAL;
}
