/* The job-kind interface.
 *
 * A kind is a pure function of its canonical parameters. It is described by one
 * `struct kiln_kind`: a parameter schema (validated generically by params.c into a
 * canonical JSON object with every default filled in), a kind-specific check that
 * turns the canonical JSON into a typed parameter struct, and one implementation per
 * backend. The compute half (`kiln_result`, the `run_cpu` functions, the math
 * headers) does not depend on JSON, so the parity tests and kernel benchmarks build
 * from gpu/ alone.
 *
 * Adding a kind means adding one folder under gpu/kinds/ and one line in
 * gpu/kinds/registry.c. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KILN_MAX_SCALARS 16
#define KILN_MAX_PARTS 8
#define KILN_NAME_MAX 32

enum kiln_dtype {
        KILN_DTYPE_F32,
        KILN_DTYPE_U8,
        KILN_DTYPE_U32,
        KILN_DTYPE_BYTES,
};

/* "f32", "u8", "u32", "bytes"; NULL for an invalid value. */
static inline const char *kiln_dtype_name(enum kiln_dtype t)
{
        switch (t) {
        case KILN_DTYPE_F32: return "f32";
        case KILN_DTYPE_U8: return "u8";
        case KILN_DTYPE_U32: return "u32";
        case KILN_DTYPE_BYTES: return "bytes";
        }
        return NULL;
}

/* Returns 0 and sets *ret on success, -EINVAL (-22) for an unknown name. */
static inline int kiln_dtype_from_name(const char *name, enum kiln_dtype *ret)
{
        static const enum kiln_dtype all[] = { KILN_DTYPE_F32, KILN_DTYPE_U8, KILN_DTYPE_U32, KILN_DTYPE_BYTES };
        for (size_t i = 0; name && i < sizeof(all) / sizeof(all[0]); i++) {
                const char *n = kiln_dtype_name(all[i]);
                size_t k = 0;
                while (n[k] && n[k] == name[k])
                        k++;
                if (!n[k] && !name[k]) {
                        *ret = all[i];
                        return 0;
                }
        }
        return -22;
}

/* Size of one element in bytes (1 for bytes). */
static inline size_t kiln_dtype_size(enum kiln_dtype t)
{
        return t == KILN_DTYPE_F32 || t == KILN_DTYPE_U32 ? 4 : 1;
}

/* One named scalar of a result. A NaN value with is_null set is sent as JSON null. */
struct kiln_scalar {
        char name[KILN_NAME_MAX];
        double value;
        bool is_null;
};

/* One named array of a result. `data` is malloc'd and owned by the result. */
struct kiln_part {
        char name[KILN_NAME_MAX];
        enum kiln_dtype dtype;
        int ndim;
        uint64_t shape[4];
        size_t bytes;
        void *data;
};

/* What a job produces: scalars plus binary parts. */
struct kiln_result {
        struct kiln_scalar scalars[KILN_MAX_SCALARS];
        int n_scalars;
        struct kiln_part parts[KILN_MAX_PARTS];
        int n_parts;
};

/* Adds a part of the given shape and allocates its (zeroed) data. Returns the part,
 * or NULL when out of memory or out of part slots. The result owns the memory. */
struct kiln_part *kiln_result_add_part(struct kiln_result *r, const char *name, enum kiln_dtype dtype,
                                       int ndim, const uint64_t *shape);
/* Adds a scalar; a NaN `value` is recorded as null. Returns >= 0 or -ENOSPC. */
int kiln_result_add_scalar(struct kiln_result *r, const char *name, double value);
/* Frees every part's data and resets the result to empty. Accepts NULL. */
void kiln_result_clear(struct kiln_result *r);
/* Total bytes of all parts. */
size_t kiln_result_bytes(const struct kiln_result *r);

/* What a running implementation may ask of whoever runs it. */
struct kiln_exec {
        /* Non-zero: abandon the work and return -ECANCELED. Read it every few
         * milliseconds of work (e.g. once per output row). */
        const atomic_int *stop;
        /* Optional: report progress in [0, 1]. May be called often; cheap. */
        void (*progress)(struct kiln_exec *ex, double fraction);
        void *opaque;
};

static inline bool kiln_exec_stopped(const struct kiln_exec *ex)
{
        return ex && ex->stop && atomic_load_explicit(ex->stop, memory_order_relaxed) != 0;
}

static inline void kiln_exec_progress(struct kiln_exec *ex, double fraction)
{
        if (ex && ex->progress)
                ex->progress(ex, fraction);
}

/* ---- parameter schema (generic validation, see params.h) ---- */

enum kiln_param_type {
        KILN_PARAM_NUMBER,      /* JSON number within [min, max] */
        KILN_PARAM_INTEGER,     /* JSON integer (or integral number) within [min, max] */
        KILN_PARAM_BOOL,
        KILN_PARAM_STRING,      /* one of `choices` when choices is non-NULL */
        KILN_PARAM_STRING_SET,  /* array of distinct strings from `choices` (at least one) */
        KILN_PARAM_OBJECT,      /* nested object described by `fields` */
};

struct kiln_param {
        const char *name;
        enum kiln_param_type type;
        bool required;
        double min, max;           /* inclusive bounds for NUMBER/INTEGER */
        bool min_exclusive;        /* min is exclusive (e.g. fov_arcsec > 0) */
        const char *def;           /* default as JSON text, NULL when required/no default */
        const char *const *choices;/* NULL-terminated, for STRING/STRING_SET */
        const struct kiln_param *fields; /* for OBJECT, terminated by name == NULL */
        const char *doc;           /* one line, shown by the UI */
};

/* A job kind. All function pointers are safe to call from any thread. */
struct kiln_kind {
        const char *name;          /* e.g. "lens.nfw" */
        uint32_t version;          /* implementation version; part of the cache key */
        const char *doc;           /* one line */
        const struct kiln_param *params; /* schema, terminated by name == NULL */
        size_t params_size;        /* size of the typed parameter struct */

        /* Kind-specific checks on the canonical JSON (a `json_t *` object, already
         * schema-validated with defaults filled) that fill the typed struct at
         * `ret_params` (params_size bytes). On a bad value returns -EINVAL and
         * writes the offending field ("params.z_source") and a sentence into
         * field/msg (each at least 128 bytes). */
        int (*finish)(const void *canonical_json, void *ret_params, char *field, char *msg);

        /* Upper bound of the result's part bytes for these params (for limits). */
        uint64_t (*result_bytes)(const void *params);

        /* The CPU implementation: fills `ret` (empty on entry). Returns >= 0,
         * -ECANCELED when ex->stop was raised, -ENOMEM, or another -errno. On
         * failure `ret` may hold partial data; the caller clears it. */
        int (*run_cpu)(const void *params, struct kiln_result *ret, struct kiln_exec *ex);
};

/* The built-in kinds, NULL-terminated (gpu/kinds/registry.c). */
extern const struct kiln_kind *const kiln_kinds[];

/* Looks up a kind by name; NULL when unknown. */
const struct kiln_kind *kiln_kind_find(const char *name);
