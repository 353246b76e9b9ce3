/* The log-linear latency histogram (see hdr.h). */
#include <math.h>
#include <string.h>

#include "hdr.h"

/* The bucket of a value in [1, HDR_MAX_US]. */
static unsigned bucket_of(uint64_t v)
{
        if (v < HDR_LINEAR)
                return (unsigned)v;
        unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 8 */
        unsigned shift = e - 7u;
        unsigned m = (unsigned)(v >> shift);             /* 128..255 */
        return HDR_LINEAR + (e - 8u) * HDR_SUB + (m - HDR_SUB);
}

/* The lowest value and the width of bucket i. */
static void bucket_range(unsigned i, uint64_t *ret_low, uint64_t *ret_width)
{
        if (i < HDR_LINEAR) {
                *ret_low = i;
                *ret_width = 1;
                return;
        }
        unsigned e = (i - HDR_LINEAR) / HDR_SUB + 8u;
        unsigned m = (i - HDR_LINEAR) % HDR_SUB + HDR_SUB;
        unsigned shift = e - 7u;
        *ret_low = (uint64_t)m << shift;
        *ret_width = 1ull << shift;
}

void hdr_init(struct hdr *h)
{
        memset(h, 0, sizeof(*h));
}

void hdr_record(struct hdr *h, uint64_t us)
{
        if (us < 1)
                us = 1;
        if (us > HDR_MAX_US)
                us = HDR_MAX_US;
        h->counts[bucket_of(us)]++;
        if (!h->total || us < h->min_us)
                h->min_us = us;
        if (us > h->max_us)
                h->max_us = us;
        h->total++;
}

void hdr_merge(struct hdr *dst, const struct hdr *src)
{
        if (!src->total)
                return;
        for (unsigned i = 0; i < HDR_BUCKETS; i++)
                dst->counts[i] += src->counts[i];
        if (!dst->total || src->min_us < dst->min_us)
                dst->min_us = src->min_us;
        if (src->max_us > dst->max_us)
                dst->max_us = src->max_us;
        dst->total += src->total;
}

uint64_t hdr_value_at(const struct hdr *h, double pct)
{
        if (!h->total)
                return 0;
        if (pct < 0)
                pct = 0;
        if (pct > 100)
                pct = 100;
        uint64_t rank = (uint64_t)ceil(pct / 100.0 * (double)h->total);
        if (rank < 1)
                rank = 1;
        uint64_t seen = 0;
        for (unsigned i = 0; i < HDR_BUCKETS; i++) {
                seen += h->counts[i];
                if (seen >= rank) {
                        uint64_t low, width;
                        bucket_range(i, &low, &width);
                        uint64_t v = low + width / 2;
                        if (v < h->min_us)
                                v = h->min_us;
                        if (v > h->max_us)
                                v = h->max_us;
                        return v;
                }
        }
        return h->max_us;
}
