/* kilnctl's local inputs for stored objects (daemon/ctl/inputs.c: .npy headers,
 * the float32 matrix of `vec put`, ids files) and the KLNB frames of an upload
 * (daemon/ctl/frames.c), checked without a server. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit_tmpdir.h"

#include "ctl.h"
#include "proto.h"

static char dir[PATH_MAX];

static int setup(void **state)
{
        unit_tmpdir_make("ctl-objects", dir, sizeof(dir));
        return 0;
}

static int teardown(void **state)
{
        unit_tmpdir_remove(dir);
        return 0;
}

static const char *write_file(const char *name, const void *data, size_t len)
{
        static char path[PATH_MAX + 64];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
        return path;
}

/* A .npy file with the given version and header dict, padded as numpy pads it,
 * followed by `data_len` zero bytes. */
static const char *write_npy(const char *name, int major, const char *dict, size_t data_len)
{
        uint8_t buf[4096] = { 0 };
        size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
        size_t total = (pre + dl + 1 + 63) / 64 * 64;
        memcpy(buf, "\x93NUMPY", 6);
        buf[6] = (uint8_t)major;
        size_t hl = total - pre;
        buf[8] = (uint8_t)(hl & 0xff);
        buf[9] = (uint8_t)(hl >> 8);
        memcpy(buf + pre, dict, dl);
        memset(buf + pre + dl, ' ', total - pre - dl - 1);
        buf[total - 1] = '\n';
        assert_true(total + data_len <= sizeof(buf));
        return write_file(name, buf, total + data_len);
}

static void test_npy_header_of_a_written_part(void **state)
{
        float v[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
        uint64_t shape[2] = { 3, 4 };
        char buf[CTL_NPY_HEADER_MAX + sizeof(v)];
        int n = ctl_npy_header("f32", 2, shape, buf);
        assert_true(n > 0 && n % 64 == 0);
        memcpy(buf + n, v, sizeof(v));
        const char *path = write_file("w.npy", buf, (size_t)n + sizeof(v));

        int fd = open(path, O_RDONLY);
        struct ctl_npy h;
        assert_int_equal(ctl_npy_read_header(fd, &h), 0);
        close(fd);
        assert_string_equal(h.descr, "<f4");
        assert_false(h.fortran_order);
        assert_int_equal(h.ndim, 2);
        assert_int_equal(h.shape[0], 3);
        assert_int_equal(h.shape[1], 4);
        assert_int_equal(h.data_offset % 64, 0);
        assert_int_equal(h.file_size, h.data_offset + sizeof(v));

        char err[512];
        assert_int_equal(ctl_npy_open_f32_matrix(path, &fd, &h, err, sizeof(err)), 0);
        float first;
        assert_int_equal(ctl_pread_all(fd, &first, 4, h.data_offset), 0);
        assert_true(first == 1.0f);
        close(fd);
}

static void test_npy_versions_and_shapes(void **state)
{
        struct {
                const char *dict;
                int major, ndim;
                uint64_t s0;
        } cases[] = {
                { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 2, 2, 2 },
                { "{'descr': '<f4', 'fortran_order': False, 'shape': (7,), }", 1, 1, 7 },
                { "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 1, 0, 0 },
                { "{\"shape\": (5, 1), \"fortran_order\": True, \"descr\": \"<f4\"}", 3, 2, 5 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const char *path = write_npy("v.npy", cases[i].major, cases[i].dict, 0);
                struct ctl_npy h;
                int fd = open(path, O_RDONLY);
                assert_int_equal(ctl_npy_read_header(fd, &h), 0);
                close(fd);
                assert_int_equal(h.ndim, cases[i].ndim);
                if (h.ndim)
                        assert_int_equal(h.shape[0], cases[i].s0);
                assert_int_equal(h.data_offset % 64, 0);
        }
}

static void test_npy_header_garbage_is_einval(void **state)
{
        const char *dicts[] = {
                "{'descr': '<f4', 'fortran_order': False}",                          /* no shape */
                "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1, 2), }",       /* not a bool */
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, -2), }",      /* negative */
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, }",        /* unclosed */
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,2,3,4,5,6,7,8,9), }",
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), 'x': 1}", /* unknown key */
                "not a dict",
        };
        for (size_t i = 0; i < sizeof(dicts) / sizeof(dicts[0]); i++) {
                const char *path = write_npy("g.npy", 1, dicts[i], 0);
                struct ctl_npy h;
                int fd = open(path, O_RDONLY);
                assert_int_equal(ctl_npy_read_header(fd, &h), -EINVAL);
                close(fd);
        }
        /* Not .npy at all, an unknown version, a header longer than the file. */
        const char *path = write_file("t.npy", "hello world", 11);
        int fd = open(path, O_RDONLY);
        struct ctl_npy h;
        assert_int_equal(ctl_npy_read_header(fd, &h), -EINVAL);
        close(fd);
        path = write_file("t.npy", "\x93NUMPY\x09\x00\x10\x00{}", 12);
        fd = open(path, O_RDONLY);
        assert_int_equal(ctl_npy_read_header(fd, &h), -EINVAL);
        close(fd);
        path = write_file("t.npy", "\x93NUMPY\x01\x00\xff\x00{'descr'", 17);
        fd = open(path, O_RDONLY);
        assert_int_equal(ctl_npy_read_header(fd, &h), -EINVAL);
        close(fd);
}

/* Every refusal of `vec put`'s input names the file and says what is wrong. */
static void test_f32_matrix_refusals_name_the_file(void **state)
{
        struct {
                const char *dict;
                size_t data;
                const char *says;
        } cases[] = {
                { "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48, "float64" },
                { "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", 24, "int32" },
                { "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24, "big-endian" },
                { "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, "Fortran order" },
                { "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", 24, "shape (6,)" },
                { "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }", 24, "shape (1, 2, 3)" },
                { "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", 0, "is empty (shape (0, 3))" },
                { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, "20 bytes of data" },
                { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28, "28 bytes of data" },
                { "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, "structured" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const char *path = write_npy("bad-input.npy", 1, cases[i].dict, cases[i].data);
                char err[512] = "";
                int fd = -1;
                struct ctl_npy h;
                assert_int_equal(ctl_npy_open_f32_matrix(path, &fd, &h, err, sizeof(err)), -EINVAL);
                assert_int_equal(fd, -1);
                assert_non_null(strstr(err, "bad-input.npy"));
                if (!strstr(err, cases[i].says))
                        fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err, cases[i].says);
        }
        char err[512];
        int fd = -1;
        struct ctl_npy h;
        char missing[PATH_MAX + 16];
        snprintf(missing, sizeof(missing), "%s/absent.npy", dir);
        assert_int_equal(ctl_npy_open_f32_matrix(missing, &fd, &h, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "absent.npy"));
}

static json_t *read_ids(const char *text, size_t len, int expect, const char *says)
{
        const char *path = write_file("ids.txt", text, len);
        char err[512] = "";
        json_t *ids = NULL;
        assert_int_equal(ctl_ids_read(path, &ids, err, sizeof(err)), expect);
        if (says && !strstr(err, says))
                fail_msg("\"%s\" does not say \"%s\"", err, says);
        if (expect < 0)
                assert_non_null(strstr(err, "ids.txt"));
        return ids;
}

static void test_ids_file_lines(void **state)
{
        json_t *ids = read_ids("a\r\nbé\r\n c \nlast", 16, 0, NULL);
        assert_int_equal(json_array_size(ids), 4);
        assert_string_equal(json_string_value(json_array_get(ids, 0)), "a");
        assert_string_equal(json_string_value(json_array_get(ids, 1)), "bé");
        assert_string_equal(json_string_value(json_array_get(ids, 2)), " c "); /* ids are bytes, not trimmed */
        assert_string_equal(json_string_value(json_array_get(ids, 3)), "last");
        json_decref(ids);

        ids = read_ids("x\ny\n\n\n", 6, 0, NULL); /* blank lines at the end are no ids */
        assert_int_equal(json_array_size(ids), 2);
        json_decref(ids);

        char long_id[300];
        memset(long_id, 'x', 256);
        long_id[256] = '\n';
        ids = read_ids(long_id, 257, 0, NULL); /* 256 bytes: the longest id */
        assert_int_equal(json_array_size(ids), 1);
        json_decref(ids);
}

static void test_ids_file_refusals_name_the_line(void **state)
{
        read_ids("a\n\nc\n", 5, -EINVAL, "line 2 is empty");
        char long_id[300] = "ok\n";
        memset(long_id + 3, 'x', 257);
        long_id[260] = '\n';
        read_ids(long_id, 261, -EINVAL, "line 2: the id is 257 bytes long");
        read_ids("a\nb\xff\n", 5, -EINVAL, "line 2: the id is not UTF-8");
        read_ids("a\nb\xc0\xaf\n", 6, -EINVAL, "line 2: the id is not UTF-8"); /* overlong */
        read_ids("a\nb\0c\n", 6, -EINVAL, "line 2: the id is not UTF-8");
        read_ids("", 0, -EINVAL, "holds no ids");
        read_ids("\n\n", 2, -EINVAL, "holds no ids");
}

static void test_id_check(void **state)
{
        char why[96];
        assert_int_equal(ctl_id_check("a", 1, why, sizeof(why)), 0);
        assert_int_equal(ctl_id_check("", 0, why, sizeof(why)), -EINVAL);
        assert_string_equal(why, "is empty");
        assert_int_equal(ctl_id_check("\xe2\x82", 2, why, sizeof(why)), -EINVAL);       /* cut short */
        assert_int_equal(ctl_id_check("\xed\xa0\x80", 3, why, sizeof(why)), -EINVAL);   /* a surrogate */
        assert_int_equal(ctl_id_check("\xe2\x82\xac", 3, why, sizeof(why)), 0);        /* the euro sign */
        assert_int_equal(ctl_id_check("\xf0\x9f\x94\xa5", 4, why, sizeof(why)), 0);    /* four bytes */
}

/* A part that fits goes in one frame without "offset", which kilnd's own frame
 * decoder reads back whole. */
static void test_single_frame_decodes(void **state)
{
        uint64_t shape[2] = { 2, 3 };
        float payload[6] = { 1, 2, 3, 4, 5, 6 };
        size_t chunk;
        bool multi;
        assert_int_equal(ctl_frame_plan(7, "vectors", "f32", 2, shape, sizeof(payload), 65536, 1 << 20, &chunk, &multi),
                         0);
        assert_false(multi);
        assert_int_equal(chunk, sizeof(payload));

        uint8_t *prefix;
        size_t plen;
        assert_int_equal(ctl_frame_prefix(7, "vectors", "f32", 2, shape, -1, &prefix, &plen), 0);
        uint8_t frame[512];
        memcpy(frame, prefix, plen);
        memcpy(frame + plen, payload, sizeof(payload));
        free(prefix);

        struct proto_frame f;
        struct proto_error err;
        assert_int_equal(proto_frame_decode(frame, plen + sizeof(payload), &f, NULL, &err), 0);
        assert_string_equal(f.part, "vectors");
        assert_int_equal(json_integer_value(f.ref), 7);
        assert_int_equal(f.ndim, 2);
        assert_int_equal(f.shape[0], 2);
        assert_int_equal(f.shape[1], 3);
        assert_int_equal(f.payload_len, sizeof(payload));
        assert_memory_equal(f.payload, payload, sizeof(payload));
        assert_null(json_object_get(f.header, "offset"));
        proto_frame_clear(&f);
}

/* The header of one frame of a prefix: its JSON object. */
static json_t *prefix_header(const uint8_t *p, size_t len)
{
        assert_memory_equal(p, "KLNB", 4);
        uint32_t hl = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        assert_int_equal(8 + hl, len);
        json_t *h = json_loadb((const char *)p + 8, hl, 0, NULL);
        assert_non_null(h);
        return h;
}

/* A part larger than one message: frames that cover it exactly, in order, each
 * within max_message, each payload whole elements, each header with the whole
 * part's shape and its own offset. */
static void test_multi_frame_plan_covers_the_part(void **state)
{
        struct {
                const char *dtype;
                int ndim;
                uint64_t shape[2];
                size_t max_message, cap;
        } cases[] = {
                { "bytes", 1, { 302142 }, 65536, 16 << 20 },
                { "f32", 2, { 5375, 4 }, 65536, 16 << 20 },
                { "f32", 2, { 1000, 7 }, 1024, 16 << 20 },
                { "f32", 2, { 100000, 3 }, 64 << 20, 100000 }, /* the cap, not the message, bounds it */
                { "bytes", 1, { 1000 }, 1000, 16 << 20 },      /* 1000 bytes plus a header do not fit in 1000 */
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                size_t es = strcmp(cases[i].dtype, "f32") ? 1 : 4;
                uint64_t total = cases[i].shape[0] * (cases[i].ndim == 2 ? cases[i].shape[1] : 1) * es;
                size_t chunk;
                bool multi;
                assert_int_equal(ctl_frame_plan(12, "p", cases[i].dtype, cases[i].ndim, cases[i].shape, total,
                                                cases[i].max_message, cases[i].cap, &chunk, &multi),
                                 0);
                assert_true(multi);
                assert_true(chunk > 0 && chunk <= cases[i].cap);
                assert_int_equal(chunk % es, 0);
                uint64_t off = 0;
                size_t frames = 0;
                while (off < total) {
                        size_t n = total - off < chunk ? (size_t)(total - off) : chunk;
                        uint8_t *prefix;
                        size_t plen;
                        assert_int_equal(ctl_frame_prefix(12, "p", cases[i].dtype, cases[i].ndim, cases[i].shape,
                                                          (int64_t)off, &prefix, &plen),
                                         0);
                        assert_true(plen + n <= cases[i].max_message);
                        json_t *h = prefix_header(prefix, plen);
                        assert_int_equal(json_integer_value(json_object_get(h, "offset")), off);
                        assert_int_equal(json_integer_value(json_object_get(h, "ref")), 12);
                        assert_string_equal(json_string_value(json_object_get(h, "dtype")), cases[i].dtype);
                        json_t *s = json_object_get(h, "shape");
                        assert_int_equal(json_array_size(s), cases[i].ndim);
                        assert_int_equal(json_integer_value(json_array_get(s, 0)), cases[i].shape[0]);
                        json_decref(h);
                        free(prefix);
                        off += n;
                        frames++;
                }
                assert_int_equal(off, total);
                assert_true(frames >= 2);
                /* No frame could have been larger: the chunk uses the room there is. */
                uint8_t *prefix;
                size_t plen;
                assert_int_equal(ctl_frame_prefix(12, "p", cases[i].dtype, cases[i].ndim, cases[i].shape,
                                                  (int64_t)total, &prefix, &plen),
                                 0);
                free(prefix);
                size_t room = cases[i].max_message - plen < cases[i].cap ? cases[i].max_message - plen : cases[i].cap;
                assert_true(room - chunk < es);
        }
}

static void test_frame_plan_refusals(void **state)
{
        uint64_t shape[1] = { 100 };
        size_t chunk;
        bool multi;
        /* No room for one element beside the header. */
        assert_int_equal(ctl_frame_plan(1, "model", "bytes", 1, shape, 100, 40, 1 << 20, &chunk, &multi), -EMSGSIZE);
        assert_int_equal(ctl_frame_plan(1, "model", "int64", 1, shape, 100, 65536, 1 << 20, &chunk, &multi), -EINVAL);
        uint8_t *prefix;
        size_t plen;
        assert_int_equal(ctl_frame_prefix(1, "model", "bytes", 0, shape, -1, &prefix, &plen), -EINVAL);
        assert_int_equal(ctl_frame_prefix(1, "model", "bytes", 5, shape, -1, &prefix, &plen), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_npy_header_of_a_written_part),
                cmocka_unit_test(test_npy_versions_and_shapes),
                cmocka_unit_test(test_npy_header_garbage_is_einval),
                cmocka_unit_test(test_f32_matrix_refusals_name_the_file),
                cmocka_unit_test(test_ids_file_lines),
                cmocka_unit_test(test_ids_file_refusals_name_the_line),
                cmocka_unit_test(test_id_check),
                cmocka_unit_test(test_single_frame_decodes),
                cmocka_unit_test(test_multi_frame_plan_covers_the_part),
                cmocka_unit_test(test_frame_plan_refusals),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
