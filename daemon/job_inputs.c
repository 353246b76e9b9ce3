/* A job's inputs (see job_inputs.h). */
#include "job_inputs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "params.h"
#include "result_codec.h"

static int fail(struct proto_error *err, enum kiln_err code, const char *field, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static int fail(struct proto_error *err, enum kiln_err code, const char *field, const char *fmt, ...)
{
        va_list ap;
        err->code = code;
        snprintf(err->field, sizeof(err->field), "%s", field);
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        return code == KERR_TOO_LARGE ? -EFBIG : code == KERR_INTERNAL ? -ENOMEM : -EINVAL;
}

void job_inputs_clear(struct job_inputs *in)
{
        if (!in)
                return;
        free(in->blob);
        memset(in, 0, sizeof(*in));
}

static const struct kiln_input_spec *spec_of(const struct kiln_kind *kind, const char *name, size_t *ret_index)
{
        for (size_t s = 0; kind->inputs && kind->inputs[s].name; s++)
                if (!strcmp(kind->inputs[s].name, name)) {
                        *ret_index = s;
                        return &kind->inputs[s];
                }
        return NULL;
}

/* The digest is part of the job's cache identity: without one (OpenSSL out of
 * memory) jobs with other inputs would share it, so the job cannot go on. */
static bool digest_hex(const uint8_t *data, size_t n, char ret[65])
{
        static const char hex[] = "0123456789abcdef";
        struct digest_piece p = { data, n };
        uint8_t md[32];

        if (!digest_sha256(&p, 1, md))
                return false;
        for (int i = 0; i < 32; i++) {
                ret[2 * i] = hex[md[i] >> 4];
                ret[2 * i + 1] = hex[md[i] & 15];
        }
        ret[64] = '\0';
        return true;
}

int job_inputs_parse(uint8_t *blob, size_t size, struct job_inputs *ret)
{
        struct kiln_result r;
        if (result_blob_parse(blob, size, &r) < 0)
                return -EIO;
        struct job_inputs in = { .blob = blob, .size = size };
        for (int i = 0; i < r.n_parts && i < KILN_MAX_INPUTS; i++) {
                const struct kiln_part *p = &r.parts[i];
                if (kiln_array_init(&in.arrays[i], p->name, p->dtype, p->ndim, p->shape, p->data, p->bytes, NULL) < 0) {
                        kiln_result_clear(&r);
                        return -EIO;
                }
        }
        in.n = (size_t)r.n_parts;
        kiln_result_clear(&r); /* parts are borrowed from the blob: only values go */
        if (!digest_hex(blob, size, in.digest))
                return -ENOMEM;
        *ret = in;
        return 0;
}

/* One blob of the arrays (in spec order), and the arrays pointed into it. The arrays
 * were checked, and the blob's layout is known from building it: it is not parsed
 * back (that was a quarter of the event loop's time for one-row jobs). */
static int pack(struct kiln_array *arrays, size_t n, struct job_inputs *ret, struct proto_error *err)
{
        struct kiln_result r = { 0 };
        for (size_t i = 0; i < n; i++) {
                struct kiln_part *p = &r.parts[i];
                memcpy(p->name, arrays[i].name, sizeof(p->name));
                p->dtype = arrays[i].dtype;
                p->ndim = arrays[i].ndim;
                memcpy(p->shape, arrays[i].shape, sizeof(p->shape));
                p->bytes = arrays[i].bytes;
                p->data = (void *)arrays[i].data;
                p->borrowed = true;
        }
        r.n_parts = (int)n;
        struct result_blob *b = NULL;
        if (result_blob_new(&r, strdup("{}"), &b) < 0)
                return fail(err, KERR_INTERNAL, "inputs", "out of memory");
        size_t size = result_blob_size(b);
        uint8_t *blob = malloc(size);
        if (!blob) {
                result_blob_free(b);
                return fail(err, KERR_INTERNAL, "inputs", "out of memory for %zu bytes of inputs", size);
        }
        result_blob_write_range(b, blob, 0, size);
        struct job_inputs in = { .blob = blob, .size = size, .n = n };
        for (size_t i = 0; i < n; i++) {
                const struct kiln_array *a = &arrays[i];
                uint8_t *data = blob + result_blob_part_offset(b, (int)i);
                if (kiln_array_init(&in.arrays[i], a->name, a->dtype, a->ndim, a->shape, data, a->bytes, NULL) < 0) {
                        result_blob_free(b);
                        free(blob);
                        return fail(err, KERR_INTERNAL, "inputs", "the inputs could not be encoded");
                }
        }
        result_blob_free(b);
        if (!digest_hex(blob, size, in.digest)) {
                free(blob);
                return fail(err, KERR_INTERNAL, "inputs", "out of memory digesting the inputs");
        }
        *ret = in;
        return 0;
}

int job_inputs_assemble(const struct kiln_kind *kind, const json_t *params, struct part **parts, size_t n_parts,
                        uint64_t max_bytes, struct job_inputs *ret, struct proto_error *err)
{
        struct kiln_array arrays[KILN_MAX_INPUTS];
        void *json_data[KILN_MAX_INPUTS] = { 0 };
        struct kiln_array *by_spec[KILN_MAX_INPUTS] = { 0 };
        struct kiln_error perr;
        int n_json = 0, r = 0;
        size_t n = 0;
        uint64_t total = 0;

        memset(ret, 0, sizeof(*ret));
        if (kind->inputs && kind->inputs[0].name) {
                n_json = kiln_inputs_from_params(kind, params, max_bytes, arrays, json_data, &perr);
                if (n_json < 0) {
                        r = fail(err, n_json == -E2BIG ? KERR_TOO_LARGE : n_json == -ENOMEM ? KERR_INTERNAL
                                                                                              : KERR_BAD_PARAMS,
                                 perr.field, "%s", perr.message);
                        n_json = 0;
                        goto out;
                }
        }
        for (int i = 0; i < n_json; i++) {
                size_t s = 0;
                spec_of(kind, arrays[i].name, &s);
                by_spec[s] = &arrays[i];
                total += arrays[i].bytes;
        }
        n = (size_t)n_json;
        for (size_t i = 0; i < n_parts; i++) {
                struct part *p = parts[i];
                char field[64];
                size_t s = 0;
                snprintf(field, sizeof(field), "parts.%s", p->name);
                const struct kiln_input_spec *spec = spec_of(kind, p->name, &s);
                if (!spec) {
                        r = fail(err, KERR_BAD_PARAMS, field, "%s takes no binary part \"%s\"", kind->name, p->name);
                        goto out;
                }
                if (by_spec[s]) {
                        r = fail(err, KERR_BAD_PARAMS, field, "input \"%s\" was given both as a binary part and as params.%s",
                                 p->name, spec->json_param ? spec->json_param : p->name);
                        goto out;
                }
                struct kiln_error kerr;
                if (kiln_array_init(&arrays[n], p->name, p->dtype, p->ndim, p->shape, p->data, p->bytes, &kerr) < 0) {
                        r = fail(err, KERR_BAD_PARAMS, kerr.field, "%s", kerr.message);
                        goto out;
                }
                by_spec[s] = &arrays[n++];
                total += p->bytes;
        }
        if (total > max_bytes) {
                r = fail(err, KERR_TOO_LARGE, "inputs",
                         "the job's inputs hold %llu bytes, over the limit of %llu (limits.max_input_bytes)",
                         (unsigned long long)total, (unsigned long long)max_bytes);
                goto out;
        }
        /* In spec order, so that the same inputs always make the same blob. */
        struct kiln_array ordered[KILN_MAX_INPUTS];
        size_t k = 0;
        for (size_t s = 0; s < KILN_MAX_INPUTS; s++)
                if (by_spec[s])
                        ordered[k++] = *by_spec[s];
        if (k)
                r = pack(ordered, k, ret, err);
out:
        for (int i = 0; i < n_json; i++)
                free(json_data[i]);
        for (size_t i = 0; i < n_parts; i++)
                part_free(parts[i]);
        return r;
}
