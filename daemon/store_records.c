/* Job records: in memory (dup, free) and on disk (the codec).
 *
 * Record format, version 2 (all integers little-endian):
 *   u8 version, u8 priority, u8 state,
 *   i64 submitted_ms, i64 finished_ms, i64 deadline_ms,
 *   u32 queue_ms, u32 run_ms, u32 batch,
 *   kind, tenant, backend:  u8 length + bytes (no NUL, shorter than the struct's array),
 *   params, idem_key, error_code, error_message:  u32 length + bytes, or u32 0xffffffff
 *   for NULL,
 *   u32 attempts, u64 input_size, object:  u32 length + bytes, or 0xffffffff for NULL,
 *   error_field:  u32 length + bytes, or 0xffffffff for NULL.
 * Version 2 is the same without error_field (it decodes as NULL); version 1 also
 * without the three fields before it (attempts 0, input_size 0, object NULL). Both
 * still decode. Records are always written as version 3.
 * The id is the key and is not repeated in the value. A record that does not parse
 * exactly (short, trailing bytes, out-of-range values, embedded NULs) is -EIO. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

#define RECORD_VERSION_1 1
#define RECORD_VERSION_2 2

static int dup_string(const char *src, char **ret)
{
        char *d = NULL;

        if (src) {
                d = strdup(src);
                if (!d)
                        return -ENOMEM;
        }
        *ret = d;
        return 0;
}

/* Frees a job and the strings it owns. Accepts NULL. */
void store_job_free(struct store_job *j)
{
        if (!j)
                return;
        free(j->params);
        free(j->idem_key);
        free(j->error_code);
        free(j->error_message);
        free(j->object);
        free(j->error_field);
        free(j);
}

/* Returns a deep copy of `j` (free with store_job_free), or NULL when out of memory. */
struct store_job *store_job_dup(const struct store_job *j)
{
        struct store_job *d = malloc(sizeof(*d));

        if (!d)
                return NULL;
        *d = *j;
        d->params = d->idem_key = d->error_code = d->error_message = d->object = d->error_field = NULL;
        if (dup_string(j->params, &d->params) < 0 || dup_string(j->idem_key, &d->idem_key) < 0 ||
            dup_string(j->error_code, &d->error_code) < 0 ||
            dup_string(j->error_message, &d->error_message) < 0 || dup_string(j->object, &d->object) < 0 ||
            dup_string(j->error_field, &d->error_field) < 0) {
                store_job_free(d);
                return NULL;
        }
        return d;
}

/* ---- decoding ---- */

/* Parses a record of version 1 or 2; see store_impl.h. */
int store_record_parse(const uint8_t *buf, size_t size, struct record_view *v)
{
        struct reader r = { .p = buf, .left = size };
        uint8_t version;

        if (!buf)
                return -EIO;
        if (!read_u8(&r, &version) ||
            (version != RECORD_VERSION_1 && version != RECORD_VERSION_2 && version != STORE_RECORD_VERSION))
                return -EIO;
        if (!read_u8(&r, &v->priority) || !read_u8(&r, &v->state) ||
            !read_i64(&r, &v->submitted_ms) || !read_i64(&r, &v->finished_ms) ||
            !read_i64(&r, &v->deadline_ms) || !read_u32(&r, &v->queue_ms) ||
            !read_u32(&r, &v->run_ms) || !read_u32(&r, &v->batch))
                return -EIO;
        if (v->priority > STORE_MAX_PRIORITY || v->state >= STORE_STATE_COUNT)
                return -EIO;
        if (!read_short_string(&r, sizeof(((struct store_job *)0)->kind), &v->kind) ||
            !read_short_string(&r, sizeof(((struct store_job *)0)->tenant), &v->tenant) ||
            !read_short_string(&r, sizeof(((struct store_job *)0)->backend), &v->backend))
                return -EIO;
        if (!read_long_string(&r, &v->params) || !read_long_string(&r, &v->idem_key) ||
            !read_long_string(&r, &v->error_code) || !read_long_string(&r, &v->error_message))
                return -EIO;
        v->attempts = 0;
        v->input_size = 0;
        v->object = (struct str_view){ .p = NULL, .n = 0 };
        if (version >= 2 &&
            (!read_u32(&r, &v->attempts) || !read_u64(&r, &v->input_size) || !read_long_string(&r, &v->object)))
                return -EIO;
        v->error_field = (struct str_view){ .p = NULL, .n = 0 };
        if (version >= 3 && !read_long_string(&r, &v->error_field))
                return -EIO;
        if (r.left != 0)
                return -EIO;
        return 0;
}

static int view_to_string(const struct str_view *v, char **ret)
{
        char *s = NULL;

        if (v->p) {
                s = malloc(v->n + 1);
                if (!s)
                        return -ENOMEM;
                memcpy(s, v->p, v->n);
                s[v->n] = '\0';
        }
        *ret = s;
        return 0;
}

/* A new job from a parsed record; see store_impl.h. */
int store_record_view_to_job(const uint8_t id[16], const struct record_view *v, struct store_job **ret)
{
        struct store_job *j = calloc(1, sizeof(*j));

        if (!j)
                return -ENOMEM;
        memcpy(j->id, id, 16);
        memcpy(j->kind, v->kind.p, v->kind.n);
        memcpy(j->tenant, v->tenant.p, v->tenant.n);
        memcpy(j->backend, v->backend.p, v->backend.n);
        j->priority = v->priority;
        j->state = v->state;
        j->submitted_ms = v->submitted_ms;
        j->finished_ms = v->finished_ms;
        j->deadline_ms = v->deadline_ms;
        j->queue_ms = v->queue_ms;
        j->run_ms = v->run_ms;
        j->batch = v->batch;
        j->attempts = v->attempts;
        j->input_size = v->input_size;
        if (view_to_string(&v->params, &j->params) < 0 || view_to_string(&v->idem_key, &j->idem_key) < 0 ||
            view_to_string(&v->error_code, &j->error_code) < 0 ||
            view_to_string(&v->error_message, &j->error_message) < 0 ||
            view_to_string(&v->object, &j->object) < 0 || view_to_string(&v->error_field, &j->error_field) < 0) {
                store_job_free(j);
                return -ENOMEM;
        }
        *ret = j;
        return 0;
}

/* Decodes a record stored under key `id` as a new job; see store_internal.h. */
int store_record_decode(const uint8_t id[16], const uint8_t *buf, size_t size, struct store_job **ret)
{
        struct record_view v;
        int r;

        r = store_record_parse(buf, size, &v);
        if (r < 0)
                return r;
        return store_record_view_to_job(id, &v, ret);
}

/* ---- encoding ---- */

static int short_string_size(const char *s, size_t cap, size_t *size)
{
        size_t n = strnlen(s, cap);

        if (n >= cap)
                return -EINVAL;
        *size += 1 + n;
        return 0;
}

static int long_string_size(const char *s, size_t *size)
{
        size_t n;

        *size += 4;
        if (!s)
                return 0;
        n = strlen(s);
        if (n >= STORE_NULL_STRING)
                return -E2BIG;
        *size += n;
        return 0;
}

/* Validates `job` and computes the size of its record; see store_impl.h. */
int store_record_size(const struct store_job *job, size_t *ret)
{
        size_t size = 3 + 3 * 8 + 3 * 4 + 4 + 8;
        int r;

        if (job->priority > STORE_MAX_PRIORITY || job->state >= STORE_STATE_COUNT)
                return -EINVAL;
        r = short_string_size(job->kind, sizeof(job->kind), &size);
        if (r >= 0)
                r = short_string_size(job->tenant, sizeof(job->tenant), &size);
        if (r >= 0)
                r = short_string_size(job->backend, sizeof(job->backend), &size);
        if (r >= 0)
                r = long_string_size(job->params, &size);
        if (r >= 0)
                r = long_string_size(job->idem_key, &size);
        if (r >= 0)
                r = long_string_size(job->error_code, &size);
        if (r >= 0)
                r = long_string_size(job->error_message, &size);
        if (r >= 0)
                r = long_string_size(job->object, &size);
        if (r >= 0)
                r = long_string_size(job->error_field, &size);
        if (r < 0)
                return r;
        *ret = size;
        return 0;
}

/* Writes the record of an already validated job into dst; see store_impl.h. */
void store_record_write(const struct store_job *job, uint8_t *dst)
{
        uint8_t *p = dst;

        *p++ = STORE_RECORD_VERSION;
        *p++ = job->priority;
        *p++ = job->state;
        p = write_i64(p, job->submitted_ms);
        p = write_i64(p, job->finished_ms);
        p = write_i64(p, job->deadline_ms);
        p = write_u32(p, job->queue_ms);
        p = write_u32(p, job->run_ms);
        p = write_u32(p, job->batch);
        p = write_short_string(p, job->kind);
        p = write_short_string(p, job->tenant);
        p = write_short_string(p, job->backend);
        p = write_long_string(p, job->params);
        p = write_long_string(p, job->idem_key);
        p = write_long_string(p, job->error_code);
        p = write_long_string(p, job->error_message);
        p = write_u32(p, job->attempts);
        p = write_i64(p, (int64_t)job->input_size);
        p = write_long_string(p, job->object);
        write_long_string(p, job->error_field);
}

/* Encodes `job` as a record; see store_internal.h. */
int store_record_encode(const struct store_job *job, uint8_t **ret_buf, size_t *ret_size)
{
        uint8_t *buf;
        size_t size;
        int r;

        r = store_record_size(job, &size);
        if (r < 0)
                return r;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        store_record_write(job, buf);
        *ret_buf = buf;
        *ret_size = size;
        return 0;
}
