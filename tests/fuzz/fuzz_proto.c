/* libFuzzer target: one client text message through the protocol decoder, and the
 * error reply built from whatever it rejected. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct proto_req rq;
        struct proto_error err;
        json_t *ref = NULL;

        if (proto_decode((const char *)data, size, &rq, &ref, &err) >= 0) {
                proto_req_clear(&rq);
                return 0;
        }
        free(proto_error_json(ref, &err));
        json_decref(ref);
        return 0;
}
