/* libFuzzer target: one binary message through the KLNB frame parser; a frame that
 * parses is re-encoded and must parse again to the same part. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kind.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct proto_frame f;
        struct proto_error err;
        json_t *ref = NULL;

        if (proto_frame_decode(data, size, &f, &ref, &err) < 0) {
                json_decref(ref);
                return 0;
        }
        uint8_t *hdr;
        size_t hdr_len;
        if (proto_frame_header("00000000-0000-7000-8000-000000000000", f.part, kiln_dtype_name(f.dtype), f.ndim,
                               f.shape, &hdr, &hdr_len) >= 0) {
                uint8_t *again = malloc(hdr_len + f.payload_len);
                if (again) {
                        memcpy(again, hdr, hdr_len);
                        memcpy(again + hdr_len, f.payload, f.payload_len);
                        struct proto_frame g;
                        if (proto_frame_decode(again, hdr_len + f.payload_len, &g, NULL, &err) < 0 ||
                            strcmp(g.part, f.part) || g.payload_len != f.payload_len)
                                abort(); /* the encoder and the decoder disagree */
                        proto_frame_clear(&g);
                        free(again);
                }
                free(hdr);
        }
        proto_frame_clear(&f);
        return 0;
}
