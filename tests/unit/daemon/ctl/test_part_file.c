/* A result part written to its file while its KLNB frame arrives
 * (daemon/ctl/part_file.c): meshes as .stl or .glb and arrays as .npy, the frame fed
 * in every piece size, and every frame the server could get wrong, each leaving no
 * file behind; with files unnamed until the commit and with hidden names. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit_tmpdir.h"

#include "ctl.h"
#include "part_file_internal.h"

static char dir[PATH_MAX];
static bool hidden;  /* a part's file has its hidden name before the commit */

static int setup(void **state)
{
        unit_tmpdir_make("part-file", dir, sizeof(dir));
        int fd = open(dir, O_TMPFILE | O_WRONLY, 0600);
        /* as on a filesystem without O_TMPFILE, or without /proc to name such files */
        hidden = ctl_part_file_named_from_start || fd < 0 || access("/proc/self/fd", X_OK) != 0;
        if (fd >= 0)
                close(fd);
        return 0;
}

static int setup_hidden(void **state)
{
        ctl_part_file_named_from_start = true;
        return setup(state);
}

static int teardown(void **state)
{
        unit_tmpdir_remove(dir);
        return 0;
}

/* The frame of a part: prefix and header from ctl_frame_prefix, then payload. */
static uint8_t *frame(const char *part, const char *dtype, int ndim, const uint64_t *shape, const void *payload,
                      size_t len, size_t *ret_len)
{
        uint8_t *prefix;
        size_t plen;

        assert_int_equal(ctl_frame_prefix(1, part, dtype, ndim, shape, -1, &prefix, &plen), 0);
        uint8_t *f = malloc(plen + len + 1);
        assert_non_null(f);
        memcpy(f, prefix, plen);
        if (len)
                memcpy(f + plen, payload, len);
        free(prefix);
        *ret_len = plen + len;
        return f;
}

/* A mesh of n zero bytes, and a part of one float: the frames most tests need. */
static uint8_t *zero_mesh(size_t n, size_t *ret_len)
{
        uint8_t *zeros = calloc(1, n);
        uint64_t shape[1] = { n };

        assert_non_null(zeros);
        uint8_t *f = frame("mesh", "bytes", 1, shape, zeros, n, ret_len);
        free(zeros);
        return f;
}

static uint8_t *one_float(size_t *ret_len)
{
        float v = 1;
        uint64_t shape[1] = { 1 };

        return frame("psi", "f32", 1, shape, &v, sizeof(v), ret_len);
}

/* A frame from a literal header (no checks: for the frames the server gets wrong). */
static uint8_t *raw_frame(const char *header, const void *payload, size_t len, size_t *ret_len)
{
        size_t hl = strlen(header);
        uint8_t *f = malloc(8 + hl + len + 1);

        assert_non_null(f);
        memcpy(f, "KLNB", 4);
        f[4] = (uint8_t)hl;
        f[5] = (uint8_t)(hl >> 8);
        f[6] = f[7] = 0;
        memcpy(f + 8, header, hl);
        if (len)
                memcpy(f + 8 + hl, payload, len);
        *ret_len = 8 + hl + len;
        return f;
}

/* Feeds buf in pieces of `step` bytes and finishes. */
static struct ctl_part_file *feed(const char *into, const uint8_t *buf, size_t len, size_t step, int *ret)
{
        struct ctl_part_file *p;

        assert_int_equal(ctl_part_file_new(into, &p), 0);
        for (size_t at = 0; at < len; at += step)
                ctl_part_file_feed(p, buf + at, len - at < step ? len - at : step);
        *ret = ctl_part_file_finish(p);
        return p;
}

/* The entries of directory `path` (0 when there is none), and how many of them
 * are hidden (their names start with '.'). */
static size_t entries_hidden(const char *path, size_t *ret_hidden)
{
        DIR *d = opendir(path);
        size_t n = 0, h = 0;

        for (struct dirent *e; d && (e = readdir(d));) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                n++;
                h += e->d_name[0] == '.';
        }
        if (d)
                closedir(d);
        if (ret_hidden)
                *ret_hidden = h;
        return n;
}

static size_t entries(const char *path)
{
        return entries_hidden(path, NULL);
}

/* Checks that `path` holds no file but, with hidden names, one hidden file. */
static void only_the_hidden_file(const char *path)
{
        size_t h, n = entries_hidden(path, &h);

        assert_int_equal(n, h);
        assert_int_equal(n, hidden ? 1 : 0);
}

static uint8_t *slurp(const char *path, size_t *ret_len)
{
        int fd = open(path, O_RDONLY);
        struct stat st;

        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        uint8_t *b = malloc((size_t)st.st_size + 1);
        assert_non_null(b);
        assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
        close(fd);
        *ret_len = (size_t)st.st_size;
        return b;
}

/* The file only appears at commit, holds exactly the payload and replaces the
 * one there. */
static void check_mesh(const uint8_t *payload, size_t n, const char *want_name)
{
        uint64_t shape[1] = { n };
        size_t flen, got_len;
        uint8_t *f = frame("mesh", "bytes", 1, shape, payload, n, &flen);
        static const size_t steps[] = { 1, 2, 3, 5, 8, 13, 4096 };
        char want[PATH_MAX + 32];

        snprintf(want, sizeof(want), "%s/out/%s", dir, want_name);
        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
                char into[PATH_MAX + 8];
                const char *path;
                int r;
                snprintf(into, sizeof(into), "%s/out", dir);
                struct ctl_part_file *p = feed(into, f, flen, steps[s], &r);
                assert_int_equal(r, 0);
                assert_string_equal(ctl_part_file_name(p), "mesh");
                assert_int_equal(ctl_part_file_finish(p), 0);  /* again: the same */
                only_the_hidden_file(into);  /* no name of its own before the commit */
                if (s == 1) {  /* an earlier file of that name is replaced */
                        int fd = open(want, O_WRONLY | O_CREAT, 0644);
                        assert_true(fd >= 0 && write(fd, "old contents, longer than some", 30) == 30);
                        close(fd);
                }
                assert_int_equal(ctl_part_file_commit(p, &path), 0);
                assert_string_equal(path, want);
                ctl_part_file_free(p);

                uint8_t *got = slurp(want, &got_len);
                assert_int_equal(got_len, n);
                assert_memory_equal(got, payload, n);
                free(got);
                assert_int_equal(entries(into), 1);  /* no temporary file left */
                assert_int_equal(unlink(want), 0);
        }
        free(f);
}

static void test_stl_and_glb_meshes_in_every_piece_size(void **state)
{
        uint8_t stl[300];
        for (size_t i = 0; i < sizeof(stl); i++)
                stl[i] = (uint8_t)(i * 7);
        check_mesh(stl, sizeof(stl), "mesh.stl");

        uint8_t glb[64] = "glTF\x02\0\0\0";
        check_mesh(glb, sizeof(glb), "mesh.glb");
        check_mesh((const uint8_t *)"glT", 3, "mesh.stl");  /* too short to be glTF */
}

static void test_array_part_becomes_npy(void **state)
{
        float v[6] = { 1, 2, 3, 4, 5, 6 };
        uint64_t shape[2] = { 2, 3 };
        size_t flen;
        uint8_t *f = frame("kappa", "f32", 2, shape, v, sizeof(v), &flen);
        const char *path;
        int r;

        for (size_t step = 1; step <= flen; step += 11) {
                struct ctl_part_file *p = feed(dir, f, flen, step, &r);
                assert_int_equal(r, 0);
                assert_int_equal(ctl_part_file_commit(p, &path), 0);
                int fd = open(path, O_RDONLY);
                struct ctl_npy h;
                assert_int_equal(ctl_npy_read_header(fd, &h), 0);
                assert_string_equal(h.descr, "<f4");
                assert_int_equal(h.ndim, 2);
                assert_int_equal(h.shape[0], 2);
                assert_int_equal(h.shape[1], 3);
                assert_int_equal(h.file_size, h.data_offset + sizeof(v));
                float back[6];
                assert_int_equal(ctl_pread_all(fd, back, sizeof(back), h.data_offset), 0);
                assert_memory_equal(back, v, sizeof(v));
                close(fd);
                ctl_part_file_free(p);
        }
        free(f);

        /* an empty part is a file too */
        uint64_t none[1] = { 0 };
        f = frame("ids", "u32", 1, none, NULL, 0, &flen);
        struct ctl_part_file *p = feed(dir, f, flen, 1, &r);
        assert_int_equal(r, 0);
        assert_int_equal(ctl_part_file_commit(p, &path), 0);
        assert_non_null(strstr(path, "/ids.npy"));
        int fd = open(path, O_RDONLY);
        struct ctl_npy h;
        assert_int_equal(ctl_npy_read_header(fd, &h), 0);
        close(fd);
        assert_int_equal(h.ndim, 1);
        assert_int_equal(h.shape[0], 0);
        assert_int_equal(h.file_size, h.data_offset);
        ctl_part_file_free(p);
        free(f);
}

static void test_without_a_directory_the_part_is_checked_and_dropped(void **state)
{
        size_t flen;
        uint8_t *f = zero_mesh(100, &flen);
        const char *path = "x";
        int r;

        struct ctl_part_file *p = feed(NULL, f, flen, 7, &r);
        assert_int_equal(r, 0);
        assert_int_equal(ctl_part_file_commit(p, &path), 0);
        assert_null(path);
        ctl_part_file_free(p);

        p = feed(NULL, f, flen - 1, 7, &r);  /* still checked */
        assert_int_equal(r, -EPROTO);
        ctl_part_file_free(p);
        free(f);
}

static void test_nested_directories_are_created(void **state)
{
        size_t flen;
        uint8_t *f = one_float(&flen);
        char into[PATH_MAX + 16];
        const char *path;
        int r;

        snprintf(into, sizeof(into), "%s/a/b/c", dir);
        struct ctl_part_file *p = feed(into, f, flen, 3, &r);
        assert_int_equal(r, 0);
        assert_int_equal(ctl_part_file_commit(p, &path), 0);
        assert_int_equal(access(path, R_OK), 0);
        ctl_part_file_free(p);
        free(f);
}

/* Each bad frame fails with its sentence, and leaves no file behind. */
static void expect_refused(const uint8_t *f, size_t flen, int want, const char *why)
{
        char into[PATH_MAX + 8];
        const char *path;
        int r;

        snprintf(into, sizeof(into), "%s/bad", dir);
        for (size_t step = 1; step <= flen + 1; step = step * 2 + 1) {
                struct ctl_part_file *p = feed(into, f, flen, step, &r);
                assert_int_equal(r, want);
                if (!strstr(ctl_part_file_error(p), why))
                        fail_msg("\"%s\" does not say \"%s\"", ctl_part_file_error(p), why);
                assert_int_equal(ctl_part_file_commit(p, &path), want);
                assert_null(path);
                ctl_part_file_free(p);
                assert_int_equal(entries(into), 0);
        }
}

static void test_bad_frames_are_refused(void **state)
{
        uint8_t data[8] = { 0 };
        size_t flen;
        uint8_t *f = zero_mesh(64, &flen);

        expect_refused(f, flen - 1, -EPROTO, "63 of the 64 bytes");
        expect_refused(f, 5, -EPROTO, "ends inside its header");
        expect_refused(f, 20, -EPROTO, "ends inside its header");
        free(f);

        f = zero_mesh(64, &flen);
        uint8_t *big = malloc(flen + 10);
        assert_non_null(big);
        memcpy(big, f, flen);
        memset(big + flen, 0, 10);
        expect_refused(big, flen + 10, -EPROTO, "more than the 64 bytes");
        free(big);

        f[0] = 'X';
        expect_refused(f, flen, -EPROTO, "does not start with \"KLNB\"");
        f[0] = 'K';
        f[6] = 1;  /* a header of 64 KiB and more */
        expect_refused(f, flen, -EPROTO, "a part header of");
        free(f);

        static const struct {
                const char *header;
                size_t payload;
                const char *why;
        } bad[] = {
                { "", 4, "malformed frame header" },
                { "{\"ref\":1,\"part\":", 4, "malformed frame header" },
                { "{\"ref\":1,\"part\":\"m\",\"dtype\":\"f64\",\"shape\":[1]}", 8, "dtype" },
                { "{\"ref\":1,\"part\":\"m\",\"dtype\":\"u8\",\"shape\":[8],\"offset\":0}", 8, "in pieces" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                f = raw_frame(bad[i].header, data, bad[i].payload, &flen);
                expect_refused(f, flen, -EPROTO, bad[i].why);
                free(f);
        }
}

static void test_an_unwritable_directory_is_an_error(void **state)
{
        size_t flen;
        uint8_t *f = one_float(&flen);
        char into[PATH_MAX + 16];
        int r;

        snprintf(into, sizeof(into), "%s/plain", dir);
        int fd = open(into, O_WRONLY | O_CREAT, 0644);  /* a file where the directory should be */
        assert_true(fd >= 0);
        close(fd);
        struct ctl_part_file *p = feed(into, f, flen, 2, &r);
        assert_true(r < 0 && r != -EPROTO);
        assert_non_null(strstr(ctl_part_file_error(p), "cannot create"));
        ctl_part_file_free(p);
        free(f);
}

static void test_free_without_commit_leaves_nothing(void **state)
{
        size_t flen;
        uint8_t *f = zero_mesh(32, &flen);
        char into[PATH_MAX + 8];
        struct ctl_part_file *p;

        snprintf(into, sizeof(into), "%s/half", dir);
        assert_int_equal(ctl_part_file_new(into, &p), 0);
        ctl_part_file_feed(p, f, flen - 3);  /* the connection drops here */
        only_the_hidden_file(into);
        ctl_part_file_free(p);
        assert_int_equal(entries(into), 0);

        /* a finished part nobody commits */
        assert_int_equal(ctl_part_file_new(into, &p), 0);
        ctl_part_file_feed(p, f, flen);
        assert_int_equal(ctl_part_file_finish(p), 0);
        only_the_hidden_file(into);
        ctl_part_file_free(p);
        assert_int_equal(entries(into), 0);
        free(f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stl_and_glb_meshes_in_every_piece_size),
                cmocka_unit_test(test_array_part_becomes_npy),
                cmocka_unit_test(test_without_a_directory_the_part_is_checked_and_dropped),
                cmocka_unit_test(test_nested_directories_are_created),
                cmocka_unit_test(test_bad_frames_are_refused),
                cmocka_unit_test(test_an_unwritable_directory_is_an_error),
                cmocka_unit_test(test_free_without_commit_leaves_nothing),
        };
        /* Unnamed files (O_TMPFILE, where the filesystem has it), then hidden names. */
        int failed = cmocka_run_group_tests_name("unnamed until the commit", tests, setup, teardown);
        return failed + cmocka_run_group_tests_name("hidden names", tests, setup_hidden, teardown);
}
