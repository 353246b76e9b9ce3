/* Stored objects (daemon/store_objects.c, store_items.c): versions, blobs, items,
 * tenant isolation, limits, durability, and the writer operations for them. Every
 * test works in its own directory under $KILN_TEST_TMPDIR. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "store.h"
#include "store_internal.h"
#include "store_fixture.h"

#define PIECE 4096
#define T0 1800000000000ll

static int setup(void **state)
{
        store_set_result_chunk(PIECE);
        return store_fixture_setup(state, "objects");
}

static int teardown(void **state)
{
        store_set_result_chunk(0);
        return store_fixture_teardown(state);
}

static const struct store_object_limits no_limits = { 0 };

static struct store_object_ref ref(const char *tenant, const char *cls, const char *name)
{
        return (struct store_object_ref){ .tenant = tenant, .cls = cls, .name = name };
}

static struct store_txn *wtxn(struct store *s)
{
        struct store_txn *t;

        assert_int_equal(store_txn_begin(s, true, &t), 0);
        return t;
}

static struct store_txn *rtxn(struct store *s)
{
        struct store_txn *t;

        assert_int_equal(store_txn_begin(s, false, &t), 0);
        return t;
}

/* An item with a string id and `size` bytes at buf. */
static struct store_object_item item(const char *id, const uint8_t *buf, size_t size)
{
        return (struct store_object_item){ .id = (const uint8_t *)id, .id_len = strlen(id), .data = buf,
                                           .size = size };
}

/* Puts a model-like object: meta text and a pattern blob of `size` bytes. */
static int put_model(struct store *s, const struct store_object_ref *o, const char *meta, size_t size,
                     const struct store_object_limits *lim, int64_t now, struct store_object_info *ret)
{
        struct store_txn *t = wtxn(s);
        int r = store_object_put(t, o, meta, meta ? strlen(meta) : 0, size, pattern_piece, NULL, lim, now, ret);

        assert_int_equal(store_txn_commit(t), 0);
        return r;
}

static int get_info(struct store *s, const struct store_object_ref *o, struct store_object_info *ret)
{
        struct store_txn *t = rtxn(s);
        int r = store_object_get(t, o, ret);

        store_txn_abort(t);
        return r;
}

static void assert_meta(const struct store_object_info *info, const char *meta)
{
        assert_int_equal(info->meta_len, strlen(meta));
        if (*meta)
                assert_memory_equal(info->meta, meta, strlen(meta));
        else
                assert_null(info->meta);
}

static struct store_tenant_usage usage(struct store *s, const char *tenant)
{
        struct store_tenant_usage u;
        struct store_txn *t = rtxn(s);

        assert_int_equal(store_object_usage(t, tenant, &u), 0);
        store_txn_abort(t);
        return u;
}

/* The items of an object as "id=size;..." in iteration order. */
struct listing {
        char text[4096];
        size_t n;
        size_t stop_after;
};

static int listing_cb(const uint8_t *id, size_t id_len, const uint8_t *data, size_t size, void *userdata)
{
        struct listing *l = userdata;
        size_t at = strlen(l->text);

        for (size_t i = 0; i < id_len; i++)
                at += (size_t)snprintf(l->text + at, sizeof(l->text) - at, id[i] >= 32 ? "%c" : "\\%d", id[i]);
        snprintf(l->text + at, sizeof(l->text) - at, "=%zu;", size);
        if (size)
                assert_int_equal(data[0], (uint8_t)size); /* the tests' items start with their size */
        l->n++;
        if (l->stop_after && l->n == l->stop_after)
                return -ECANCELED;
        return 0;
}

static int items_of(struct store *s, const struct store_object_ref *o, struct listing *l)
{
        struct store_txn *t = rtxn(s);
        int r;

        memset(l, 0, sizeof(*l));
        r = store_object_items_foreach(t, o, listing_cb, l);
        store_txn_abort(t);
        return r;
}

/* Item values whose first byte is their size (listing_cb checks it). */
static uint8_t *value(size_t size)
{
        uint8_t *b = calloc(1, size ? size : 1);

        assert_non_null(b);
        if (size)
                b[0] = (uint8_t)size;
        return b;
}

/* ---- models: header, meta, blob ---- */

static void put_then_replace_bumps_version_and_keeps_created(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref o = ref("acme", "risk.model", "credit");
        struct store_object_info info;
        struct store_txn *t;
        uint8_t *data;
        size_t size;

        assert_int_equal(put_model(f->s, &o, "trees=200", 3 * PIECE + 5, &no_limits, T0, &info), 0);
        assert_string_equal(info.name, "credit");
        assert_int_equal(info.version, 1);
        assert_true(info.created_ms == T0 && info.updated_ms == T0);
        assert_int_equal(info.bytes, 3 * PIECE + 5);
        assert_int_equal(info.count, 0);
        assert_meta(&info, "trees=200");
        store_object_info_clear(&info);
        assert_null(info.meta);

        assert_int_equal(put_model(f->s, &o, "trees=7", 10, &no_limits, T0 + 1000, NULL), 0);
        assert_int_equal(get_info(f->s, &o, &info), 0);
        assert_int_equal(info.version, 2);
        assert_true(info.created_ms == T0 && info.updated_ms == T0 + 1000);
        assert_int_equal(info.bytes, 10);
        assert_meta(&info, "trees=7");
        store_object_info_clear(&info);

        t = rtxn(f->s);
        assert_int_equal(store_object_blob_get(t, &o, &data, &size), 0);
        store_txn_abort(t);
        assert_int_equal(size, 10);
        assert_pattern(data, size, 0);
        free(data);

        /* an empty blob and no meta */
        assert_int_equal(put_model(f->s, &o, NULL, 0, &no_limits, T0 + 2000, &info), 0);
        assert_int_equal(info.version, 3);
        assert_int_equal(info.bytes, 0);
        assert_meta(&info, "");
        t = rtxn(f->s);
        assert_int_equal(store_object_blob_get(t, &o, &data, &size), 0);
        store_txn_abort(t);
        assert_non_null(data);
        assert_int_equal(size, 0);
        free(data);
        assert_int_equal(usage(f->s, "acme").objects, 1);
        assert_int_equal(usage(f->s, "acme").bytes, 0);
}

static void missing_object_is_enoent_everywhere(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref o = ref("acme", "risk.model", "nope");
        struct store_object_item id = item("a", NULL, 0);
        struct store_object_info info = { .version = 77 };
        struct listing l;
        struct store_txn *t;
        uint8_t *data = NULL;
        size_t size = 3;

        assert_int_equal(get_info(f->s, &o, &info), -ENOENT);
        assert_int_equal(info.version, 77);
        assert_int_equal(items_of(f->s, &o, &l), -ENOENT);
        t = wtxn(f->s);
        assert_int_equal(store_object_blob_get(t, &o, &data, &size), -ENOENT);
        assert_int_equal(store_object_items_delete(t, &o, &id, 1, T0, &info), -ENOENT);
        assert_int_equal(store_object_drop(t, &o), -ENOENT);
        assert_int_equal(store_txn_commit(t), 0);
        assert_null(data);
        assert_int_equal(size, 3);
        assert_int_equal(usage(f->s, "acme").objects, 0);
}

static void bad_names_ids_and_sizes_are_refused(void **state)
{
        struct fixture *f = *state;
        char long_name[STORE_OBJECT_NAME_MAX + 2], long_id[STORE_OBJECT_ITEM_ID_MAX + 2];
        uint8_t b = 0;
        struct store_object_item ok = item("a", &b, 1), big = ok, empty_id = ok, far_id = ok;
        struct store_txn *t = wtxn(f->s);
        struct store_object_ref o;

        memset(long_name, 'n', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        memset(long_id, 'i', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = '\0';
        const struct store_object_ref bad[] = {
                ref(NULL, "c", "n"), ref("", "c", "n"), ref("t", "", "n"), ref("t", "c", ""), ref("t", "c", NULL),
                ref("t", "ccccccccccccccccccccccccccccccccc", "n"), ref("t", "c", long_name),
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(store_object_put(t, &bad[i], NULL, 0, 0, NULL, NULL, NULL, T0, NULL), -EINVAL);
                assert_int_equal(store_object_items_put(t, &bad[i], NULL, 0, &ok, 1, NULL, T0, NULL), -EINVAL);
        }
        long_name[STORE_OBJECT_NAME_MAX] = '\0'; /* exactly the longest name */
        o = ref("t", "c", long_name);
        assert_int_equal(store_object_items_put(t, &o, NULL, 0, &ok, 1, NULL, T0, NULL), 0);

        o = ref("t", "c", "n");
        big.size = STORE_OBJECT_ITEM_MAX + 1; /* refused before its bytes are read */
        assert_int_equal(store_object_items_put(t, &o, NULL, 0, &big, 1, NULL, T0, NULL), -E2BIG);
        empty_id.id_len = 0;
        assert_int_equal(store_object_items_put(t, &o, NULL, 0, &empty_id, 1, NULL, T0, NULL), -EINVAL);
        far_id.id = (const uint8_t *)long_id;
        far_id.id_len = STORE_OBJECT_ITEM_ID_MAX + 1;
        assert_int_equal(store_object_items_put(t, &o, NULL, 0, &far_id, 1, NULL, T0, NULL), -EINVAL);
        assert_int_equal(store_object_put(t, &o, "m", STORE_OBJECT_META_MAX + 1, 0, NULL, NULL, NULL, T0, NULL),
                         -E2BIG);
        far_id.id_len = STORE_OBJECT_ITEM_ID_MAX; /* exactly the longest id */
        assert_int_equal(store_object_items_put(t, &o, NULL, 0, &far_id, 1, NULL, T0, NULL), 0);
        assert_int_equal(store_txn_commit(t), 0);
}

/* ---- collections: items ---- */

static void items_put_replace_delete_show_in_count_bytes_and_order(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref o = ref("acme", "vec.collection", "docs");
        uint8_t *v3 = value(3), *v5 = value(5), *v7 = value(7), *v9 = value(9);
        const uint8_t nul_id[] = { 'c', 0, 'x' };
        struct store_object_item batch[] = {
                item("b", v5, 5),
                item("a", v3, 3),
                { .id = nul_id, .id_len = 3, .data = v7, .size = 7 },
                item("a", v9, 9), /* later in the batch: it wins */
                item("ab", v3, 3),
        };
        struct store_object_info info;
        struct listing l;
        struct store_txn *t;

        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &o, "l2/4", 4, batch, 5, &no_limits, T0, &info), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(info.version, 1);
        assert_int_equal(info.count, 4);
        assert_int_equal(info.bytes, (1 + 5) + (1 + 9) + (3 + 7) + (2 + 3));
        assert_meta(&info, "l2/4");
        store_object_info_clear(&info);
        assert_int_equal(items_of(f->s, &o, &l), 0);
        assert_string_equal(l.text, "a=9;ab=3;b=5;c\\0x=7;");

        /* replace b (bigger), add d: one more version */
        struct store_object_item more[] = { item("d", v3, 3), item("b", v7, 7) };
        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &o, "l2/4", 4, more, 2, &no_limits, T0 + 1, &info), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(info.version, 2);
        assert_int_equal(info.count, 5);
        assert_int_equal(info.bytes, 10 + 8 + 10 + 5 + 4);
        store_object_info_clear(&info);
        assert_int_equal(items_of(f->s, &o, &l), 0);
        assert_string_equal(l.text, "a=9;ab=3;b=7;c\\0x=7;d=3;");

        /* delete a (twice in the batch) and an id that is not there */
        struct store_object_item ids[] = { item("a", NULL, 0), item("zz", NULL, 0), item("a", NULL, 0) };
        t = wtxn(f->s);
        assert_int_equal(store_object_items_delete(t, &o, ids, 3, T0 + 2, &info), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(info.version, 3);
        assert_int_equal(info.count, 4);
        assert_int_equal(info.bytes, 8 + 10 + 5 + 4);
        assert_true(info.updated_ms == T0 + 2 && info.created_ms == T0);
        assert_meta(&info, "l2/4");
        store_object_info_clear(&info);
        assert_int_equal(items_of(f->s, &o, &l), 0);
        assert_string_equal(l.text, "ab=3;b=7;c\\0x=7;d=3;");
        assert_int_equal(usage(f->s, "acme").bytes, 27);
        assert_int_equal(usage(f->s, "acme").objects, 1);

        /* ids none of which is there: nothing changes, the version neither */
        struct store_object_item gone[] = { item("a", NULL, 0), item("zz", NULL, 0) };
        t = wtxn(f->s);
        assert_int_equal(store_object_items_delete(t, &o, gone, 2, T0 + 3, &info), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(info.version, 3);
        assert_int_equal(info.count, 4);
        assert_true(info.updated_ms == T0 + 2);
        store_object_info_clear(&info);

        /* a callback's negative return stops the walk and is returned */
        t = rtxn(f->s);
        memset(&l, 0, sizeof(l));
        l.stop_after = 2;
        assert_int_equal(store_object_items_foreach(t, &o, listing_cb, &l), -ECANCELED);
        store_txn_abort(t);
        assert_int_equal(l.n, 2);
        free(v3);
        free(v5);
        free(v7);
        free(v9);
}

/* Items of a collection whose name is a prefix of another's, or of another class,
 * stay apart. */
static void items_of_neighbouring_objects_stay_apart(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref a = ref("acme", "vec.collection", "doc"), b = ref("acme", "vec.collection", "docs"),
                                c = ref("acme", "vec.other", "doc");
        uint8_t *v1 = value(1), *v2 = value(2);
        struct store_object_item ia[] = { item("x", v1, 1), item("\x7f", v1, 1) }, ib[] = { item("y", v2, 2) };
        struct listing l;
        struct store_txn *t = wtxn(f->s);

        assert_int_equal(store_object_items_put(t, &b, NULL, 0, ib, 1, NULL, T0, NULL), 0);
        assert_int_equal(store_object_items_put(t, &a, NULL, 0, ia, 2, NULL, T0, NULL), 0);
        assert_int_equal(store_object_items_put(t, &c, NULL, 0, ib, 1, NULL, T0, NULL), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(items_of(f->s, &a, &l), 0);
        assert_string_equal(l.text, "x=1;\x7f=1;");
        assert_int_equal(items_of(f->s, &b, &l), 0);
        assert_string_equal(l.text, "y=2;");
        t = wtxn(f->s);
        assert_int_equal(store_object_drop(t, &a), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(items_of(f->s, &b, &l), 0);
        assert_string_equal(l.text, "y=2;");
        assert_int_equal(items_of(f->s, &c, &l), 0);
        assert_string_equal(l.text, "y=2;");
        free(v1);
        free(v2);
}

static void items_put_with_other_meta_is_eexist_and_writes_nothing(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref o = ref("acme", "vec.collection", "docs");
        uint8_t *v = value(4);
        struct store_object_item one = item("a", v, 4), two = item("b", v, 4);
        struct store_object_info info;
        struct listing l;
        struct store_txn *t = wtxn(f->s);

        assert_int_equal(store_object_items_put(t, &o, "cosine/4", 8, &one, 1, NULL, T0, NULL), 0);
        assert_int_equal(store_object_items_put(t, &o, "l2/4", 4, &two, 1, NULL, T0, NULL), -EEXIST);
        assert_int_equal(store_object_items_put(t, &o, "cosine/8", 8, &two, 1, NULL, T0, NULL), -EEXIST);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(get_info(f->s, &o, &info), 0);
        assert_int_equal(info.version, 1);
        assert_int_equal(info.count, 1);
        assert_meta(&info, "cosine/4");
        store_object_info_clear(&info);
        assert_int_equal(items_of(f->s, &o, &l), 0);
        assert_string_equal(l.text, "a=4;");

        /* no meta: no check, the object keeps its own */
        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &o, NULL, 0, &two, 1, NULL, T0, &info), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(info.version, 2);
        assert_meta(&info, "cosine/4");
        store_object_info_clear(&info);
        free(v);
}

/* A put replaces the items too. */
static void put_over_a_collection_drops_its_items(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref o = ref("acme", "vec.collection", "docs");
        uint8_t *v = value(4);
        struct store_object_item it[] = { item("a", v, 4), item("b", v, 4) };
        struct store_object_info info;
        struct listing l;
        struct store_txn *t = wtxn(f->s);

        assert_int_equal(store_object_items_put(t, &o, "m", 1, it, 2, NULL, T0, NULL), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(put_model(f->s, &o, "m2", 3, NULL, T0, &info), 0);
        assert_int_equal(info.version, 2);
        assert_int_equal(info.count, 0);
        assert_int_equal(info.bytes, 3);
        store_object_info_clear(&info);
        assert_int_equal(items_of(f->s, &o, &l), 0);
        assert_int_equal(l.n, 0);
        assert_int_equal(usage(f->s, "acme").bytes, 3);
        free(v);
}

/* ---- drop, tenants, listing ---- */

static void drop_deletes_everything_and_versions_go_on(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref o = ref("acme", "vec.collection", "docs");
        uint8_t *v = value(8), *data;
        struct store_object_item it[] = { item("a", v, 8), item("b", v, 8) };
        struct store_object_info info;
        struct listing l;
        struct store_txn *t = wtxn(f->s);
        size_t size;

        assert_int_equal(store_object_items_put(t, &o, "m", 1, it, 2, NULL, T0, NULL), 0);
        assert_int_equal(store_object_items_put(t, &o, "m", 1, it, 1, NULL, T0, NULL), 0); /* version 2 */
        assert_int_equal(store_txn_commit(t), 0);
        t = wtxn(f->s);
        assert_int_equal(store_object_drop(t, &o), 0);
        assert_int_equal(store_object_drop(t, &o), -ENOENT);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(get_info(f->s, &o, &info), -ENOENT);
        assert_int_equal(items_of(f->s, &o, &l), -ENOENT);
        t = rtxn(f->s);
        assert_int_equal(store_object_blob_get(t, &o, &data, &size), -ENOENT);
        store_txn_abort(t);
        assert_int_equal(usage(f->s, "acme").objects, 0);
        assert_int_equal(usage(f->s, "acme").bytes, 0);

        /* the name again: version 3, nothing of the old items (a cache keyed by
         * version never serves what was computed from the dropped one) */
        store_fixture_reopen(f, STORE_SYNC_FULL);
        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &o, "m", 1, it + 1, 1, NULL, T0 + 5, &info), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(info.version, 3);
        assert_int_equal(info.count, 1);
        assert_true(info.created_ms == T0 + 5);
        store_object_info_clear(&info);
        assert_int_equal(items_of(f->s, &o, &l), 0);
        assert_string_equal(l.text, "b=8;");
        assert_int_equal(usage(f->s, "acme").objects, 1);
        /* It began at version 3, and still did after a change (items or a put);
         * dropped and put once more, the next object begins past both. */
        uint64_t began = 0;
        t = wtxn(f->s);
        assert_int_equal(store_object_began(t, &o, &began), 0);
        assert_int_equal(began, 3);
        assert_int_equal(store_object_items_put(t, &o, "m", 1, it, 1, NULL, T0 + 6, NULL), 0);
        assert_int_equal(store_object_began(t, &o, &began), 0);
        assert_int_equal(began, 3);
        assert_int_equal(store_object_drop(t, &o), 0);
        assert_int_equal(store_object_put(t, &o, "m", 1, 0, NULL, NULL, NULL, T0 + 7, &info), 0);
        assert_int_equal(info.version, 5);
        store_object_info_clear(&info);
        assert_int_equal(store_object_began(t, &o, &began), 0);
        assert_int_equal(began, 5);
        assert_int_equal(store_txn_commit(t), 0);
        free(v);
}

static void same_name_under_two_tenants_stays_apart(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref a = ref("acme", "risk.model", "m"), b = ref("globex", "risk.model", "m");
        struct store_object_info info, *list;
        struct store_txn *t;
        uint8_t *data;
        size_t n, size;

        assert_int_equal(put_model(f->s, &a, "A", 100, NULL, T0, NULL), 0);
        assert_int_equal(put_model(f->s, &a, "A", 100, NULL, T0, NULL), 0);
        assert_int_equal(put_model(f->s, &b, "B", 2 * PIECE + 1, NULL, T0, NULL), 0);
        assert_int_equal(get_info(f->s, &a, &info), 0);
        assert_int_equal(info.version, 2);
        assert_meta(&info, "A");
        store_object_info_clear(&info);
        assert_int_equal(get_info(f->s, &b, &info), 0);
        assert_int_equal(info.version, 1);
        assert_meta(&info, "B");
        store_object_info_clear(&info);
        assert_int_equal(usage(f->s, "acme").bytes, 100);
        assert_int_equal(usage(f->s, "globex").bytes, 2 * PIECE + 1);

        t = rtxn(f->s);
        assert_int_equal(store_object_list(t, "globex", "risk.model", &list, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(list[0].name, "m");
        assert_int_equal(list[0].bytes, 2 * PIECE + 1);
        store_object_infos_free(list, n);
        assert_int_equal(store_object_list(t, "initech", "risk.model", &list, &n), 0);
        assert_int_equal(n, 0);
        assert_null(list);
        store_txn_abort(t);

        t = wtxn(f->s);
        assert_int_equal(store_object_drop(t, &a), 0);
        assert_int_equal(store_txn_commit(t), 0);
        t = rtxn(f->s);
        assert_int_equal(store_object_blob_get(t, &b, &data, &size), 0);
        store_txn_abort(t);
        assert_int_equal(size, 2 * PIECE + 1);
        assert_pattern(data, size, 0);
        free(data);
        assert_int_equal(usage(f->s, "acme").objects, 0);
        assert_int_equal(usage(f->s, "globex").objects, 1);
}

static void list_gives_a_classes_objects_in_name_order(void **state)
{
        struct fixture *f = *state;
        const char *names[] = { "zeta", "alpha", "mid", "alph" };
        struct store_object_ref other = ref("acme", "risk.models", "x"), o;
        struct store_object_info *list;
        struct store_txn *t;
        size_t n;

        for (size_t i = 0; i < 4; i++) {
                o = ref("acme", "risk.model", names[i]);
                assert_int_equal(put_model(f->s, &o, names[i], i * 10, NULL, T0 + (int64_t)i, NULL), 0);
        }
        assert_int_equal(put_model(f->s, &other, "", 1, NULL, T0, NULL), 0);
        t = rtxn(f->s);
        assert_int_equal(store_object_list(t, "acme", "risk.model", &list, &n), 0);
        store_txn_abort(t);
        assert_int_equal(n, 4);
        assert_string_equal(list[0].name, "alph");
        assert_string_equal(list[1].name, "alpha");
        assert_string_equal(list[2].name, "mid");
        assert_string_equal(list[3].name, "zeta");
        assert_int_equal(list[1].bytes, 10);
        assert_int_equal(list[1].version, 1);
        assert_true(list[3].created_ms == T0);
        assert_meta(&list[2], "mid");
        store_object_infos_free(list, n);
        store_object_infos_free(NULL, 0);
        assert_int_equal(usage(f->s, "acme").objects, 5);
}

/* ---- limits ---- */

/* Snapshot of what a refused change must leave as it was. */
struct seen {
        uint64_t version, bytes, count;
        struct store_tenant_usage u;
        char items[4096];
};

static void snapshot(struct store *s, const struct store_object_ref *o, struct seen *ret)
{
        struct store_object_info info;
        struct listing l;

        memset(ret, 0, sizeof(*ret));
        if (get_info(s, o, &info) == 0) {
                ret->version = info.version;
                ret->bytes = info.bytes;
                ret->count = info.count;
                store_object_info_clear(&info);
                assert_int_equal(items_of(s, o, &l), 0);
                snprintf(ret->items, sizeof(ret->items), "%s", l.text);
        }
        ret->u = usage(s, o->tenant);
}

static void assert_unchanged(struct store *s, const struct store_object_ref *o, const struct seen *before)
{
        struct seen now;

        snapshot(s, o, &now);
        assert_int_equal(now.version, before->version);
        assert_int_equal(now.bytes, before->bytes);
        assert_int_equal(now.count, before->count);
        assert_int_equal(now.u.objects, before->u.objects);
        assert_int_equal(now.u.bytes, before->u.bytes);
        assert_string_equal(now.items, before->items);
}

static void object_bytes_limit_is_efbig(void **state)
{
        struct fixture *f = *state;
        const struct store_object_limits lim = { .max_object_bytes = 1000 };
        struct store_object_ref m = ref("acme", "risk.model", "m"), c = ref("acme", "vec.collection", "c");
        uint8_t *v = value(400);
        struct store_object_item it[] = { item("a", v, 400), item("b", v, 400), item("c", v, 400) };
        struct seen before;
        struct store_txn *t;

        assert_int_equal(put_model(f->s, &m, "", 1000, &lim, T0, NULL), 0);
        snapshot(f->s, &m, &before);
        assert_int_equal(put_model(f->s, &m, "", 1001, &lim, T0, NULL), -EFBIG);
        assert_unchanged(f->s, &m, &before);

        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &c, NULL, 0, it, 2, &lim, T0, NULL), 0); /* 802 bytes */
        assert_int_equal(store_txn_commit(t), 0);
        snapshot(f->s, &c, &before);
        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &c, NULL, 0, it + 2, 1, &lim, T0, NULL), -EFBIG);
        assert_int_equal(store_txn_commit(t), 0);
        assert_unchanged(f->s, &c, &before);
        /* a new object over the limit is not created at all */
        struct store_object_ref n = ref("acme", "vec.collection", "new");
        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &n, NULL, 0, it, 3, &lim, T0, NULL), -EFBIG);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(get_info(f->s, &n, &(struct store_object_info){ 0 }), -ENOENT);
        free(v);
}

static void objects_per_tenant_limit_is_edquot(void **state)
{
        struct fixture *f = *state;
        const struct store_object_limits lim = { .max_objects_per_tenant = 2 };
        struct store_object_ref a = ref("acme", "risk.model", "a"), b = ref("acme", "vec.collection", "b"),
                                c = ref("acme", "risk.model", "c"), other = ref("globex", "risk.model", "c");
        uint8_t *v = value(1);
        struct store_object_item it = item("x", v, 1);
        struct seen before;
        struct store_txn *t;

        assert_int_equal(put_model(f->s, &a, "", 5, &lim, T0, NULL), 0);
        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &b, NULL, 0, &it, 1, &lim, T0, NULL), 0);
        assert_int_equal(store_txn_commit(t), 0);
        snapshot(f->s, &c, &before);
        assert_int_equal(before.u.objects, 2);
        assert_int_equal(put_model(f->s, &c, "", 5, &lim, T0, NULL), -EDQUOT);
        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &c, NULL, 0, &it, 1, &lim, T0, NULL), -EDQUOT);
        assert_int_equal(store_txn_commit(t), 0);
        assert_unchanged(f->s, &c, &before);
        assert_int_equal(get_info(f->s, &c, &(struct store_object_info){ 0 }), -ENOENT);
        /* changing an object the tenant has is no new object; another tenant has room */
        assert_int_equal(put_model(f->s, &a, "", 6, &lim, T0, NULL), 0);
        assert_int_equal(put_model(f->s, &other, "", 6, &lim, T0, NULL), 0);
        /* after a drop there is room again */
        t = wtxn(f->s);
        assert_int_equal(store_object_drop(t, &a), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(put_model(f->s, &c, "", 5, &lim, T0, NULL), 0);
        free(v);
}

static void tenant_bytes_limit_is_eoverflow(void **state)
{
        struct fixture *f = *state;
        const struct store_object_limits lim = { .max_tenant_bytes = 3000 };
        struct store_object_ref a = ref("acme", "risk.model", "a"), b = ref("acme", "vec.collection", "b"),
                                other = ref("globex", "risk.model", "a");
        uint8_t *v = value(499);
        struct store_object_item it[] = { item("x", v, 499), item("y", v, 499), item("z", v, 499) };
        struct seen before;
        struct store_txn *t;

        assert_int_equal(put_model(f->s, &a, "", 2000, &lim, T0, NULL), 0);
        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &b, NULL, 0, it, 2, &lim, T0, NULL), 0); /* 1000: full */
        assert_int_equal(store_txn_commit(t), 0);
        snapshot(f->s, &b, &before);
        assert_int_equal(before.u.bytes, 3000);
        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &b, NULL, 0, it + 2, 1, &lim, T0, NULL), -EOVERFLOW);
        assert_int_equal(store_txn_commit(t), 0);
        assert_unchanged(f->s, &b, &before);
        assert_int_equal(put_model(f->s, &a, "", 2001, &lim, T0, NULL), -EOVERFLOW);
        assert_unchanged(f->s, &b, &before);
        /* replacing within the tenant's bytes, shrinking, and another tenant are fine */
        assert_int_equal(put_model(f->s, &a, "", 2000, &lim, T0, NULL), 0);
        assert_int_equal(put_model(f->s, &a, "", 100, &lim, T0, NULL), 0);
        assert_int_equal(put_model(f->s, &other, "", 3000, &lim, T0, NULL), 0);
        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &b, NULL, 0, it + 2, 1, &lim, T0, NULL), 0);
        assert_int_equal(store_txn_commit(t), 0);
        assert_int_equal(usage(f->s, "acme").bytes, 100 + 1500);
        free(v);
}

/* ---- durability ---- */

static void objects_survive_close_and_reopen(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref m = ref("acme", "risk.model", "m"), c = ref("acme", "vec.collection", "c"),
                                gone = ref("acme", "risk.model", "gone");
        uint8_t *v = value(16), *data;
        struct store_object_item it[] = { item("k1", v, 16), item("k0", v, 16) };
        struct store_object_info info;
        struct listing l;
        struct store_txn *t;
        size_t size;

        assert_int_equal(put_model(f->s, &m, "trees=3", 5 * PIECE + 3, NULL, T0, NULL), 0);
        assert_int_equal(put_model(f->s, &gone, "", 10, NULL, T0, NULL), 0);
        t = wtxn(f->s);
        assert_int_equal(store_object_items_put(t, &c, "ip/4", 4, it, 2, NULL, T0 + 1, NULL), 0);
        assert_int_equal(store_object_drop(t, &gone), 0);
        assert_int_equal(store_txn_commit(t), 0);

        store_fixture_reopen(f, STORE_SYNC_FULL);
        assert_int_equal(get_info(f->s, &m, &info), 0);
        assert_int_equal(info.version, 1);
        assert_int_equal(info.bytes, 5 * PIECE + 3);
        assert_meta(&info, "trees=3");
        store_object_info_clear(&info);
        t = rtxn(f->s);
        assert_int_equal(store_object_blob_get(t, &m, &data, &size), 0);
        store_txn_abort(t);
        assert_int_equal(size, 5 * PIECE + 3);
        assert_pattern(data, size, 0);
        free(data);
        assert_int_equal(get_info(f->s, &c, &info), 0);
        assert_int_equal(info.count, 2);
        assert_true(info.updated_ms == T0 + 1);
        assert_meta(&info, "ip/4");
        store_object_info_clear(&info);
        assert_int_equal(items_of(f->s, &c, &l), 0);
        assert_string_equal(l.text, "k0=16;k1=16;");
        assert_int_equal(get_info(f->s, &gone, &info), -ENOENT);
        assert_int_equal(usage(f->s, "acme").objects, 2);
        assert_int_equal(usage(f->s, "acme").bytes, 5 * PIECE + 3 + 2 * (2 + 16));
        assert_int_equal(put_model(f->s, &gone, "", 1, NULL, T0, &info), 0);
        assert_int_equal(info.version, 2);
        store_object_info_clear(&info);
        free(v);
}

/* ---- the writer ---- */

struct obj_op {
        struct store_op op;
        size_t shift;
};

static void op_blob_piece(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        struct obj_op *o = (struct obj_op *)((char *)op - offsetof(struct obj_op, op));

        pattern_piece(NULL, dst, offset + o->shift, len);
}

static void init_obj_op(struct obj_op *o, enum store_op_type type, const struct store_object_ref *ref_)
{
        memset(o, 0, sizeof(*o));
        o->op.type = type;
        o->op.object = *ref_;
        o->op.write_blob = op_blob_piece;
}

static void writer_applies_every_object_op(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref m = ref("acme", "risk.model", "m"), c = ref("acme", "vec.collection", "c");
        uint8_t *v = value(12);
        struct store_object_item it[] = { item("b", v, 12), item("a", v, 12) }, del = item("b", NULL, 0);
        struct obj_op put, items, drop, get, list, items_del;
        struct store_writer *w;

        assert_int_equal(store_writer_start(f->s, &w), 0);
        init_obj_op(&put, STORE_OP_OBJECT_PUT, &m);
        put.op.meta = "json";
        put.op.meta_len = 4;
        put.op.blob_size = 9 * PIECE + 9;
        put.shift = 3;
        fixture_op_run(w, &put.op);
        assert_int_equal(put.op.status, 0);
        assert_int_equal(put.op.object_info.version, 1);
        assert_int_equal(put.op.object_info.bytes, 9 * PIECE + 9);
        assert_meta(&put.op.object_info, "json");
        store_object_info_clear(&put.op.object_info);

        init_obj_op(&items, STORE_OP_OBJECT_ITEMS_PUT, &c);
        items.op.meta = "l2/3";
        items.op.meta_len = 4;
        items.op.items = it;
        items.op.n_items = 2;
        fixture_op_run(w, &items.op);
        assert_int_equal(items.op.status, 0);
        assert_int_equal(items.op.object_info.count, 2);
        store_object_info_clear(&items.op.object_info);

        init_obj_op(&items_del, STORE_OP_OBJECT_ITEMS_DELETE, &c);
        items_del.op.items = &del;
        items_del.op.n_items = 1;
        fixture_op_run(w, &items_del.op);
        assert_int_equal(items_del.op.status, 0);
        assert_int_equal(items_del.op.object_info.version, 2);
        assert_int_equal(items_del.op.object_info.count, 1);
        store_object_info_clear(&items_del.op.object_info);

        init_obj_op(&get, STORE_OP_OBJECT_GET, &m);
        get.op.with_blob = true;
        fixture_op_run(w, &get.op);
        assert_int_equal(get.op.status, 0);
        assert_int_equal(get.op.object_info.version, 1);
        assert_meta(&get.op.object_info, "json");
        assert_int_equal(get.op.result_size, 9 * PIECE + 9);
        assert_pattern(get.op.result_out, get.op.result_size, 3);
        store_object_info_clear(&get.op.object_info);
        free(get.op.result_out);

        init_obj_op(&get, STORE_OP_OBJECT_GET, &c);
        fixture_op_run(w, &get.op);
        assert_int_equal(get.op.status, 0);
        assert_null(get.op.result_out);
        assert_int_equal(get.op.result_size, 0);
        assert_int_equal(get.op.object_info.count, 1);
        store_object_info_clear(&get.op.object_info);

        init_obj_op(&list, STORE_OP_OBJECT_LIST, &(struct store_object_ref){ .tenant = "acme", .cls = "risk.model" });
        fixture_op_run(w, &list.op);
        assert_int_equal(list.op.status, 0);
        assert_int_equal(list.op.object_n, 1);
        assert_string_equal(list.op.object_list[0].name, "m");
        store_object_infos_free(list.op.object_list, list.op.object_n);

        init_obj_op(&drop, STORE_OP_OBJECT_DROP, &m);
        fixture_op_run(w, &drop.op);
        assert_int_equal(drop.op.status, 0);
        init_obj_op(&get, STORE_OP_OBJECT_GET, &m);
        fixture_op_run(w, &get.op);
        assert_int_equal(get.op.status, -ENOENT);
        assert_null(get.op.object_info.meta);
        store_writer_stop(w);
        free(v);
}

/* An items put that must find its object (vec.put without a metric) writes nothing
 * when the object was dropped since it was checked, and adds as usual otherwise. */
static void items_put_that_must_exist_finds_a_dropped_object_gone(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref c = ref("acme", "vec.collection", "c");
        uint8_t *v = value(12);
        struct store_object_item it[] = { item("a", v, 12) };
        struct obj_op items, drop, get;
        struct store_writer *w;

        assert_int_equal(store_writer_start(f->s, &w), 0);
        init_obj_op(&items, STORE_OP_OBJECT_ITEMS_PUT, &c);
        items.op.meta = "l2/3";
        items.op.meta_len = 4;
        items.op.items = it;
        items.op.n_items = 1;
        items.op.must_exist = true;
        fixture_op_run(w, &items.op);
        assert_int_equal(items.op.status, -ENOENT);

        items.op.must_exist = false;
        fixture_op_run(w, &items.op);
        assert_int_equal(items.op.status, 0);
        store_object_info_clear(&items.op.object_info);
        items.op.must_exist = true;
        fixture_op_run(w, &items.op);
        assert_int_equal(items.op.status, 0);
        assert_int_equal(items.op.object_info.version, 2);
        store_object_info_clear(&items.op.object_info);

        init_obj_op(&drop, STORE_OP_OBJECT_DROP, &c);
        fixture_op_run(w, &drop.op);
        assert_int_equal(drop.op.status, 0);
        fixture_op_run(w, &items.op);
        assert_int_equal(items.op.status, -ENOENT);
        init_obj_op(&get, STORE_OP_OBJECT_GET, &c);
        fixture_op_run(w, &get.op);
        assert_int_equal(get.op.status, -ENOENT);
        store_writer_stop(w);
        free(v);
}

/* Two puts of new objects queued together, one place left: the limit is checked in the
 * transaction, so exactly one of them gets it. */
static void writer_checks_limits_inside_the_transaction(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref a = ref("acme", "risk.model", "a"), b = ref("acme", "risk.model", "b");
        struct obj_op pa, pb, wait;
        struct store_writer *w;

        init_obj_op(&pa, STORE_OP_OBJECT_PUT, &a);
        init_obj_op(&pb, STORE_OP_OBJECT_PUT, &b);
        pa.op.blob_size = pb.op.blob_size = 10;
        pa.op.limits.max_objects_per_tenant = pb.op.limits.max_objects_per_tenant = 1;
        pa.op.done = pb.op.done = fixture_op_done; /* waited for through the barrier below */
        init_obj_op(&wait, STORE_OP_BARRIER, &a);
        struct fixture_wait unused = { .done = false };
        pthread_mutex_init(&unused.lock, NULL);
        pthread_cond_init(&unused.cond, NULL);
        pa.op.userdata = pb.op.userdata = &unused;
        assert_int_equal(store_writer_start(f->s, &w), 0);
        store_writer_submit(w, &pa.op);
        store_writer_submit(w, &pb.op);
        fixture_op_run(w, &wait.op);
        store_writer_stop(w);
        assert_int_equal(pa.op.status, 0);
        assert_int_equal(pb.op.status, -EDQUOT);
        store_object_info_clear(&pa.op.object_info);
        assert_null(pb.op.object_info.meta);
        assert_int_equal(usage(f->s, "acme").objects, 1);
        assert_int_equal(get_info(f->s, &b, &(struct store_object_info){ 0 }), -ENOENT);
        pthread_mutex_destroy(&unused.lock);
        pthread_cond_destroy(&unused.cond);
}

/* A worker reads objects in its own read transaction while the writer runs. */
struct reader_arg {
        struct store *s;
        struct listing l;
        int r;
};

static void *reader_main(void *arg)
{
        struct reader_arg *ra = arg;
        struct store_object_ref c = ref("acme", "vec.collection", "c");
        struct store_txn *t;

        ra->r = store_txn_begin(ra->s, false, &t);
        if (ra->r < 0)
                return NULL;
        ra->r = store_object_items_foreach(t, &c, listing_cb, &ra->l);
        store_txn_abort(t);
        return NULL;
}

static void reads_run_on_any_thread_beside_the_writer(void **state)
{
        struct fixture *f = *state;
        struct store_object_ref c = ref("acme", "vec.collection", "c");
        uint8_t *v = value(3);
        struct store_object_item it[] = { item("q", v, 3), item("p", v, 3) };
        struct reader_arg ra = { .s = f->s };
        struct obj_op items;
        struct store_writer *w;
        pthread_t th;

        assert_int_equal(store_writer_start(f->s, &w), 0);
        init_obj_op(&items, STORE_OP_OBJECT_ITEMS_PUT, &c);
        items.op.items = it;
        items.op.n_items = 2;
        fixture_op_run(w, &items.op);
        assert_int_equal(items.op.status, 0);
        store_object_info_clear(&items.op.object_info);
        assert_int_equal(pthread_create(&th, NULL, reader_main, &ra), 0);
        pthread_join(th, NULL);
        store_writer_stop(w);
        assert_int_equal(ra.r, 0);
        assert_string_equal(ra.l.text, "p=3;q=3;");
        free(v);
}

static const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(put_then_replace_bumps_version_and_keeps_created, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_object_is_enoent_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_names_ids_and_sizes_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(items_put_replace_delete_show_in_count_bytes_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(items_of_neighbouring_objects_stay_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(items_put_with_other_meta_is_eexist_and_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(put_over_a_collection_drops_its_items, setup, teardown),
        cmocka_unit_test_setup_teardown(drop_deletes_everything_and_versions_go_on, setup, teardown),
        cmocka_unit_test_setup_teardown(same_name_under_two_tenants_stays_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(list_gives_a_classes_objects_in_name_order, setup, teardown),
        cmocka_unit_test_setup_teardown(object_bytes_limit_is_efbig, setup, teardown),
        cmocka_unit_test_setup_teardown(objects_per_tenant_limit_is_edquot, setup, teardown),
        cmocka_unit_test_setup_teardown(tenant_bytes_limit_is_eoverflow, setup, teardown),
        cmocka_unit_test_setup_teardown(objects_survive_close_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_applies_every_object_op, setup, teardown),
        cmocka_unit_test_setup_teardown(items_put_that_must_exist_finds_a_dropped_object_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_checks_limits_inside_the_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(reads_run_on_any_thread_beside_the_writer, setup, teardown),
};

int main(void)
{
        return cmocka_run_group_tests(tests, NULL, NULL);
}
