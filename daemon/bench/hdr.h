/* An HDR-style latency histogram: log-linear buckets over 1 µs .. 1 h with a
 * relative bucket width of 1/128 (values reported to within ~0.4 %).
 *
 * Values are microseconds. Below 256 µs every microsecond has its own bucket;
 * above, each power of two is split into 128 equal buckets. Recording is O(1) and
 * allocation-free; a histogram is a plain struct that can live anywhere. */
#pragma once

#include <stdint.h>

#define HDR_LINEAR 256u                 /* values below this get exact buckets */
#define HDR_SUB 128u                    /* buckets per power of two above it */
#define HDR_MAX_US 3600000000ull        /* 1 h; larger values are clamped */
#define HDR_BUCKETS (HDR_LINEAR + (31u - 7u) * HDR_SUB)

struct hdr {
        uint64_t counts[HDR_BUCKETS];
        uint64_t total;
        uint64_t min_us, max_us;        /* exact extremes of the recorded values */
};

/* Empties h. */
void hdr_init(struct hdr *h);

/* Records one value in microseconds (0 counts as 1 µs, above 1 h as 1 h). */
void hdr_record(struct hdr *h, uint64_t us);

/* Adds every count of src to dst. */
void hdr_merge(struct hdr *dst, const struct hdr *src);

/* The value at percentile pct (0..100): the middle of the bucket holding the
 * ceil(pct/100 * total)-th smallest value, clamped to [min, max]. 0 when empty. */
uint64_t hdr_value_at(const struct hdr *h, double pct);
