/* Binary parts waiting for their message (daemon/parts.c): one frame or several
 * with offsets, the limit, and every way a frame can fail to continue its part. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "kind.h"
#include "membudget.h"
#include "parts.h"
#include "util.h"

/* A decoded frame of part `name` (u8, shape [total]) carrying bytes [off, off+n). */
static struct proto_frame frame(json_t *ref, const char *name, uint64_t total, const uint8_t *data, uint64_t off,
                                size_t n, bool with_offset)
{
        struct proto_frame f = { .ref = ref, .part = name, .dtype = KILN_DTYPE_U8, .ndim = 1,
                                 .shape = { total }, .part_bytes = total, .has_offset = with_offset,
                                 .offset = off, .payload = data + off, .payload_len = n };
        return f;
}

static void test_a_part_in_one_frame_is_taken_whole(void **state)
{
        struct parts *ps = parts_new(1 << 20, NULL);
        json_t *ref = json_integer(7);
        uint8_t data[100];
        for (int i = 0; i < 100; i++)
                data[i] = (uint8_t)i;
        struct proto_error err;
        struct proto_frame f = frame(ref, "image", 100, data, 0, 100, false);
        assert_int_equal(parts_add(ps, &f, &err), 0);
        assert_int_equal(parts_bytes(ps), 100);
        assert_string_equal(parts_left(ps, ref), "image");
        struct part *p = NULL;
        json_t *other = json_string("7");
        assert_int_equal(parts_take(ps, other, "image", &p, NULL, &err), -ENOENT); /* "7" is not 7 */
        assert_int_equal(parts_take(ps, ref, "rows", &p, NULL, &err), -ENOENT);
        assert_int_equal(parts_take(ps, ref, "image", &p, NULL, &err), 0);
        assert_int_equal(p->bytes, 100);
        assert_memory_equal(p->data, data, 100);
        assert_int_equal(parts_bytes(ps), 0);
        assert_null(parts_left(ps, ref));
        part_free(p);
        json_decref(other);
        json_decref(ref);
        parts_free(ps);
}

static void test_a_part_in_several_frames_is_assembled_in_order(void **state)
{
        struct parts *ps = parts_new(1 << 20, NULL);
        json_t *ref = json_pack("{s:i}", "a", 1);
        uint8_t data[1000];
        for (int i = 0; i < 1000; i++)
                data[i] = (uint8_t)(i * 7);
        struct proto_error err;
        struct part *p = NULL;
        for (uint64_t off = 0; off < 1000; off += 300) {
                size_t n = off + 300 > 1000 ? 1000 - off : 300;
                struct proto_frame f = frame(ref, "vectors", 1000, data, off, n, true);
                assert_int_equal(parts_add(ps, &f, &err), 0);
                if (off + n < 1000) { /* incomplete until the last frame */
                        assert_string_equal(parts_left(ps, ref), "vectors");
                }
        }
        assert_int_equal(parts_take(ps, ref, "vectors", &p, NULL, &err), 0);
        assert_memory_equal(p->data, data, 1000);
        part_free(p);
        json_decref(ref);
        parts_free(ps);
}

static void test_an_incomplete_part_is_refused_when_taken(void **state)
{
        struct parts *ps = parts_new(1 << 20, NULL);
        json_t *ref = json_integer(1);
        uint8_t data[64] = { 0 };
        struct proto_error err;
        struct proto_frame f = frame(ref, "rows", 64, data, 0, 32, true);
        assert_int_equal(parts_add(ps, &f, &err), 0);
        struct part *p = NULL;
        assert_int_equal(parts_take(ps, ref, "rows", &p, NULL, &err), -EAGAIN);
        assert_int_equal(err.code, KERR_BAD_REQUEST);
        assert_non_null(strstr(err.message, "32 of its 64 bytes"));
        assert_int_equal(parts_bytes(ps), 0); /* dropped */
        json_decref(ref);
        parts_free(ps);
}

static void test_frames_in_any_order_make_the_part(void **state)
{
        struct parts *ps = parts_new(1 << 20, NULL);
        json_t *ref = json_integer(1);
        uint8_t data[100];
        for (int i = 0; i < 100; i++)
                data[i] = (uint8_t)(3 * i + 1);
        struct proto_error err;
        static const uint64_t order[] = { 80, 20, 0, 60, 40 };
        for (size_t i = 0; i < 5; i++) {
                struct proto_frame f = frame(ref, "rows", 100, data, order[i], 20, true);
                assert_int_equal(parts_add(ps, &f, &err), 0);
        }
        struct part *p = NULL;
        assert_int_equal(parts_take(ps, ref, "rows", &p, NULL, &err), 0);
        assert_memory_equal(p->data, data, 100);
        part_free(p);
        json_decref(ref);
        parts_free(ps);
}

static void test_overlapping_frames_or_another_shape_drop_the_part(void **state)
{
        struct parts *ps = parts_new(1 << 20, NULL);
        json_t *ref = json_integer(1);
        uint8_t data[64] = { 0 };
        struct proto_error err;
        struct proto_frame first = frame(ref, "rows", 64, data, 16, 16, true);
        struct proto_frame overlap = frame(ref, "rows", 64, data, 24, 16, true);
        assert_int_equal(parts_add(ps, &first, &err), 0);
        assert_true(parts_add(ps, &overlap, &err) < 0);
        assert_string_equal(err.field, "frame.offset");
        assert_int_equal(parts_bytes(ps), 0);
        assert_null(parts_left(ps, ref));
        struct proto_frame again = frame(ref, "rows", 64, data, 16, 16, true);
        assert_int_equal(parts_add(ps, &again, &err), 0);
        assert_true(parts_add(ps, &again, &err) < 0); /* the same piece twice overlaps too */
        assert_int_equal(parts_add(ps, &first, &err), 0);
        struct proto_frame bigger = frame(ref, "rows", 128, data, 32, 16, true);
        assert_true(parts_add(ps, &bigger, &err) < 0);
        assert_string_equal(err.field, "frame.shape");
        /* A whole part sent twice: said so, and both copies go. */
        struct proto_frame whole = frame(ref, "rows", 64, data, 0, 64, false);
        assert_int_equal(parts_add(ps, &whole, &err), 0);
        assert_true(parts_add(ps, &whole, &err) < 0);
        assert_string_equal(err.field, "frame.part");
        assert_non_null(strstr(err.message, "already received whole"));
        assert_int_equal(parts_bytes(ps), 0);
        json_decref(ref);
        parts_free(ps);
}

static void test_the_limit_counts_every_waiting_part(void **state)
{
        struct parts *ps = parts_new(150, NULL);
        json_t *a = json_integer(1), *b = json_integer(2);
        uint8_t data[100] = { 0 };
        struct proto_error err;
        struct proto_frame fa = frame(a, "x", 100, data, 0, 100, false);
        struct proto_frame fb = frame(b, "x", 100, data, 0, 100, false);
        assert_int_equal(parts_add(ps, &fa, &err), 0);
        assert_int_equal(parts_add(ps, &fb, &err), -EFBIG);
        assert_int_equal(err.code, KERR_TOO_LARGE);
        assert_non_null(strstr(err.message, "limits.max_input_bytes"));
        parts_drop(ps, a);
        assert_int_equal(parts_add(ps, &fb, &err), 0);
        json_decref(a);
        json_decref(b);
        parts_free(ps);
}

/* Zero-byte parts cost nothing in bytes; their number is bounded all the same. */
static void test_no_more_than_the_most_parts_wait(void **state)
{
        struct parts *ps = parts_new(1 << 20, NULL);
        json_t *refs[PARTS_MAX_PENDING + 1];
        uint8_t none[1];
        struct proto_error err;

        for (int i = 0; i <= PARTS_MAX_PENDING; i++) {
                refs[i] = json_integer(i);
                struct proto_frame f = frame(refs[i], "x", 0, none, 0, 0, false);
                assert_int_equal(parts_add(ps, &f, &err), i < PARTS_MAX_PENDING ? 0 : -EFBIG);
        }
        assert_int_equal(err.code, KERR_TOO_LARGE);
        assert_string_equal(err.field, "frame");
        /* A frame continuing a part that waits is not a new one. */
        struct proto_frame again = frame(refs[3], "x", 0, none, 0, 0, true);
        assert_int_equal(parts_add(ps, &again, &err), 0);
        parts_drop(ps, refs[0]);
        struct proto_frame last = frame(refs[PARTS_MAX_PENDING], "x", 0, none, 0, 0, false);
        assert_int_equal(parts_add(ps, &last, &err), 0);
        for (int i = 0; i <= PARTS_MAX_PENDING; i++)
                json_decref(refs[i]);
        parts_free(ps);
}

/* Waiting parts hold their bytes in the memory budget until they are taken or
 * dropped; a part the budget has no room for is refused (unavailable). */
static void test_waiting_parts_hold_memory_budget(void **state)
{
        struct membudget *mb;
        struct membudget_view v;
        assert_int_equal(membudget_new(64 * 300, &mb), 0); /* inputs may hold half of 63/64 of it */
        struct parts *ps = parts_new(1 << 20, mb);
        json_t *a = json_integer(1), *b = json_integer(2), *c = json_integer(3);
        uint8_t data[9000] = { 0 };
        struct proto_error err;
        struct proto_frame fa = frame(a, "x", 4000, data, 0, 4000, false);
        struct proto_frame fb = frame(b, "x", 4000, data, 0, 4000, false);
        struct proto_frame fc = frame(c, "x", 9000, data, 0, 9000, false);

        assert_int_equal(parts_add(ps, &fa, &err), 0);
        assert_int_equal(parts_add(ps, &fb, &err), 0);
        membudget_view(mb, &v);
        assert_int_equal(v.by_use[MEM_INPUTS], 8000);
        assert_int_equal(parts_add(ps, &fc, &err), -EINVAL);
        assert_int_equal(err.code, KERR_UNAVAILABLE);
        assert_non_null(strstr(err.message, "memory.max_bytes"));
        membudget_view(mb, &v);
        assert_int_equal(v.by_use[MEM_INPUTS], 8000);

        struct part *p = NULL;
        assert_int_equal(parts_take(ps, a, "x", &p, NULL, &err), 0);
        part_free(p);
        parts_drop(ps, c);
        membudget_view(mb, &v);
        assert_int_equal(v.by_use[MEM_INPUTS], 4000);
        /* Taken with ret_held, its bytes stay taken, the taker's to give back. */
        uint64_t held = 0;
        assert_int_equal(parts_take(ps, b, "x", &p, &held, &err), 0);
        assert_int_equal(held, 4000);
        assert_int_equal(parts_bytes(ps), 0);
        membudget_view(mb, &v);
        assert_int_equal(v.by_use[MEM_INPUTS], 4000);
        part_free(p);
        membudget_give(mb, MEM_INPUTS, held);
        parts_free(ps); /* gives back what still waits: nothing now */
        membudget_view(mb, &v);
        assert_int_equal(v.by_use[MEM_INPUTS], 0);
        json_decref(a);
        json_decref(b);
        json_decref(c);
        membudget_free(mb);
}

/* What a part holds in the budget is what has arrived of it, not what its header
 * claims: a 1-byte frame of a 1 GiB part takes one byte. A frame the budget has no
 * room for drops its part, and gives back what had arrived. */
static void test_a_part_holds_the_budget_as_its_bytes_arrive(void **state)
{
        struct membudget *mb;
        struct membudget_view v;
        assert_int_equal(membudget_new(64 * 300, &mb), 0); /* inputs: 9,450 bytes */
        struct parts *ps = parts_new(UINT64_C(8) << 30, mb);
        json_t *a = json_integer(1), *b = json_integer(2);
        uint8_t data[9000] = { 0 };
        struct proto_error err;
        uint64_t claim = UINT64_C(1) << 30;
        struct proto_frame huge = frame(a, "x", claim, data, 0, 1, true);

        assert_int_equal(parts_add(ps, &huge, &err), 0);
        assert_int_equal(parts_bytes(ps), claim); /* the connection's limit counts the claim */
        membudget_view(mb, &v);
        assert_int_equal(v.by_use[MEM_INPUTS], 1);
        struct proto_frame more = frame(a, "x", claim, data, 1, 4000, true);
        assert_int_equal(parts_add(ps, &more, &err), 0);
        membudget_view(mb, &v);
        assert_int_equal(v.by_use[MEM_INPUTS], 4001);

        /* Another part's frames find room for 5,449 bytes, then none. */
        struct proto_frame b1 = frame(b, "y", 9000, data, 0, 5000, true);
        struct proto_frame b2 = frame(b, "y", 9000, data, 5000, 4000, true);
        assert_int_equal(parts_add(ps, &b1, &err), 0);
        assert_int_equal(parts_add(ps, &b2, &err), -EINVAL);
        assert_int_equal(err.code, KERR_UNAVAILABLE);
        assert_null(parts_left(ps, b)); /* dropped whole */
        membudget_view(mb, &v);
        assert_int_equal(v.by_use[MEM_INPUTS], 4001);
        parts_free(ps);
        membudget_view(mb, &v);
        assert_int_equal(v.by_use[MEM_INPUTS], 0);
        json_decref(a);
        json_decref(b);
        membudget_free(mb);
}

/* A part whose last frame is older than the cut is dropped, its bytes given back;
 * a newer one stays. */
static void test_parts_whose_message_never_comes_expire(void **state)
{
        struct membudget *mb;
        struct membudget_view v;
        assert_int_equal(membudget_new(1 << 20, &mb), 0);
        struct parts *ps = parts_new(1 << 20, mb);
        json_t *a = json_integer(1), *b = json_integer(2);
        uint8_t data[100] = { 0 };
        struct proto_error err;
        struct proto_frame fa = frame(a, "x", 100, data, 0, 100, false);
        assert_int_equal(parts_add(ps, &fa, &err), 0);
        int64_t between = kiln_mono_ms() + 1;
        while (kiln_mono_ms() <= between)
                ;
        struct proto_frame fb = frame(b, "x", 100, data, 0, 50, true);
        assert_int_equal(parts_add(ps, &fb, &err), 0);

        assert_int_equal(parts_expire(ps, between), 1);
        assert_null(parts_left(ps, a));
        assert_string_equal(parts_left(ps, b), "x");
        membudget_view(mb, &v);
        assert_int_equal(v.by_use[MEM_INPUTS], 50);
        assert_int_equal(parts_expire(ps, kiln_mono_ms() + 1), 1);
        membudget_view(mb, &v);
        assert_int_equal(v.by_use[MEM_INPUTS], 0);
        assert_int_equal(parts_bytes(ps), 0);
        parts_free(ps);
        json_decref(a);
        json_decref(b);
        membudget_free(mb);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_a_part_in_one_frame_is_taken_whole),
                cmocka_unit_test(test_a_part_in_several_frames_is_assembled_in_order),
                cmocka_unit_test(test_an_incomplete_part_is_refused_when_taken),
                cmocka_unit_test(test_frames_in_any_order_make_the_part),
                cmocka_unit_test(test_overlapping_frames_or_another_shape_drop_the_part),
                cmocka_unit_test(test_the_limit_counts_every_waiting_part),
                cmocka_unit_test(test_no_more_than_the_most_parts_wait),
                cmocka_unit_test(test_waiting_parts_hold_memory_budget),
                cmocka_unit_test(test_a_part_holds_the_budget_as_its_bytes_arrive),
                cmocka_unit_test(test_parts_whose_message_never_comes_expire),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
