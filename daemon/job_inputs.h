/* A job's inputs (kind.h: struct kiln_array) as the daemon keeps them: assembled
 * at submit from the binary parts the client sent and the arrays lifted from its
 * JSON params, in the kind's spec order, in one blob (the result codec's format,
 * result_codec.h) that is stored with the job's record, digested into its cache
 * key, and parsed back when a job is recovered. The arrays point into the blob. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kind.h"
#include "parts.h"
#include "proto.h"

struct job_inputs {
        struct kiln_array arrays[KILN_MAX_INPUTS];
        size_t n;
        uint8_t *blob;              /* malloc'd; NULL when the kind took none */
        size_t size;
        char digest[65];            /* SHA-256 of the blob, hex; "" when none */
};

/* Assembles the inputs of a submission of `kind`: `params` is the submitted params
 * object (inputs given inline are lifted from it), parts[0..n_parts) the binary
 * parts sent with it (taken over: freed here whatever happens). Every input is
 * checked against the kind's specs; the total is limited to max_bytes
 * (limits.max_input_bytes). Returns >= 0 with *ret filled, or < 0 with *err
 * filled (bad_params naming the field, too_large). */
int job_inputs_assemble(const struct kiln_kind *kind, const json_t *params, struct part **parts, size_t n_parts,
                        uint64_t max_bytes, struct job_inputs *ret, struct proto_error *err);

/* Takes over a stored blob (recovery) and points the arrays into it. Returns >= 0,
 * -EIO for a malformed blob or -ENOMEM (then nothing is taken). */
int job_inputs_parse(uint8_t *blob, size_t size, struct job_inputs *ret);

/* Frees the blob; the struct is left empty. Accepts NULL. */
void job_inputs_clear(struct job_inputs *in);
