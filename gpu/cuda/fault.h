/* Fault injection for the CUDA plugin's tests, read from one environment variable
 * and nowhere else, so it cannot be switched on by accident (kiln's config loader
 * ignores KILN_CUDA_* variables, and the packaged units never set it):
 *
 *   KILN_CUDA_FAULT=TOKEN[,TOKEN...]
 *     sim            add a simulated device "cuda:sim0" that accepts every batch and
 *                    then fails it as a device error (no computation happens on it;
 *                    it exists to prove retry, out-of-service and re-probe without a
 *                    GPU). Probing it succeeds, so it returns to service and fails
 *                    again.
 *     fail-after=N   real devices: the (N+1)-th and later batches on a device fail
 *                    as an injected device error (default 0: the first one)
 *     fail-count=M   at most M injected failures per device (default unlimited)
 *     error=E        what the failure looks like: "launch" (a kernel error, the
 *                    default), "oom" (out of memory) or "lost" (device lost)
 *     probe-ms=T     back-off before an out-of-service device is probed (default 5000)
 *     probe-fail     probes of an injected-faulty device fail too
 *
 * Unset or empty: no fault, no simulated device. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum cuda_fault_error { CUDA_FAULT_LAUNCH, CUDA_FAULT_OOM, CUDA_FAULT_LOST };

struct cuda_fault {
        bool enabled;          /* the variable named at least one fault */
        bool sim;
        uint32_t fail_after;
        uint32_t fail_count;   /* UINT32_MAX: unlimited */
        enum cuda_fault_error error;
        uint32_t probe_ms;
        bool probe_fail;
};

/* Parses `text` (NULL or "" = no fault). Returns >= 0 and fills *ret, or -EINVAL
 * for an unknown token or a bad number. */
int cuda_fault_parse(const char *text, struct cuda_fault *ret);
