/* KILN_CUDA_FAULT parsing (see fault.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"

static int parse_u32(const char *s, uint32_t *ret)
{
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (!*s || *end || v > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t)v;
        return 0;
}

int cuda_fault_parse(const char *text, struct cuda_fault *ret)
{
        struct cuda_fault f = { .fail_count = UINT32_MAX, .probe_ms = 5000 };
        char buf[256];

        if (text && strlen(text) >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, text ? text : "");
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                int r = 0;
                f.enabled = true;
                if (strcmp(tok, "sim") == 0)
                        f.sim = true;
                else if (strcmp(tok, "probe-fail") == 0)
                        f.probe_fail = true;
                else if (strncmp(tok, "fail-after=", 11) == 0)
                        r = parse_u32(tok + 11, &f.fail_after);
                else if (strncmp(tok, "fail-count=", 11) == 0)
                        r = parse_u32(tok + 11, &f.fail_count);
                else if (strncmp(tok, "probe-ms=", 9) == 0)
                        r = parse_u32(tok + 9, &f.probe_ms);
                else if (strcmp(tok, "error=launch") == 0)
                        f.error = CUDA_FAULT_LAUNCH;
                else if (strcmp(tok, "error=oom") == 0)
                        f.error = CUDA_FAULT_OOM;
                else if (strcmp(tok, "error=lost") == 0)
                        f.error = CUDA_FAULT_LOST;
                else
                        r = -EINVAL;
                if (r < 0)
                        return r;
        }
        *ret = f;
        return 0;
}
