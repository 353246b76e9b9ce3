/* The job-kind interface, version 3.
 *
 * A kind is a pure function of its canonical parameters, its input arrays and the
 * object it names (a model, a collection). It is described by one `struct
 * kiln_kind`: a parameter schema that the generic validator (params.c) checks and
 * stores straight into the kind's typed parameter struct, the input parts it takes,
 * the object class it uses, and one implementation per backend. Nothing in this
 * header or in a kind's folder depends on JSON: the descriptor, the math and the CPU
 * implementation are gpu/'s compute half, so the parity tests and the kernel
 * benchmarks build from gpu/ alone (no libwebsockets, LMDB or jansson).
 *
 * Adding a kind means adding one folder under gpu/kinds/ and one line in
 * gpu/kinds/KINDS (see gpu/kinds/README.md). */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "object.h"

#define KILN_MAX_SCALARS 16
#define KILN_MAX_PARTS 8
#define KILN_MAX_INPUTS 8
#define KILN_NAME_MAX 32

/* Element types of parts and inputs. The values are stable (I32 came last); the
 * names "f32", "u8", "u32", "bytes", "i32" are what the protocol and the stored
 * blobs carry. */
enum kiln_dtype {
        KILN_DTYPE_F32,
        KILN_DTYPE_U8,
        KILN_DTYPE_U32,
        KILN_DTYPE_BYTES,
        KILN_DTYPE_I32,
};
#define KILN_N_DTYPES 5

/* One bit per dtype, for kiln_input_spec.dtypes. */
#define KILN_DTYPE_BIT(t) (1u << (unsigned)(t))

/* "f32", "u8", "u32", "bytes", "i32"; NULL for an invalid value. */
static inline const char *kiln_dtype_name(enum kiln_dtype t)
{
        switch (t) {
        case KILN_DTYPE_F32: return "f32";
        case KILN_DTYPE_U8: return "u8";
        case KILN_DTYPE_U32: return "u32";
        case KILN_DTYPE_BYTES: return "bytes";
        case KILN_DTYPE_I32: return "i32";
        }
        return NULL;
}

/* Returns 0 and sets *ret on success, -EINVAL (-22) for an unknown name. */
static inline int kiln_dtype_from_name(const char *name, enum kiln_dtype *ret)
{
        for (int i = 0; name && i < KILN_N_DTYPES; i++) {
                const char *n = kiln_dtype_name((enum kiln_dtype)i);
                size_t k = 0;
                while (n[k] && n[k] == name[k])
                        k++;
                if (!n[k] && !name[k]) {
                        *ret = (enum kiln_dtype)i;
                        return 0;
                }
        }
        return -22;
}

/* Size of one element in bytes (1 for bytes). */
static inline size_t kiln_dtype_size(enum kiln_dtype t)
{
        return t == KILN_DTYPE_F32 || t == KILN_DTYPE_U32 || t == KILN_DTYPE_I32 ? 4 : 1;
}

/* struct kiln_error and kiln_error_set: object.h. */

/* ---- results ---- */

/* The type of one named value of a result. */
enum kiln_vtype {
        KILN_V_NULL,
        KILN_V_NUM,   /* double; a non-finite one is written as null */
        KILN_V_INT,   /* int64_t */
        KILN_V_BOOL,
        KILN_V_STR,   /* text: a UTF-8 string */
        KILN_V_JSON,  /* text: one JSON value (an array such as per-query ids) */
};

/* One named value of a result. `text` (STR, JSON) is malloc'd and owned by the
 * result that holds the value. */
struct kiln_value {
        char name[KILN_NAME_MAX];
        enum kiln_vtype type;
        union {
                double num;
                int64_t i;
                bool b;
                char *text;
        };
};

/* One named array of a result. `data` is malloc'd and owned by the result, unless
 * `borrowed` is set (a result parsed from a stored blob points into the blob):
 * kiln_result_clear then leaves it alone. */
struct kiln_part {
        char name[KILN_NAME_MAX];
        enum kiln_dtype dtype;
        int ndim;
        uint64_t shape[4];
        size_t bytes;
        void *data;
        bool borrowed;
};

/* What a job produces: named values (the `result` object of `done`) plus binary
 * parts. */
struct kiln_result {
        struct kiln_value scalars[KILN_MAX_SCALARS];
        int n_scalars;
        struct kiln_part parts[KILN_MAX_PARTS];
        int n_parts;
};

/* Adds a part of the given shape and allocates its (zeroed) data. Returns the part,
 * or NULL when out of memory, out of part slots, or for an empty or duplicate name.
 * The result owns the memory. */
struct kiln_part *kiln_result_add_part(struct kiln_result *r, const char *name, enum kiln_dtype dtype,
                                       int ndim, const uint64_t *shape);
/* The setters of named values. Each returns >= 0, -ENOSPC when the result holds
 * KILN_MAX_SCALARS values already, -EEXIST for a name it holds, -EINVAL for an
 * empty or too long name (or NULL text), -ENOMEM. Strings are copied. */
int kiln_result_add_scalar(struct kiln_result *r, const char *name, double value); /* NaN: null */
int kiln_result_add_int(struct kiln_result *r, const char *name, int64_t value);
int kiln_result_add_bool(struct kiln_result *r, const char *name, bool value);
int kiln_result_add_string(struct kiln_result *r, const char *name, const char *text);
int kiln_result_add_null(struct kiln_result *r, const char *name);
/* `json` must be one complete JSON value (kiln_jtext builds one, see jtext.h);
 * the result codec embeds it as it is. */
int kiln_result_add_json(struct kiln_result *r, const char *name, const char *json);
/* Like kiln_result_add_json, but takes over `json` (malloc'd) instead of copying
 * it; on failure it is freed. */
int kiln_result_take_json(struct kiln_result *r, const char *name, char *json);
/* The value called `name`, or NULL. */
const struct kiln_value *kiln_result_find(const struct kiln_result *r, const char *name);
/* The part called `name`, or NULL. */
const struct kiln_part *kiln_result_find_part(const struct kiln_result *r, const char *name);
/* Frees every owned part's data and every value's text and resets the result to
 * empty. Accepts NULL. */
void kiln_result_clear(struct kiln_result *r);
/* Total bytes of all parts. */
size_t kiln_result_bytes(const struct kiln_result *r);
/* The bytes the result holds in memory: its own parts' data (not borrowed ones)
 * and its values' texts. */
size_t kiln_result_held_bytes(const struct kiln_result *r);

/* ---- inputs ---- */

/* One input array of a job: a part the client sent in binary, or the same data
 * lifted from its JSON params (kiln_input_from_json, params.h), which gives
 * byte-identical arrays. `data` is borrowed: whoever fills the task owns it and
 * keeps it alive until the task is finished. */
struct kiln_array {
        char name[KILN_NAME_MAX];
        enum kiln_dtype dtype;
        int ndim;
        uint64_t shape[4];
        size_t bytes;           /* product(shape) * kiln_dtype_size(dtype) */
        const void *data;
};

/* One input a kind takes. A kind's list ends with name == NULL. */
struct kiln_input_spec {
        const char *name;       /* the part name, e.g. "rows", "queries", "image" */
        uint32_t dtypes;        /* allowed dtypes, KILN_DTYPE_BIT(...) | ... */
        int ndim;               /* required rank 1..4; 0 = any */
        bool required;
        /* The params field that may carry the same data inline as a JSON nested
         * array ("rows"), or NULL when it comes only as a binary part ("image"). JSON
         * converts to the first allowed of f32, i32, u32, u8 (kiln_input_json_dtype);
         * an input that allows bytes also takes a JSON string (its bytes) or object
         * (its compact text, keys sorted: sched.jobshop's instance);
         * the field is not a schema parameter and is not in the canonical params. */
        const char *json_param;
        const char *doc;        /* one line, shown by the UI */
};

/* The dtype that a JSON form of the input converts to: the first allowed of f32,
 * i32, u32, u8; -1 when none is (a bytes-only input has no JSON form). */
int kiln_input_json_dtype(const struct kiln_input_spec *spec);
/* The array called `name` among in[0..n), or NULL. */
const struct kiln_array *kiln_inputs_find(const struct kiln_array *in, size_t n, const char *name);
/* Fills *ret for `data` of the given dtype and shape and checks that `bytes` is
 * what the shape says. Returns >= 0 or -EINVAL (name too long, rank outside 0..4,
 * size mismatch or overflow) with the error naming "inputs.<name>". */
int kiln_array_init(struct kiln_array *ret, const char *name, enum kiln_dtype dtype, int ndim,
                    const uint64_t *shape, const void *data, size_t bytes, struct kiln_error *err);

/* ---- objects ---- */

/* One compiled object as a task sees it: a version of a stored object of a class
 * (object.h: a model, a vector collection), compiled. The snapshot is immutable and shared by
 * every task that runs against this version; its owner (the daemon's object cache)
 * keeps it alive until every such task is finished and the backends have been told
 * (kiln_backend.object_release). */
struct kiln_object {
        const struct kiln_object_class *cls;
        uint64_t version;
        const void *snapshot;
};

/* ---- running ---- */

/* At most this many values a kind adds to its `progress` messages (SPEC §2.2). */
#define KILN_MAX_PROGRESS_VALUES 4

/* What a running implementation may ask of whoever runs it. */
struct kiln_exec {
        /* Non-zero: abandon the work and return -ECANCELED. Read it every few
         * milliseconds of work (e.g. once per output row). */
        const atomic_int *stop;
        /* Optional: report progress in [0, 1]. May be called often; cheap. */
        void (*progress)(struct kiln_exec *ex, double fraction);
        /* Optional: progress with the kind's own fields for the `progress` message
         * (sched.jobshop: best, lower_bound and the schedule `starts`), at most
         * KILN_MAX_PROGRESS_VALUES values of any type. The values and their texts
         * are lent for the call: whoever runs the task copies what it keeps. A STR
         * or JSON text over 256 KiB is left out of `progress` (a result carries it
         * all the same); a JSON text that does not parse is sent as null. Call it
         * when they change, from one thread of the task at a time; whoever runs the
         * task sends the latest ones at most every 100 ms. */
        void (*report)(struct kiln_exec *ex, double fraction, const struct kiln_value *values, int n);
        void *opaque;
};

/* The CPUs this process may run on (its affinity mask, else those online; at least
 * 1): how many threads of its own a kind's big job may use. */
unsigned kiln_cpus(void);

static inline bool kiln_exec_stopped(const struct kiln_exec *ex)
{
        return ex && ex->stop && atomic_load_explicit(ex->stop, memory_order_relaxed) != 0;
}

static inline void kiln_exec_progress(struct kiln_exec *ex, double fraction)
{
        if (ex && ex->progress)
                ex->progress(ex, fraction);
}

static inline void kiln_exec_report(struct kiln_exec *ex, double fraction, const struct kiln_value *values, int n)
{
        if (ex && ex->report)
                ex->report(ex, fraction, values, n);
        else if (ex && ex->progress)
                ex->progress(ex, fraction);
}

/* One job as an implementation and a backend see it. */
struct kiln_task {
        const void *params;        /* the kind's typed parameters */
        const struct kiln_array *inputs; /* the job's inputs (borrowed), in any order */
        size_t n_inputs;
        const struct kiln_object *object; /* NULL when the kind uses none */
        struct kiln_result *result;/* empty on entry; filled on success */
        struct kiln_exec *exec;    /* stop flag and progress for this job */
        int status;                /* out: >= 0, -ECANCELED, -ENOMEM, -EINVAL, ... */
        /* out: what is wrong with the job's own input, when that is why it failed
         * (data only the run could see: a corrupt image body). With a message here
         * the job fails `bad_params` (status -EFBIG: `too_large`) naming the field,
         * not `internal`. Filled with kiln_error_set. */
        struct kiln_error error;
        char device[16];           /* out: where it ran, e.g. "cpu" or "cuda:0" */
        /* Optional: called by the backend (on the thread that called run_batch) as
         * soon as this task's status and result are final, before the rest of the
         * batch is done. A task whose on_done has been called is never touched by
         * the backend again. */
        void (*on_done)(struct kiln_task *t);
        void *opaque;              /* for on_done */
        bool finished;             /* set by the backend right before on_done */
        /* Set by the backend when it begins computing this task (after checking the
         * stop flag), so that a draining daemon can hand back tasks not yet begun. */
        atomic_bool started;
};

/* ---- parameter schema (generic validation, see params.h) ---- */

enum kiln_param_type {
        KILN_PARAM_NUMBER,      /* JSON number within [min, max]; stored as double (or float) */
        KILN_PARAM_INTEGER,     /* JSON integer (or integral number) within [min, max];
                                 * stored as int32_t or int64_t */
        KILN_PARAM_BOOL,        /* stored as bool */
        KILN_PARAM_STRING,      /* one of `choices` when choices is non-NULL: stored as the
                                 * choice's index (int); else stored as a char array */
        KILN_PARAM_STRING_SET,  /* array of distinct strings from `choices` (at least one):
                                 * stored as a uint32_t with bit i for choices[i] */
        KILN_PARAM_OBJECT,      /* nested object described by `fields` (not stored itself) */
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
        /* Where the validated value is stored in the kind's typed parameter struct
         * (KILN_PARAM_AT); size 0: not stored. Offsets of nested fields are into the
         * same top-level struct. */
        size_t offset, size;
};

/* Stores a parameter in member `m` of the typed parameter struct `T`. */
#define KILN_PARAM_AT(T, m) .offset = offsetof(T, m), .size = sizeof(((T *)0)->m)

/* A job kind. All function pointers are safe to call from any thread. */
struct kiln_kind {
        const char *name;          /* e.g. "lens.nfw" */
        uint32_t version;          /* implementation version; part of the cache key */
        const char *doc;           /* one line */
        const struct kiln_param *params; /* schema, terminated by name == NULL */
        size_t params_size;        /* size of the typed parameter struct */
        const struct kiln_input_spec *inputs; /* terminated by name == NULL; NULL: none */
        const struct kiln_object_class *object; /* the class of object it runs against, or NULL */
        /* The params field (a required STRING of the schema) that names the object,
         * e.g. "model", "collection"; NULL when object is NULL. */
        const char *object_param;
        /* Values of object_param that name no stored object but one the kind
         * implements itself (risk.score's "altman-z"), NULL-terminated; NULL: none.
         * A job naming one binds to no object (its task's object is NULL), is
         * checked in full at submission (kiln_kind_check with no object) and is
         * cached under its params and inputs alone. */
        const char *const *builtin_objects;
        /* Parity tolerance of a non-CPU backend against run_cpu: a value passes when
         * |got - want| <= atol + rtol * |want| (both 0: exact). */
        double rtol, atol;

        /* Optional: checks between parameters and derived fields, after the generic
         * validation has stored every parameter in `params` (kiln_params_validate
         * calls it). On a bad value returns -EINVAL with err naming the field. */
        int (*finish)(void *params, struct kiln_error *err);
        /* Optional: checks of the parameters against the inputs and the object, once
         * both are known (kiln_kind_check calls it after checking the inputs against
         * the specs). Returns >= 0, or -EINVAL (the job is `bad_params`) or -EFBIG
         * (`too_large`: an input bigger than the kind takes) with err naming the
         * field. */
        int (*check)(const void *params, const struct kiln_array *in, size_t n_in,
                     const struct kiln_object *obj, struct kiln_error *err);
        /* Optional: the checks of `check` that a stored object's meta settles, made
         * at submission, before any object is loaded (kiln_kind_check_meta calls it
         * after checking the inputs against the specs), so that bad input is refused
         * at once rather than failing the job when it runs. `meta` is what the
         * object's class keeps of `version` (object.h: a collection's metric and
         * dim; a model's features), NULL with meta_len 0 when it is not known (an
         * object stored before its class kept it): then, as with a meta it cannot
         * read, the hook checks only what needs no object. What only the object's
         * data can tell (whether an id is stored) is left to `check`. Returns >= 0,
         * or -EINVAL / -EFBIG with err naming the field exactly as `check` names it
         * for the same fault. */
        int (*check_meta)(const void *params, const struct kiln_array *in, size_t n_in, uint64_t version,
                          const void *meta, size_t meta_len, struct kiln_error *err);
        /* Upper bound of the bytes the job's result holds (kiln_result_held_bytes),
         * for limits: its parts, and its values' texts where they can be bounded;
         * obj is NULL at submit, and the loaded object (which may bound the texts
         * more closely) before the job runs. Called through kiln_kind_result_bytes. */
        uint64_t (*result_size)(const void *params, const struct kiln_array *in, size_t n_in,
                                const struct kiln_object *obj);
        /* Deprecated (interface version 2): the bound from the params alone. Kept
         * while callers move to kiln_kind_result_bytes; new kinds set result_size. */
        uint64_t (*result_bytes)(const void *params);
        /* Of result_size's bound, the part that is its values' texts (a search's
         * ids), which the job's `done` message holds once more: the daemon counts
         * it twice. NULL: values too small to count. Called through
         * kiln_kind_values_text_bytes. */
        uint64_t (*values_text_size)(const void *params, const struct kiln_array *in, size_t n_in,
                                     const struct kiln_object *obj);

        /* The CPU implementation of one task: fills t->result (empty on entry) from
         * t->params, t->inputs and t->object. Returns >= 0, -ECANCELED when the stop
         * flag was raised, -ENOMEM, -EINVAL (or -EFBIG) with t->error filled when the
         * job's input turns out to be bad, or another -errno. On failure the result
         * may hold partial data; the caller clears it. Does not touch
         * t->status/finished. */
        int (*run_cpu)(struct kiln_task *t);
        /* Optional: many tasks at once (e.g. one row each: one matrix product instead
         * of n). Sets every t[i]->status and fills each result; returns >= 0, or
         * -errno when none was run. The CPU backend uses it for batches of two or
         * more tasks. */
        int (*run_cpu_batch)(struct kiln_task *const *t, size_t n);
        /* Optional: whether the job is certain to be short on a CPU, well under a
         * millisecond (a few rows to score). kilnd runs such a job while nothing of
         * it is stored yet and stores its record once, finished, with its result: one
         * commit instead of two. It is called at submission, after the checks. NULL:
         * never. */
        bool (*quick)(const void *params, const struct kiln_array *in, size_t n_in);
};

/* The built-in kinds, NULL-terminated, in gpu/kinds/KINDS order (generated). */
extern const struct kiln_kind *const kiln_kinds[];

/* Looks up a kind by name; NULL when unknown. */
const struct kiln_kind *kiln_kind_find(const char *name);

/* The entry of kind->builtin_objects that the typed `params` name in their
 * object_param field, or NULL (also for a kind without built-in objects). */
const char *kiln_kind_builtin_object(const struct kiln_kind *kind, const void *params);

/* Checks a job's inputs against the kind's specs (every name known and given once,
 * every required one present, dtype allowed, rank as declared, bytes matching the
 * shape) and the object against the kind's class (none when the params name a
 * built-in object), then calls kind->check. Returns
 * >= 0 or -EINVAL with err naming the field ("inputs.rows", "params.model"). */
int kiln_kind_check(const struct kiln_kind *kind, const void *params, const struct kiln_array *in, size_t n_in,
                    const struct kiln_object *obj, struct kiln_error *err);

/* The submission-time check of a job bound to a stored object: its inputs against
 * the kind's specs (as kiln_kind_check), then kind->check_meta with `version` of
 * the object and the meta its class keeps (NULL, 0: not known). For a kind without
 * an object, or params naming a built-in one, it is kiln_kind_check with no
 * object. kiln_kind_check with the loaded object still runs before the job does.
 * Returns >= 0, or -EINVAL (-EFBIG) with err naming the field. */
int kiln_kind_check_meta(const struct kiln_kind *kind, const void *params, const struct kiln_array *in,
                         size_t n_in, uint64_t version, const void *meta, size_t meta_len, struct kiln_error *err);

/* The upper bound of a job's result bytes: result_size, else the deprecated
 * result_bytes, else 0. */
uint64_t kiln_kind_result_bytes(const struct kiln_kind *kind, const void *params, const struct kiln_array *in,
                                size_t n_in, const struct kiln_object *obj);
/* The part of that bound that is the values' texts: values_text_size, else 0. */
uint64_t kiln_kind_values_text_bytes(const struct kiln_kind *kind, const void *params, const struct kiln_array *in,
                                     size_t n_in, const struct kiln_object *obj);
