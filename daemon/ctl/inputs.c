/* kilnctl's local inputs for stored objects: the header of a NumPy .npy file
 * (format 1.0, 2.0 and 3.0) and files of ids, one per line. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"

#define NPY_MAX_HEADER (1u << 20) /* numpy itself refuses headers past 10 KiB by default */

int ctl_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
        uint8_t *p = buf;

        while (len) {
                ssize_t n = pread(fd, p, len, (off_t)off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -ENODATA;
                p += n;
                len -= (size_t)n;
                off += (uint64_t)n;
        }
        return 0;
}

/* A cursor over the header's Python dict literal. */
struct lit {
        const char *p, *end;
};

static void skip_space(struct lit *l)
{
        while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r'))
                l->p++;
}

static bool eat(struct lit *l, char c)
{
        skip_space(l);
        if (l->p < l->end && *l->p == c) {
                l->p++;
                return true;
        }
        return false;
}

/* A quoted string ('...' or "...", no escapes: numpy writes none in the keys and
 * plain dtypes); copies at most size - 1 bytes. */
static bool quoted(struct lit *l, char *ret, size_t size)
{
        skip_space(l);
        if (l->p >= l->end || (*l->p != '\'' && *l->p != '"'))
                return false;
        char q = *l->p++;
        const char *s = l->p;
        while (l->p < l->end && *l->p != q && *l->p != '\\')
                l->p++;
        if (l->p >= l->end || *l->p != q)
                return false;
        size_t n = (size_t)(l->p - s);
        l->p++;
        if (n >= size)
                return false;
        memcpy(ret, s, n);
        ret[n] = '\0';
        return true;
}

static bool word(struct lit *l, const char *w)
{
        size_t n = strlen(w);

        skip_space(l);
        if ((size_t)(l->end - l->p) >= n && !memcmp(l->p, w, n)) {
                l->p += n;
                return true;
        }
        return false;
}

/* "(3, 4)", "(5,)", "()". */
static bool shape_tuple(struct lit *l, struct ctl_npy *ret)
{
        if (!eat(l, '('))
                return false;
        ret->ndim = 0;
        for (;;) {
                skip_space(l);
                if (eat(l, ')'))
                        return true;
                if (ret->ndim == CTL_NPY_MAX_DIMS || l->p >= l->end || *l->p < '0' || *l->p > '9')
                        return false;
                uint64_t v = 0;
                while (l->p < l->end && *l->p >= '0' && *l->p <= '9') {
                        if (v > (UINT64_MAX - 9) / 10)
                                return false;
                        v = v * 10 + (uint64_t)(*l->p++ - '0');
                }
                ret->shape[ret->ndim++] = v;
                if (!eat(l, ',')) {
                        return eat(l, ')');
                }
        }
}

static int parse_dict(const char *text, size_t len, struct ctl_npy *ret)
{
        struct lit l = { text, text + len };
        bool have_descr = false, have_order = false, have_shape = false;

        if (!eat(&l, '{'))
                return -EINVAL;
        for (;;) {
                if (eat(&l, '}'))
                        break;
                char key[32];
                if (!quoted(&l, key, sizeof(key)) || !eat(&l, ':'))
                        return -EINVAL;
                if (!strcmp(key, "descr")) {
                        /* A structured dtype is a list: not a plain array, refused by name. */
                        if (!quoted(&l, ret->descr, sizeof(ret->descr))) {
                                snprintf(ret->descr, sizeof(ret->descr), "structured");
                                return -EINVAL;
                        }
                        have_descr = true;
                } else if (!strcmp(key, "fortran_order")) {
                        if (word(&l, "True"))
                                ret->fortran_order = true;
                        else if (word(&l, "False"))
                                ret->fortran_order = false;
                        else
                                return -EINVAL;
                        have_order = true;
                } else if (!strcmp(key, "shape")) {
                        if (!shape_tuple(&l, ret))
                                return -EINVAL;
                        have_shape = true;
                } else {
                        return -EINVAL;
                }
                if (!eat(&l, ',')) {
                        if (!eat(&l, '}'))
                                return -EINVAL;
                        break;
                }
        }
        return have_descr && have_order && have_shape ? 0 : -EINVAL;
}

int ctl_npy_read_header(int fd, struct ctl_npy *ret)
{
        struct ctl_npy h = { 0 };
        uint8_t pre[12];
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        int r = ctl_pread_all(fd, pre, 10, 0);
        if (r == -ENODATA || (r >= 0 && memcmp(pre, "\x93NUMPY", 6)))
                return -EINVAL;
        if (r < 0)
                return r;
        uint32_t hlen;
        size_t pre_len;
        if (pre[6] == 1) {
                hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
                pre_len = 10;
        } else if (pre[6] == 2 || pre[6] == 3) {
                if ((r = ctl_pread_all(fd, pre + 10, 2, 10)) < 0)
                        return r == -ENODATA ? -EINVAL : r;
                hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
                pre_len = 12;
        } else {
                return -EINVAL;
        }
        if (hlen > NPY_MAX_HEADER)
                return -EINVAL;
        char *text = malloc(hlen + 1);
        if (!text)
                return -ENOMEM;
        r = ctl_pread_all(fd, text, hlen, pre_len);
        if (r >= 0) {
                text[hlen] = '\0';
                r = strlen(text) == hlen ? parse_dict(text, hlen, &h) : -EINVAL;
        } else if (r == -ENODATA) {
                r = -EINVAL;
        }
        free(text);
        if (r < 0) {
                /* Keep what was learnt (a structured descr) for the caller's message. */
                memcpy(ret->descr, h.descr, sizeof(h.descr));
                return r;
        }
        h.data_offset = pre_len + hlen;
        h.file_size = (uint64_t)st.st_size;
        *ret = h;
        return 0;
}

/* Human names of the common NumPy type codes, for messages. */
static const char *descr_name(const char *d)
{
        static const struct {
                const char *code, *name;
        } names[] = {
                { "f2", "float16" }, { "f4", "float32" }, { "f8", "float64" }, { "f16", "float128" },
                { "i1", "int8" },    { "i2", "int16" },   { "i4", "int32" },   { "i8", "int64" },
                { "u1", "uint8" },   { "u2", "uint16" },  { "u4", "uint32" },  { "u8", "uint64" },
                { "b1", "bool" },    { "c8", "complex64" }, { "c16", "complex128" },
        };
        const char *code = d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=' ? d + 1 : d;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (!strcmp(code, names[i].code))
                        return names[i].name;
        return NULL;
}

static void shape_text(const struct ctl_npy *h, char *ret, size_t size)
{
        size_t n = (size_t)snprintf(ret, size, "(");
        for (int i = 0; i < h->ndim && n < size; i++)
                n += (size_t)snprintf(ret + n, size - n, "%s%" PRIu64, i ? ", " : "", h->shape[i]);
        if (n < size)
                snprintf(ret + n, size - n, "%s)", h->ndim == 1 ? "," : "");
}

int ctl_npy_open_f32_matrix(const char *path, int *ret_fd, struct ctl_npy *ret, char *err, size_t err_size)
{
        struct ctl_npy h = { 0 };
        char shape[200];

        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;
                snprintf(err, err_size, "cannot open %s: %s", path, strerror(-r));
                return r;
        }
        int r = ctl_npy_read_header(fd, &h);
        if (r == -EINVAL) {
                if (!strcmp(h.descr, "structured"))
                        snprintf(err, err_size, "%s holds a structured array; a float32 array of shape [n][dim] is needed",
                                 path);
                else
                        snprintf(err, err_size, "%s is not a NumPy .npy file (numpy.save writes one)", path);
        } else if (r < 0) {
                snprintf(err, err_size, "cannot read %s: %s", path, strerror(-r));
        } else if (strcmp(h.descr, "<f4")) {
                const char *name = descr_name(h.descr);
                if (!strcmp(h.descr, ">f4"))
                        snprintf(err, err_size, "%s holds big-endian float32 (>f4); save a.astype('<f4')", path);
                else
                        snprintf(err, err_size, "%s holds %s (%s), not float32; save a.astype(numpy.float32)", path,
                                 name ? name : "values", h.descr);
                r = -EINVAL;
        } else if (h.fortran_order) {
                snprintf(err, err_size, "%s is in Fortran order; save numpy.ascontiguousarray(a)", path);
                r = -EINVAL;
        } else if (h.ndim != 2) {
                shape_text(&h, shape, sizeof(shape));
                snprintf(err, err_size, "%s has shape %s; 2 dimensions are needed, [n][dim]", path, shape);
                r = -EINVAL;
        } else if (h.shape[0] == 0 || h.shape[1] == 0) {
                shape_text(&h, shape, sizeof(shape));
                snprintf(err, err_size, "%s is empty (shape %s); at least one row of one value is needed", path, shape);
                r = -EINVAL;
        } else if (h.shape[1] > UINT64_MAX / 4 / h.shape[0]) {
                shape_text(&h, shape, sizeof(shape));
                snprintf(err, err_size, "%s has shape %s: more float32 values than any file holds", path, shape);
                r = -EINVAL;
        } else if (h.file_size - h.data_offset != h.shape[0] * h.shape[1] * 4 || h.file_size < h.data_offset) {
                uint64_t have = h.file_size > h.data_offset ? h.file_size - h.data_offset : 0;
                shape_text(&h, shape, sizeof(shape));
                snprintf(err, err_size, "%s has %" PRIu64 " bytes of data where shape %s of float32 needs %" PRIu64,
                         path, have, shape, h.shape[0] * h.shape[1] * 4);
                r = -EINVAL;
        }
        if (r < 0) {
                close(fd);
                return r;
        }
        *ret_fd = fd;
        *ret = h;
        return 0;
}

/* Whether s[0..len) is well-formed UTF-8 without NUL (what a JSON string can carry
 * as it is). */
static bool utf8_ok(const uint8_t *s, size_t len)
{
        for (size_t i = 0; i < len;) {
                uint8_t c = s[i];
                size_t n;
                uint32_t cp;
                if (c == 0)
                        return false;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if ((c & 0xe0) == 0xc0) {
                        n = 1;
                        cp = c & 0x1f;
                } else if ((c & 0xf0) == 0xe0) {
                        n = 2;
                        cp = c & 0x0f;
                } else if ((c & 0xf8) == 0xf0) {
                        n = 3;
                        cp = c & 0x07;
                } else {
                        return false;
                }
                if (i + n >= len)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + k] & 0x3f);
                }
                if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += n + 1;
        }
        return true;
}

int ctl_id_check(const char *s, size_t len, char *why, size_t why_size)
{
        if (len == 0) {
                snprintf(why, why_size, "is empty");
                return -EINVAL;
        }
        if (len > CTL_ID_MAX) {
                snprintf(why, why_size, "is %zu bytes long, over %u", len, CTL_ID_MAX);
                return -EINVAL;
        }
        if (!utf8_ok((const uint8_t *)s, len)) {
                snprintf(why, why_size, "is not UTF-8 text");
                return -EINVAL;
        }
        return 0;
}

int ctl_ids_read(const char *path, json_t **ret, char *err, size_t err_size)
{
        FILE *f = fopen(path, "re");
        if (!f) {
                int r = -errno;
                snprintf(err, err_size, "cannot open %s: %s", path, strerror(-r));
                return r;
        }
        json_t *ids = json_array();
        char *line = NULL;
        size_t cap = 0, lineno = 0;
        ssize_t n;
        int r = ids ? 0 : -ENOMEM;
        bool blank_pending = false;
        size_t blank_line = 0;

        errno = 0;
        while (r >= 0 && (n = getline(&line, &cap, f)) >= 0) {
                lineno++;
                size_t len = (size_t)n;
                if (len && line[len - 1] == '\n')
                        len--;
                if (len && line[len - 1] == '\r')
                        len--;
                /* Blank lines are an error unless only blank lines follow them. */
                if (len == 0) {
                        if (!blank_pending)
                                blank_line = lineno;
                        blank_pending = true;
                        continue;
                }
                if (blank_pending) {
                        snprintf(err, err_size, "%s line %zu is empty (ids are 1 to %u bytes)", path, blank_line,
                                 CTL_ID_MAX);
                        r = -EINVAL;
                        break;
                }
                char why[96];
                if (ctl_id_check(line, len, why, sizeof(why)) < 0) {
                        snprintf(err, err_size, "%s line %zu: the id %s", path, lineno, why);
                        r = -EINVAL;
                        break;
                }
                if (json_array_append_new(ids, json_stringn(line, len)) < 0)
                        r = -ENOMEM;
        }
        if (r >= 0 && ferror(f)) {
                r = -EIO;
                snprintf(err, err_size, "cannot read %s: %s", path, strerror(EIO));
        }
        if (r == -ENOMEM)
                snprintf(err, err_size, "out of memory reading %s", path);
        free(line);
        fclose(f);
        if (r >= 0 && json_array_size(ids) == 0) {
                snprintf(err, err_size, "%s holds no ids", path);
                r = -EINVAL;
        }
        if (r < 0) {
                json_decref(ids);
                return r;
        }
        *ret = ids;
        return 0;
}
