/* Unit tests for daemon/objects.c: the versions kilnd knows on its loop thread (read
 * from every stored object at start), compiled snapshots shared by
 * (tenant, class, name, version), their eviction, and the worker pool. A real LMDB
 * store in a scratch directory, the real store writer and the real classes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "mailbox.h"
#include "objects.h"
#include "risk_score/model.h"
#include "store_fixture.h"
#include "storeq.h"
#include "util.h"
#include "vec_search/collection.h"

#define T "acme"
#define MODEL "risk.model"
#define COLL "vec.collection"

/* ---- helpers ---- */

/* An XGBoost 1.7 JSON model of n_trees stumps over n_features features, as
 * tests/integration/kiln_objects.py writes them. Caller frees. */
static char *model_json(unsigned n_trees, unsigned n_features, float leaf)
{
        size_t cap = 1024 + (size_t)n_trees * 700, len = 0;
        char *s = malloc(cap);

        assert_non_null(s);
        len += (size_t)snprintf(s + len, cap - len,
                                "{\"learner\":{\"attributes\":{},\"feature_names\":[],\"feature_types\":[],"
                                "\"gradient_booster\":{\"model\":{\"gbtree_model_param\":{\"num_parallel_tree\":\"1\","
                                "\"num_trees\":\"%u\",\"size_leaf_vector\":\"0\"},\"tree_info\":[",
                                n_trees);
        for (unsigned t = 0; t < n_trees; t++)
                len += (size_t)snprintf(s + len, cap - len, "%s0", t ? "," : "");
        len += (size_t)snprintf(s + len, cap - len, "],\"trees\":[");
        for (unsigned t = 0; t < n_trees; t++)
                len += (size_t)snprintf(
                        s + len, cap - len,
                        "%s{\"base_weights\":[0,%g,%g],\"categories\":[],\"categories_nodes\":[],"
                        "\"categories_segments\":[],\"categories_sizes\":[],\"default_left\":[1,0,0],\"id\":%u,"
                        "\"left_children\":[1,-1,-1],\"loss_changes\":[1,0,0],\"parents\":[2147483647,0,0],"
                        "\"right_children\":[2,-1,-1],\"split_conditions\":[0.5,%g,%g],\"split_indices\":[%u,0,0],"
                        "\"split_type\":[0,0,0],\"sum_hessian\":[10,5,5],\"tree_param\":{\"num_deleted\":\"0\","
                        "\"num_feature\":\"%u\",\"num_nodes\":\"3\",\"size_leaf_vector\":\"0\"}}",
                        t ? "," : "", leaf, -leaf, t, leaf, -leaf, t % n_features, n_features);
        len += (size_t)snprintf(s + len, cap - len,
                                "]},\"name\":\"gbtree\"},\"learner_model_param\":{\"base_score\":\"5E-1\","
                                "\"boost_from_average\":\"1\",\"num_class\":\"0\",\"num_feature\":\"%u\","
                                "\"num_target\":\"1\"},\"objective\":{\"name\":\"binary:logistic\","
                                "\"reg_loss_param\":{\"scale_pos_weight\":\"1\"}}},\"version\":[1,7,4]}",
                                n_features);
        assert_true(len < cap);
        return s;
}

static void copy_blob(void *opaque, uint8_t *dst, size_t offset, size_t len)
{
        memcpy(dst, (const uint8_t *)opaque + offset, len);
}

/* Puts `blob` as model `name` of T straight into the store; returns its version. */
static uint64_t put_model(struct store *s, const char *tenant, const char *name, const char *blob)
{
        struct store_object_ref ref = { .tenant = tenant, .cls = MODEL, .name = name };
        struct store_object_info info = { 0 };
        struct store_txn *t;
        uint8_t meta[RISK_MODEL_META_BYTES];

        risk_model_meta_encode(1, 1, meta);
        assert_int_equal(store_txn_begin(s, true, &t), 0);
        assert_int_equal(store_object_put(t, &ref, meta, sizeof(meta), strlen(blob), copy_blob, (void *)blob, NULL, 1,
                                          &info),
                         0);
        assert_int_equal(store_txn_commit(t), 0);
        uint64_t v = info.version;
        store_object_info_clear(&info);
        return v;
}

/* Puts n l2 rows of `dim` values (row i all equal to base + i) under ids "id-<i>" into
 * collection `name` of `tenant`; returns the collection's version. */
static uint64_t put_rows(struct store *s, const char *tenant, const char *name, unsigned n, uint32_t dim, float base)
{
        struct store_object_ref ref = { .tenant = tenant, .cls = COLL, .name = name };
        struct store_object_info info = { 0 };
        struct store_object_item items[16];
        char ids[16][16];
        float *rows = calloc((size_t)n * dim, sizeof(float));
        uint8_t meta[KILN_VEC_META_BYTES];
        struct store_txn *t;

        assert_true(n <= 16);
        assert_non_null(rows);
        for (unsigned i = 0; i < n; i++) {
                for (uint32_t j = 0; j < dim; j++)
                        rows[i * dim + j] = base + (float)i;
                snprintf(ids[i], sizeof(ids[i]), "id-%u", i);
                items[i] = (struct store_object_item){ .id = (const uint8_t *)ids[i], .id_len = strlen(ids[i]),
                                                       .data = (const uint8_t *)(rows + i * dim),
                                                       .size = dim * sizeof(float) };
        }
        kiln_vec_meta_encode(KILN_METRIC_L2, dim, meta);
        assert_int_equal(store_txn_begin(s, true, &t), 0);
        assert_int_equal(store_object_items_put(t, &ref, meta, sizeof(meta), items, n, NULL, 1, &info), 0);
        assert_int_equal(store_txn_commit(t), 0);
        free(rows);
        uint64_t v = info.version;
        store_object_info_clear(&info);
        return v;
}

static void drop(struct store *s, const char *tenant, const char *cls, const char *name)
{
        struct store_object_ref ref = { .tenant = tenant, .cls = cls, .name = name };
        struct store_txn *t;

        assert_int_equal(store_txn_begin(s, true, &t), 0);
        assert_int_equal(store_object_drop(t, &ref), 0);
        assert_int_equal(store_txn_commit(t), 0);
}

struct env {
        struct fixture *f;
        struct mailbox *mb;
        struct objects *o;
};

static int setup(void **state)
{
        struct env *e = calloc(1, sizeof(*e));

        assert_non_null(e);
        store_fixture_setup((void **)&e->f, "objects");
        assert_int_equal(mailbox_new(&e->mb), 0);
        assert_int_equal(objects_new(e->f->s, e->mb, &e->o), 0);
        *state = e;
        return 0;
}

static int teardown(void **state)
{
        struct env *e = *state;

        /* As kilnd stops: the workers finish what is queued, then their mail runs
         * (snapshots freed on a worker post theirs). */
        objects_stop(e->o);
        mailbox_drain(e->mb);
        objects_free(e->o);
        mailbox_free(e->mb);
        void *f = e->f;
        store_fixture_teardown(&f);
        free(e);
        return 0;
}

/* objects_new again over the same store, as a restart does. */
static void restart(struct env *e)
{
        objects_free(e->o);
        e->o = NULL;
        assert_int_equal(objects_new(e->f->s, e->mb, &e->o), 0);
}

/* ---- versions ---- */

static void test_versions_of_every_stored_object_are_seen_at_start(void **state)
{
        struct env *e = *state;
        char *json = model_json(2, 3, 0.25f);

        assert_int_equal(objects_version(e->o, T, MODEL, "m"), 0);
        put_model(e->f->s, T, "m", json);
        uint64_t vm = put_model(e->f->s, T, "m", json);
        uint64_t vc = put_rows(e->f->s, T, "c", 3, 4, 1.0f);
        uint64_t vg = put_rows(e->f->s, "globex", "c", 1, 2, 0.0f);
        put_rows(e->f->s, T, "gone", 1, 2, 0.0f);
        drop(e->f->s, T, COLL, "gone");
        assert_int_equal(vm, 2);

        restart(e);
        assert_int_equal(objects_version(e->o, T, MODEL, "m"), vm);
        assert_int_equal(objects_version(e->o, T, COLL, "c"), vc);
        assert_int_equal(objects_version(e->o, "globex", COLL, "c"), vg);
        /* Classes, tenants and names are separate keys. */
        assert_int_equal(objects_version(e->o, T, COLL, "m"), 0);
        assert_int_equal(objects_version(e->o, T, MODEL, "c"), 0);
        assert_int_equal(objects_version(e->o, "globex", MODEL, "m"), 0);
        assert_int_equal(objects_version(e->o, T, COLL, "gone"), 0);
        assert_int_equal(objects_version(e->o, T, MODEL, "nowhere"), 0);
        /* Names no object can have are simply none. */
        char long_name[300];
        memset(long_name, 'x', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        assert_int_equal(objects_version(e->o, T, MODEL, long_name), 0);
        assert_int_equal(objects_version(e->o, T, MODEL, ""), 0);
        free(json);
}

static void test_objects_of_classes_it_does_not_know_are_left_out(void **state)
{
        struct env *e = *state;
        struct store_object_ref ref = { .tenant = T, .cls = "other.class", .name = "x" };
        struct store_object_item item = { .id = (const uint8_t *)"a", .id_len = 1, .data = (const uint8_t *)"z", .size = 1 };
        struct store_object_info info;
        struct store_txn *t;

        assert_int_equal(store_txn_begin(e->f->s, true, &t), 0);
        assert_int_equal(store_object_items_put(t, &ref, NULL, 0, &item, 1, NULL, 1, &info), 0);
        assert_int_equal(store_txn_commit(t), 0);
        store_object_info_clear(&info);
        uint64_t vc = put_rows(e->f->s, T, "c", 1, 2, 0.0f);
        restart(e);
        assert_int_equal(objects_version(e->o, T, "other.class", "x"), 0);
        assert_int_equal(objects_version(e->o, T, COLL, "c"), vc);
}

static void test_changed_records_new_versions_and_deletions(void **state)
{
        struct env *e = *state;

        objects_changed(e->o, T, MODEL, "m", 1, NULL, 0);
        objects_changed(e->o, T, COLL, "m", 7, NULL, 0);
        assert_int_equal(objects_version(e->o, T, MODEL, "m"), 1);
        objects_changed(e->o, T, MODEL, "m", 2, NULL, 0);
        assert_int_equal(objects_version(e->o, T, MODEL, "m"), 2);
        assert_int_equal(objects_version(e->o, T, COLL, "m"), 7);
        objects_changed(e->o, T, MODEL, "m", 0, NULL, 0);
        assert_int_equal(objects_version(e->o, T, MODEL, "m"), 0);
        assert_int_equal(objects_version(e->o, T, COLL, "m"), 7);
        /* Many names: the map grows and keeps every one. */
        for (unsigned i = 1; i <= 1000; i++) {
                char name[16];
                snprintf(name, sizeof(name), "n%u", i);
                objects_changed(e->o, T, COLL, name, i, NULL, 0);
        }
        for (unsigned i = 1; i <= 1000; i++) {
                char name[16];
                snprintf(name, sizeof(name), "n%u", i);
                assert_int_equal(objects_version(e->o, T, COLL, name), i);
        }
}

/* ---- metas ---- */

/* objects_meta's answer for (T, cls, name): its version, and its meta compared with
 * want[0..want_len) (NULL: none known). */
static void assert_meta(struct objects *o, const char *cls, const char *name, uint64_t version, const void *want,
                        size_t want_len)
{
        const uint8_t *meta = (const uint8_t *)"unset";
        uint64_t v = 0;
        size_t len = 99;

        assert_int_equal(objects_meta(o, T, cls, name, &v, &meta, &len), 0);
        assert_int_equal(v, version);
        assert_int_equal(objects_version(o, T, cls, name), version);
        if (!want) {
                assert_null(meta);
                assert_int_equal(len, 0);
                return;
        }
        assert_non_null(meta);
        assert_int_equal(len, want_len);
        assert_memory_equal(meta, want, want_len);
}

static void test_metas_of_every_stored_object_are_seen_at_start(void **state)
{
        struct env *e = *state;
        struct store_object_ref bare = { .tenant = T, .cls = COLL, .name = "bare" };
        struct store_object_item item = { .id = (const uint8_t *)"a", .id_len = 1, .data = (const uint8_t *)"zzzz",
                                          .size = 4 };
        struct store_object_info info = { 0 };
        uint8_t mmeta[RISK_MODEL_META_BYTES], cmeta[KILN_VEC_META_BYTES];
        struct store_txn *t;
        char *json = model_json(2, 3, 0.25f);

        uint64_t vm = put_model(e->f->s, T, "m", json);
        uint64_t vc = put_rows(e->f->s, T, "c", 3, 4, 1.0f);
        /* An object stored with no meta at all: known, its meta not. */
        assert_int_equal(store_txn_begin(e->f->s, true, &t), 0);
        assert_int_equal(store_object_items_put(t, &bare, NULL, 0, &item, 1, NULL, 1, &info), 0);
        assert_int_equal(store_txn_commit(t), 0);
        uint64_t vb = info.version;
        store_object_info_clear(&info);

        restart(e);
        risk_model_meta_encode(1, 1, mmeta);
        kiln_vec_meta_encode(KILN_METRIC_L2, 4, cmeta);
        assert_meta(e->o, MODEL, "m", vm, mmeta, sizeof(mmeta));
        assert_meta(e->o, COLL, "c", vc, cmeta, sizeof(cmeta));
        assert_meta(e->o, COLL, "bare", vb, NULL, 0);
        assert_int_equal(objects_meta(e->o, T, COLL, "m", NULL, NULL, NULL), -ENOENT);
        assert_int_equal(objects_meta(e->o, T, MODEL, "", NULL, NULL, NULL), -ENOENT);
        free(json);
}

static void test_changed_keeps_the_meta_in_step(void **state)
{
        struct env *e = *state;
        uint8_t m1[KILN_VEC_META_BYTES], m2[KILN_VEC_META_BYTES], big[OBJECTS_META_MAX + 1];
        const uint8_t *meta = NULL;
        uint64_t v = 99;
        size_t len = 99;

        kiln_vec_meta_encode(KILN_METRIC_COSINE, 384, m1);
        kiln_vec_meta_encode(KILN_METRIC_IP, 8, m2);
        objects_changed(e->o, T, COLL, "c", 1, m1, sizeof(m1));
        assert_meta(e->o, COLL, "c", 1, m1, sizeof(m1));
        /* A copy is kept: the caller's bytes may go. */
        uint8_t keep[KILN_VEC_META_BYTES];
        memcpy(keep, m1, sizeof(m1));
        memset(m1, 0xee, sizeof(m1));
        assert_meta(e->o, COLL, "c", 1, keep, sizeof(keep));
        /* Each change brings the meta stored with its version. */
        objects_changed(e->o, T, COLL, "c", 2, m2, sizeof(m2));
        assert_meta(e->o, COLL, "c", 2, m2, sizeof(m2));
        objects_changed(e->o, T, COLL, "c", 3, NULL, 0);
        assert_meta(e->o, COLL, "c", 3, NULL, 0);
        /* A meta longer than is kept is not known; the version still is. */
        memset(big, 1, sizeof(big));
        objects_changed(e->o, T, COLL, "c", 4, big, sizeof(big));
        assert_meta(e->o, COLL, "c", 4, NULL, 0);
        objects_changed(e->o, T, COLL, "c", 5, big, OBJECTS_META_MAX);
        assert_meta(e->o, COLL, "c", 5, big, OBJECTS_META_MAX);
        /* Dropped: nothing, and nothing written. */
        objects_changed(e->o, T, COLL, "c", 0, m2, sizeof(m2));
        assert_int_equal(objects_meta(e->o, T, COLL, "c", &v, &meta, &len), -ENOENT);
        assert_int_equal(v, 99);
        assert_null(meta);
        assert_int_equal(len, 99);
        /* Put again after the drop: the new version's meta. */
        objects_changed(e->o, T, COLL, "c", 6, m2, sizeof(m2));
        assert_meta(e->o, COLL, "c", 6, m2, sizeof(m2));
}

/* The metas the store answers a change with are what objects_changed keeps, as
 * the object ops hand them over, and what a restart reads back. */
static void test_a_put_through_the_store_and_a_restart_agree(void **state)
{
        struct env *e = *state;
        struct store_object_ref ref = { .tenant = T, .cls = MODEL, .name = "m" };
        struct store_object_info info = { 0 };
        uint8_t meta[RISK_MODEL_META_BYTES];
        struct store_txn *t;
        char *json = model_json(3, 6, 0.5f);

        risk_model_meta_encode(3, 6, meta);
        assert_int_equal(store_txn_begin(e->f->s, true, &t), 0);
        assert_int_equal(store_object_put(t, &ref, meta, sizeof(meta), strlen(json), copy_blob, json, NULL, 1, &info),
                         0);
        assert_int_equal(store_txn_commit(t), 0);
        objects_changed(e->o, T, MODEL, "m", info.version, info.meta, info.meta_len);
        store_object_info_clear(&info);
        assert_meta(e->o, MODEL, "m", 1, meta, sizeof(meta));
        restart(e);
        assert_meta(e->o, MODEL, "m", 1, meta, sizeof(meta));
        drop(e->f->s, T, MODEL, "m");
        objects_changed(e->o, T, MODEL, "m", 0, NULL, 0);
        assert_int_equal(objects_meta(e->o, T, MODEL, "m", NULL, NULL, NULL), -ENOENT);
        restart(e);
        assert_int_equal(objects_meta(e->o, T, MODEL, "m", NULL, NULL, NULL), -ENOENT);
        free(json);
}

/* ---- snapshots ---- */

static void test_acquire_compiles_a_collection_once_and_shares_it(void **state)
{
        struct env *e = *state;
        const struct object_ref *a, *b;
        struct objects_cache_stats st;
        char msg[256];

        uint64_t v = put_rows(e->f->s, T, "c", 3, 4, 1.0f);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v, &a, msg), 0);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v, &b, msg), 0);
        assert_ptr_equal(a, b);
        assert_ptr_equal(a->cls, &vec_collection_class);
        assert_int_equal(a->version, v);
        const struct vec_collection *c = a->snapshot;
        assert_int_equal(c->count, 3);
        assert_int_equal(c->dim, 4);
        assert_int_equal(c->metric, KILN_METRIC_L2);
        assert_true(c->rows[2 * 4 + 3] == 3.0f);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.compiles, 1);
        assert_int_equal(st.hits, 1);
        assert_int_equal(st.entries, 1);
        assert_int_equal(st.idle_entries, 0);
        objects_release(e->o, a);
        objects_release(e->o, b);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.idle_entries, 1);
        assert_true(st.idle_bytes >= 3 * 4 * sizeof(float));
        objects_release(e->o, NULL);
}

static void test_acquire_compiles_a_model(void **state)
{
        struct env *e = *state;
        const struct object_ref *r;
        char msg[256], *json = model_json(5, 3, 0.5f);

        uint64_t v = put_model(e->f->s, T, "m", json);
        assert_int_equal(objects_acquire(e->o, T, &risk_model_class, "m", v, &r, msg), 0);
        const struct risk_forest *f = r->snapshot;
        assert_int_equal(f->n_trees, 5);
        assert_int_equal(f->n_features, 3);
        objects_release(e->o, r);
        free(json);
}

struct racer {
        struct env *e;
        uint64_t version;
        atomic_int *go;
        const struct object_ref *got;
        int status;
};

static void *race(void *arg)
{
        struct racer *x = arg;
        char msg[256];

        while (!atomic_load(x->go))
                ;
        x->status = objects_acquire(x->e->o, T, &vec_collection_class, "c", x->version, &x->got, msg);
        return NULL;
}

static void test_threads_asking_at_once_share_one_compile(void **state)
{
        struct env *e = *state;
        struct racer xs[8];
        pthread_t th[8];
        atomic_int go = 0;
        struct objects_cache_stats st;

        uint64_t v = put_rows(e->f->s, T, "c", 16, 512, 0.5f);
        for (int i = 0; i < 8; i++) {
                xs[i] = (struct racer){ .e = e, .version = v, .go = &go };
                assert_int_equal(pthread_create(&th[i], NULL, race, &xs[i]), 0);
        }
        atomic_store(&go, 1);
        for (int i = 0; i < 8; i++)
                assert_int_equal(pthread_join(th[i], NULL), 0);
        for (int i = 0; i < 8; i++) {
                assert_int_equal(xs[i].status, 0);
                assert_ptr_equal(xs[i].got, xs[0].got);
        }
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.compiles, 1);
        assert_int_equal(st.hits, 7);
        for (int i = 0; i < 8; i++)
                objects_release(e->o, xs[i].got);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.idle_entries, 1);
}

static void test_a_replaced_version_not_in_memory_is_not_found(void **state)
{
        struct env *e = *state;
        const struct object_ref *r = (const void *)0x1;
        char msg[256];

        uint64_t v1 = put_rows(e->f->s, T, "c", 2, 2, 0.0f);
        uint64_t v2 = put_rows(e->f->s, T, "c", 2, 2, 5.0f);
        assert_int_equal(v2, v1 + 1);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v1, &r, msg), -ENOENT);
        assert_ptr_equal(r, (const void *)0x1);
        assert_non_null(strstr(msg, "is at version 2 now"));
        /* What the store holds instead (the version a job bound to v1 then runs on). */
        uint64_t stored = 0, began = 0;
        int64_t created = 0;
        assert_int_equal(objects_stored_version(e->o, T, &vec_collection_class, "c", &stored, &began, &created), 0);
        assert_int_equal(stored, v2);
        /* The object began at v1's put. */
        assert_int_equal(began, v1);
        assert_int_equal(objects_stored_version(e->o, "globex", &vec_collection_class, "c", &stored, &began, &created),
                         -ENOENT);
        /* A version never stored, a name never stored, a dropped object, another
         * tenant's or another class's object of that name: all not found. */
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v2 + 1, &r, msg), -ENOENT);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "nowhere", 1, &r, msg), -ENOENT);
        assert_non_null(strstr(msg, "no longer stored"));
        assert_int_equal(objects_acquire(e->o, "globex", &vec_collection_class, "c", v2, &r, msg), -ENOENT);
        assert_int_equal(objects_acquire(e->o, T, &risk_model_class, "c", v2, &r, msg), -ENOENT);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", 0, &r, msg), -ENOENT);
        drop(e->f->s, T, COLL, "c");
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v2, &r, msg), -ENOENT);
        assert_int_equal(objects_stored_version(e->o, T, &vec_collection_class, "c", &stored, &began, &created), -ENOENT);
        /* Put anew, the name is another object, which began past every version of
         * the dropped one. */
        uint64_t v3 = put_rows(e->f->s, T, "c", 2, 2, 1.0f);
        assert_int_equal(v3, v2 + 1);
        assert_int_equal(objects_stored_version(e->o, T, &vec_collection_class, "c", &stored, &began, &created), 0);
        assert_int_equal(stored, v3);
        assert_int_equal(began, v3);
        uint64_t v4 = put_rows(e->f->s, T, "c", 2, 2, 2.0f);
        assert_int_equal(objects_stored_version(e->o, T, &vec_collection_class, "c", &stored, &began, &created), 0);
        assert_int_equal(stored, v4);
        assert_int_equal(began, v3);
        drop(e->f->s, T, COLL, "c");
        struct objects_cache_stats st;
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.entries, 0);
        assert_int_equal(st.compiles, 0);
}

static void test_an_acquired_old_version_stays_usable_after_a_newer_put(void **state)
{
        struct env *e = *state;
        const struct object_ref *old, *again, *cur;
        char msg[256];

        uint64_t v1 = put_rows(e->f->s, T, "c", 2, 3, 1.0f);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v1, &old, msg), 0);
        uint64_t v2 = put_rows(e->f->s, T, "c", 4, 3, 7.0f);
        objects_changed(e->o, T, COLL, "c", v2, NULL, 0);

        /* A job bound to v1 still finds it in memory, with v1's rows. */
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v1, &again, msg), 0);
        assert_ptr_equal(again, old);
        const struct vec_collection *c1 = old->snapshot;
        assert_int_equal(c1->count, 2);
        assert_true(c1->rows[0] == 1.0f);

        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v2, &cur, msg), 0);
        assert_ptr_not_equal(cur, old);
        const struct vec_collection *c2 = cur->snapshot;
        assert_int_equal(c2->count, 4);
        assert_true(c2->rows[0] == 7.0f);
        objects_release(e->o, again);
        objects_release(e->o, cur);
        assert_true(c1->rows[3] == 2.0f); /* still referenced once */
        objects_release(e->o, old);
}

/* A dropped object's snapshots are never handed out again, loaded or not, idle or
 * in use: a job bound to it fails (not_found), also when the name is put anew. The
 * one in use stays whole until its holder lets it go. */
static void test_a_dropped_objects_snapshots_are_not_found(void **state)
{
        struct env *e = *state;
        const struct object_ref *held, *idle, *r = NULL;
        struct objects_cache_stats st;
        char msg[256];

        uint64_t v1 = put_rows(e->f->s, T, "c", 2, 3, 1.0f);
        uint64_t w1 = put_rows(e->f->s, T, "d", 3, 3, 2.0f);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v1, &held, msg), 0);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "d", w1, &idle, msg), 0);
        objects_release(e->o, idle);
        const struct vec_collection *c1 = held->snapshot;

        drop(e->f->s, T, COLL, "c");
        objects_changed(e->o, T, COLL, "c", 0, NULL, 0);
        drop(e->f->s, T, COLL, "d");
        objects_changed(e->o, T, COLL, "d", 0, NULL, 0);
        put_rows(e->f->s, T, "d", 5, 3, 9.0f); /* the name anew: another object */
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v1, &r, msg), -ENOENT);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "d", w1, &r, msg), -ENOENT);
        assert_null(r);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.entries, 0);      /* both left the table */
        assert_int_equal(st.idle_entries, 0); /* the idle one is freed */
        assert_int_equal(c1->count, 2);       /* the held one is whole */
        assert_true(c1->rows[0] == 1.0f);
        objects_release(e->o, held);          /* and freed, on a worker (ASan: no leak, no reuse) */
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.idle_entries, 0);
}

static void test_unreferenced_snapshots_are_evicted_least_recently_used_first(void **state)
{
        struct env *e = *state;
        const struct object_ref *r;
        struct objects_cache_stats st;
        char msg[256];
        uint64_t v[3];
        const char *names[3] = { "a", "b", "c" };

        objects_set_cache_limits(e->o, OBJECTS_IDLE_MAX_BYTES, 2);
        for (int i = 0; i < 3; i++)
                v[i] = put_rows(e->f->s, T, names[i], 2, 8, (float)i);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, names[i], v[i], &r, msg), 0);
                objects_release(e->o, r);
        }
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.compiles, 3);
        assert_int_equal(st.evictions, 1);
        assert_int_equal(st.idle_entries, 2);
        /* "a" went (least recently used): asking again compiles it again, and
         * pushes out "b", now the least recently used. */
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v[2], &r, msg), 0);
        objects_release(e->o, r);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "a", v[0], &r, msg), 0);
        objects_release(e->o, r);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.compiles, 4);
        assert_int_equal(st.hits, 1);
        assert_int_equal(st.evictions, 2);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "c", v[2], &r, msg), 0);
        objects_release(e->o, r);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.hits, 2);

        /* A referenced snapshot is never evicted, whatever the bound. */
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "b", v[1], &r, msg), 0);
        objects_set_cache_limits(e->o, 0, 0);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.entries, 1);
        assert_int_equal(st.idle_entries, 0);
        const struct vec_collection *c = r->snapshot;
        assert_true(c->rows[8] == 2.0f);
        objects_release(e->o, r); /* and as it goes idle, it goes */
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.entries, 0);
}

static void test_idle_snapshots_beyond_the_byte_bound_go(void **state)
{
        struct env *e = *state;
        const struct object_ref *r;
        struct objects_cache_stats st;
        char msg[256];

        uint64_t va = put_rows(e->f->s, T, "a", 16, 1024, 0.0f); /* 64 KiB of rows */
        uint64_t vb = put_rows(e->f->s, T, "b", 16, 1024, 1.0f);
        objects_set_cache_limits(e->o, 100 << 10, 64);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "a", va, &r, msg), 0);
        objects_release(e->o, r);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "b", vb, &r, msg), 0);
        objects_release(e->o, r);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.idle_entries, 1);
        assert_true(st.idle_bytes <= 100 << 10);
        assert_int_equal(st.evictions, 1);
}

/* A newer version put: an idle snapshot of an older one leaves memory at once,
 * however much room the cache has, and one in use at its last release; other
 * objects' snapshots stay. */
static void test_older_versions_leave_memory_when_a_newer_is_put(void **state)
{
        struct env *e = *state;
        const struct object_ref *r, *held;
        struct objects_cache_stats st;
        char msg[256];

        objects_set_cache_limits(e->o, OBJECTS_IDLE_MAX_BYTES, 64);
        uint64_t m1 = put_rows(e->f->s, T, "m", 1, 2, 0.0f);
        uint64_t n1 = put_rows(e->f->s, T, "n", 1, 2, 0.0f);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "n", n1, &r, msg), 0);
        objects_release(e->o, r);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "m", m1, &r, msg), 0);
        objects_release(e->o, r); /* idle: n@1, m@1 */
        uint64_t m2 = put_rows(e->f->s, T, "m", 1, 2, 9.0f);
        objects_changed(e->o, T, COLL, "m", m2, NULL, 0); /* m@1 goes now */
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.entries, 1);
        assert_int_equal(st.idle_entries, 1);
        assert_int_equal(st.evictions, 1);
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "m", m1, &r, msg), -ENOENT);
        /* m@2 in use when m@3 is put: it serves its holder, then goes. */
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "m", m2, &held, msg), 0);
        uint64_t m3 = put_rows(e->f->s, T, "m", 1, 2, 5.0f);
        objects_changed(e->o, T, COLL, "m", m3, NULL, 0);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.entries, 2);
        assert_true(((const struct vec_collection *)held->snapshot)->rows[0] == 9.0f);
        objects_release(e->o, held);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.entries, 1); /* n@1 */
        assert_int_equal(st.evictions, 2);
        /* n@1 stayed. */
        assert_int_equal(objects_acquire(e->o, T, &vec_collection_class, "n", n1, &r, msg), 0);
        objects_release(e->o, r);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.hits, 1);
}

static void test_what_cannot_be_compiled_is_einval_and_retried(void **state)
{
        struct env *e = *state;
        const struct object_ref *r;
        struct objects_cache_stats st;
        char msg[256];

        uint64_t v = put_model(e->f->s, T, "broken", "{\"not\": \"a model\"}");
        assert_int_equal(objects_acquire(e->o, T, &risk_model_class, "broken", v, &r, msg), -EINVAL);
        assert_non_null(strstr(msg, "cannot be used"));
        assert_int_equal(objects_acquire(e->o, T, &risk_model_class, "broken", v, &r, msg), -EINVAL);
        objects_cache_stats(e->o, &st);
        assert_int_equal(st.compiles, 0);
        assert_int_equal(st.entries, 0);
}

/* ---- work off the loop ---- */

struct job {
        struct objects_work w;
        pthread_t ran_on;
        bool ran, mailed;
};

static void job_run(struct objects_work *w)
{
        struct job *j = container_of(w, struct job, w);
        j->ran_on = pthread_self();
        j->ran = true;
}

static void job_mail(struct mail *m)
{
        struct job *j = container_of(m, struct job, w.mail);
        assert_true(j->ran);
        j->mailed = true;
}

static void test_work_runs_on_a_worker_and_mails_back(void **state)
{
        struct env *e = *state;
        struct job jobs[20];

        for (int i = 0; i < 20; i++) {
                jobs[i] = (struct job){ .w = { .run = job_run, .mail = { .fn = job_mail } } };
                objects_work_submit(e->o, &jobs[i].w);
        }
        objects_stop(e->o); /* every queued item runs first */
        assert_int_equal(mailbox_drain(e->mb), 20);
        for (int i = 0; i < 20; i++) {
                assert_true(jobs[i].mailed);
                assert_false(pthread_equal(jobs[i].ran_on, pthread_self()));
        }
        objects_stop(e->o); /* again: nothing */
}

static void test_classes_are_found_by_name(void **state)
{
        assert_ptr_equal(objects_class_find("risk.model"), &risk_model_class);
        assert_ptr_equal(objects_class_find("vec.collection"), &vec_collection_class);
        assert_null(objects_class_find("kiln.tenants"));
        assert_null(objects_class_find(NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_versions_of_every_stored_object_are_seen_at_start, setup, teardown),
                cmocka_unit_test_setup_teardown(test_objects_of_classes_it_does_not_know_are_left_out, setup, teardown),
                cmocka_unit_test_setup_teardown(test_changed_records_new_versions_and_deletions, setup, teardown),
                cmocka_unit_test_setup_teardown(test_metas_of_every_stored_object_are_seen_at_start, setup, teardown),
                cmocka_unit_test_setup_teardown(test_changed_keeps_the_meta_in_step, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_put_through_the_store_and_a_restart_agree, setup, teardown),
                cmocka_unit_test_setup_teardown(test_acquire_compiles_a_collection_once_and_shares_it, setup, teardown),
                cmocka_unit_test_setup_teardown(test_acquire_compiles_a_model, setup, teardown),
                cmocka_unit_test_setup_teardown(test_threads_asking_at_once_share_one_compile, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_replaced_version_not_in_memory_is_not_found, setup, teardown),
                cmocka_unit_test_setup_teardown(test_an_acquired_old_version_stays_usable_after_a_newer_put, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_a_dropped_objects_snapshots_are_not_found, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unreferenced_snapshots_are_evicted_least_recently_used_first,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_idle_snapshots_beyond_the_byte_bound_go, setup, teardown),
                cmocka_unit_test_setup_teardown(test_older_versions_leave_memory_when_a_newer_is_put, setup, teardown),
                cmocka_unit_test_setup_teardown(test_what_cannot_be_compiled_is_einval_and_retried, setup, teardown),
                cmocka_unit_test_setup_teardown(test_work_runs_on_a_worker_and_mails_back, setup, teardown),
                cmocka_unit_test(test_classes_are_found_by_name),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
