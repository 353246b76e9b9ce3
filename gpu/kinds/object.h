/* Stored-object classes: the compute side of models and vector collections (SPEC 2.4).
 *
 * The store keeps an object as bytes and a version: an opaque blob (a model's uploaded
 * JSON), an opaque `meta` (a collection's metric and dim, encoded below) and items
 * (a collection's id -> vector row, iterated in id byte order). It never knows what
 * they mean. A `struct kiln_object_class` is what does:
 *
 *   validate   checks an upload before the store writes it, and describes it
 *              (a model's trees and features; a put's count, dim and metric);
 *   compile    turns what the store holds into an immutable snapshot that the compute
 *              code (a kind's run_cpu, a device upload) reads without locks;
 *   release    frees a snapshot;
 *   describe   and snapshot_bytes read a snapshot (replies, memory accounting).
 *
 * No JSON type and no daemon type appears here: the daemon hands bytes and arrays in
 * and gets -errno plus a field and a sentence back.
 *
 * Threads: every function is reentrant and keeps no global state, so any thread may
 * call any of them at any time. validate and compile parse or copy the whole object
 * (a model's JSON, a collection's rows): run them on a worker thread, never on the
 * event loop. A snapshot is never written after compile returns, so any number of
 * threads may read it at once; release it once, when its last reader is done. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why an upload or a stored object was refused: the offending field ("model",
 * "learner.objective.name", "vectors", "ids[3]", "metric") and a human sentence
 * naming it and the rule. Sizes as kiln_kind.finish's buffers. */
/* An error that names the offending field ("params.z_source", "inputs.rows",
 * "learner.objective.name") and says in a sentence what is wrong with it: what
 * the parameter validator, the object classes and the kinds all return. */
struct kiln_error {
        char field[128];
        char message[256];
};

/* Writes a printf-formatted error and returns -EINVAL (-22); err may be NULL. */
int kiln_error_set(struct kiln_error *err, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* ---- collections: metric and the meta bytes the store keeps ---- */

/* The similarity of a collection, fixed when it is created. Scores: cosine and ip
 * are dot products (larger is better; cosine on unit vectors), l2 is the squared
 * Euclidean distance (smaller is better). 0 is no metric. */
enum kiln_metric {
        KILN_METRIC_COSINE = 1,
        KILN_METRIC_IP = 2,
        KILN_METRIC_L2 = 3,
};

#define KILN_VEC_DIM_MAX 4096u
#define KILN_VEC_ID_MAX 256u

/* "cosine", "ip", "l2"; NULL for anything else. */
static inline const char *kiln_metric_name(enum kiln_metric m)
{
        switch (m) {
        case KILN_METRIC_COSINE: return "cosine";
        case KILN_METRIC_IP: return "ip";
        case KILN_METRIC_L2: return "l2";
        }
        return NULL;
}

/* Parses a metric name (exact, lower case). Returns 0 and sets *ret_metric, or
 * -EINVAL (-22) for NULL or an unknown name. */
static inline int kiln_metric_from_name(const char *name, enum kiln_metric *ret_metric)
{
        static const enum kiln_metric all[] = { KILN_METRIC_COSINE, KILN_METRIC_IP, KILN_METRIC_L2 };

        for (size_t i = 0; name && i < sizeof(all) / sizeof(all[0]); i++) {
                const char *n = kiln_metric_name(all[i]);
                size_t k = 0;
                while (n[k] && n[k] == name[k])
                        k++;
                if (!n[k] && !name[k]) {
                        *ret_metric = all[i];
                        return 0;
                }
        }
        return -22;
}

/* A collection's meta: 8 bytes, u8 format (1), u8 metric, u16 zero, u32 LE dim.
 * Equal (metric, dim) always encode to equal bytes, so the store can compare metas
 * bytewise (store_object_items_put refuses a put whose meta differs). */
#define KILN_VEC_META_BYTES 8u
#define KILN_VEC_META_FORMAT 1u

static inline void kiln_vec_meta_encode(enum kiln_metric metric, uint32_t dim, uint8_t ret_meta[KILN_VEC_META_BYTES])
{
        ret_meta[0] = KILN_VEC_META_FORMAT;
        ret_meta[1] = (uint8_t)metric;
        ret_meta[2] = 0;
        ret_meta[3] = 0;
        ret_meta[4] = (uint8_t)dim;
        ret_meta[5] = (uint8_t)(dim >> 8);
        ret_meta[6] = (uint8_t)(dim >> 16);
        ret_meta[7] = (uint8_t)(dim >> 24);
}

/* Decodes a meta written by kiln_vec_meta_encode. Returns 0, or -EINVAL (-22) when
 * the bytes are not a meta of this format with a known metric and dim in
 * 1..KILN_VEC_DIM_MAX. */
static inline int kiln_vec_meta_decode(const void *meta, size_t len, enum kiln_metric *ret_metric,
                                       uint32_t *ret_dim)
{
        const uint8_t *b = (const uint8_t *)meta;
        uint32_t dim;

        if (!b || len != KILN_VEC_META_BYTES || b[0] != KILN_VEC_META_FORMAT || b[2] || b[3] ||
            !kiln_metric_name((enum kiln_metric)b[1]))
                return -22;
        dim = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
        if (dim < 1 || dim > KILN_VEC_DIM_MAX)
                return -22;
        *ret_metric = (enum kiln_metric)b[1];
        *ret_dim = dim;
        return 0;
}

/* ---- the class interface ---- */

/* One id of a collection put: 1..KILN_VEC_ID_MAX arbitrary bytes (borrowed). */
struct kiln_object_id {
        const void *data;
        size_t len;
};

/* An upload, as the daemon received it. Everything is borrowed for the call.
 *  risk.model:     blob = the uploaded XGBoost JSON file; the rest unused.
 *  vec.collection: meta = kiln_vec_meta_encode(metric named by the put, dim of its
 *                  vectors part); current_meta = the stored collection's meta, or NULL
 *                  when the put creates it; n ids and n rows of dim floats. rows is
 *                  written: normalised in place for cosine, so that what the store
 *                  keeps is what search reads. */
struct kiln_object_put {
        const void *blob;
        size_t blob_bytes;
        const void *meta;
        size_t meta_len;
        const void *current_meta;
        size_t current_meta_len;
        const struct kiln_object_id *ids;
        size_t n;
        float *rows;
        size_t rows_bytes;         /* must be n * dim * sizeof(float) */
};

/* What an upload or a snapshot holds. Fields of the other class are zero. */
struct kiln_object_info {
        uint64_t trees;            /* risk.model */
        uint32_t features;         /* risk.model: columns a row must have */
        uint64_t count;            /* vec.collection: vectors (in the put, or in the snapshot) */
        uint32_t dim;              /* vec.collection */
        enum kiln_metric metric;   /* vec.collection */
};

/* Called by a source for each item, in id byte order, with bytes borrowed for the
 * call. Returns >= 0 to go on, < 0 to stop (the source then returns that value). The
 * signature is store_object_items_foreach's callback. */
typedef int (*kiln_object_item_cb)(const uint8_t *id, size_t id_len, const uint8_t *data, size_t size,
                                   void *userdata);

/* What the store holds for one object version, for compile. Borrowed for the call.
 *  risk.model:     blob = the stored JSON (items unused).
 *  vec.collection: meta = the stored meta; count = the number of items (a hint for
 *                  the allocation; the items given are what counts); foreach_items
 *                  calls cb for every item (id -> dim floats, native little-endian
 *                  f32) and returns >= 0, cb's negative value, or -errno. foreach_items
 *                  may be NULL when there are no items. Items should come in id byte
 *                  order (the store's order); others are sorted. */
struct kiln_object_source {
        const void *blob;
        size_t blob_bytes;
        const void *meta;
        size_t meta_len;
        uint64_t count;
        int (*foreach_items)(void *ctx, kiln_object_item_cb cb, void *userdata);
        void *ctx;
};

/* One class of stored object. All functions follow the project's convention: >= 0 on
 * success, -errno on failure; ret_* are written only on success; `err` (may be NULL)
 * is filled on -EINVAL (and names the field on -ENOMEM too). */
struct kiln_object_class {
        const char *name;          /* "risk.model", "vec.collection": the store's class */

        /* Checks an upload completely (a model is parsed and compiled; a put's ids,
         * rows, metric and dim are checked, and rows are normalised for cosine) and
         * describes it in *ret_info. -EINVAL: refused, with err naming the field;
         * -ENOMEM. Nothing is kept: the caller stores the bytes only after >= 0. */
        int (*validate)(struct kiln_object_put *put, struct kiln_object_info *ret_info,
                        struct kiln_error *err);

        /* Builds the immutable snapshot of one stored version. The snapshot owns all
         * its memory (nothing in `src` is referenced after the call) and is freed with
         * release. -EINVAL: what the store holds cannot be used (err says why);
         * -ENOMEM; or the source's -errno. */
        int (*compile)(const struct kiln_object_source *src, void **ret_snapshot,
                       struct kiln_error *err);

        /* Frees a snapshot. Accepts NULL. */
        void (*release)(void *snapshot);

        /* Bytes of memory the snapshot holds (for cache accounting). */
        size_t (*snapshot_bytes)(const void *snapshot);

        /* Describes a snapshot (trees and features; count, dim and metric). */
        void (*describe)(const void *snapshot, struct kiln_object_info *ret_info);
};
