/* image.relief's images: the header and structure checks that run before any pixel
 * is decoded (PNG chunks with their CRCs, JPEG segments, the EXIF orientation), and
 * the row decoder that dispatches to libspng or libjpeg-turbo.
 *
 * relief_image_probe reads only what the format puts before the pixels plus one
 * pass over the bytes, so a crafted header that claims a huge image costs nothing,
 * and a truncated or damaged file is refused when the job is submitted.
 *
 * A build without libspng (RELIEF_NO_PNG) or libjpeg (RELIEF_NO_JPEG) refuses
 * images of that format here, saying so (see kind.cmake). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifndef RELIEF_NO_PNG
#include <zlib.h>
#endif

#include "image_relief.h"

#define FIELD "inputs.image"

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t be16(const uint8_t *p)
{
        return (uint16_t)(p[0] << 8 | p[1]);
}

static int check_size(uint32_t w, uint32_t h, struct kiln_error *err)
{
        if (w == 0 || h == 0)
                return kiln_error_set(err, FIELD, "inputs.image says it is %u x %u pixels: an image has at least one",
                                      w, h);
        if ((uint64_t)w * h > RELIEF_MAX_PIXELS) {
                kiln_error_set(err, FIELD, "inputs.image is %u x %u = %llu pixels, over the limit of %llu (%llu megapixels)",
                               w, h, (unsigned long long)w * h, (unsigned long long)RELIEF_MAX_PIXELS,
                               (unsigned long long)RELIEF_MAX_PIXELS / 1000000);
                return -EFBIG;
        }
        return 0;
}

/* ---- PNG ---- */

static const uint8_t png_signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

/* The CRC of a chunk's type and `len` bytes of data (zlib's crc32 is the PNG CRC). */
static uint32_t chunk_crc(const uint8_t *type, uint32_t len)
{
#ifndef RELIEF_NO_PNG
        return (uint32_t)crc32(crc32(0L, Z_NULL, 0), type, len + 4);
#else
        return 0; /* never reached: PNG is refused before */
#endif
}

static bool png_depth_ok(int colour, int depth)
{
        switch (colour) {
        case 0: return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
        case 3: return depth == 1 || depth == 2 || depth == 4 || depth == 8;
        case 2:
        case 4:
        case 6: return depth == 8 || depth == 16;
        default: return false;
        }
}

static int png_probe(const uint8_t *d, size_t n, bool verify, struct relief_image_info *ret,
                     struct kiln_error *err)
{
        if (n < 8 + 25 || be32(d + 8) != 13 || memcmp(d + 12, "IHDR", 4) != 0)
                return kiln_error_set(err, FIELD, "inputs.image is a PNG without its IHDR header (truncated?)");
        const uint8_t *ihdr = d + 16;
        if (chunk_crc(d + 12, 13) != be32(d + 29))
                return kiln_error_set(err, FIELD, "inputs.image is a damaged PNG (its IHDR header fails its CRC)");
        uint32_t w = be32(ihdr), h = be32(ihdr + 4);
        int depth = ihdr[8], colour = ihdr[9];
        if (w > 0x7fffffffu || h > 0x7fffffffu)
                return kiln_error_set(err, FIELD, "inputs.image is a PNG with an invalid size (%u x %u)", w, h);
        int r = check_size(w, h, err);
        if (r < 0)
                return r;
        if (!png_depth_ok(colour, depth) || ihdr[10] != 0 || ihdr[11] != 0 || ihdr[12] > 1)
                return kiln_error_set(err, FIELD,
                                      "inputs.image is a PNG with an invalid header (colour type %d, bit depth %d)",
                                      colour, depth);

        bool idat = false, plte = false;
        for (size_t at = 8; verify;) {
                if (n - at < 12)
                        return kiln_error_set(err, FIELD, "inputs.image is a truncated PNG (it ends before IEND)");
                uint32_t len = be32(d + at);
                const uint8_t *type = d + at + 4;
                if (len > 0x7fffffffu || len > n - at - 12)
                        return kiln_error_set(err, FIELD,
                                              "inputs.image is a truncated PNG (chunk %.4s at byte %zu runs past "
                                              "its end)",
                                              (const char *)type, at);
                if (chunk_crc(type, len) != be32(d + at + 8 + len))
                        return kiln_error_set(err, FIELD,
                                              "inputs.image is a damaged PNG (chunk %.4s at byte %zu fails its CRC)",
                                              (const char *)type, at);
                if (!memcmp(type, "IDAT", 4))
                        idat = true;
                else if (!memcmp(type, "PLTE", 4))
                        plte = true;
                else if (!memcmp(type, "IEND", 4))
                        break;
                at += 12 + (size_t)len;
        }
        if (verify && (!idat || (colour == 3 && !plte)))
                return kiln_error_set(err, FIELD, "inputs.image is a PNG without %s",
                                      idat ? "the palette its colour type needs" : "image data (IDAT)");
        *ret = (struct relief_image_info){
                .codec = RELIEF_PNG,
                .width = w,
                .height = h,
                .orientation = 1,
                .channels = 4, /* every PNG is decoded to RGBA: palettes and tRNS included */
                .depth = depth == 16 ? 16 : 8,
                .interlaced = ihdr[12] == 1,
        };
        return 0;
}

/* ---- JPEG ---- */

/* The orientation tag (0x0112) of an APP1 Exif segment's first IFD; 1 when absent
 * or invalid (the image is then shown as stored, as browsers do). */
static int exif_orientation(const uint8_t *s, size_t n)
{
        if (n < 6 + 8 || memcmp(s, "Exif\0\0", 6) != 0)
                return 1;
        const uint8_t *t = s + 6;
        size_t tn = n - 6;
        bool le = t[0] == 'I' && t[1] == 'I';
        if (!le && !(t[0] == 'M' && t[1] == 'M'))
                return 1;
#define U16(p) (le ? (uint16_t)((p)[0] | (p)[1] << 8) : be16(p))
#define U32(p) (le ? (uint32_t)((p)[0] | (p)[1] << 8 | (p)[2] << 16 | (uint32_t)(p)[3] << 24) : be32(p))
        if (U16(t + 2) != 42)
                return 1;
        uint32_t ifd = U32(t + 4);
        if (ifd > tn || tn - ifd < 2)
                return 1;
        uint32_t count = U16(t + ifd);
        for (uint32_t k = 0; k < count; k++) {
                size_t e = (size_t)ifd + 2 + (size_t)k * 12;
                if (e + 12 > tn)
                        return 1;
                if (U16(t + e) == 0x0112 && U16(t + e + 2) == 3 && U32(t + e + 4) == 1) {
                        int o = U16(t + e + 8);
                        return o >= 1 && o <= 8 ? o : 1;
                }
        }
#undef U16
#undef U32
        return 1;
}

/* The end of the entropy-coded data that starts at `at`: the position of the next
 * marker (0xFF followed by neither 0x00 nor a restart marker), or n. */
static size_t scan_end(const uint8_t *d, size_t n, size_t at)
{
        while (at < n) {
                const uint8_t *ff = memchr(d + at, 0xff, n - at);
                if (!ff)
                        return n;
                at = (size_t)(ff - d);
                if (at + 1 >= n)
                        return n;
                uint8_t m = d[at + 1];
                if (m != 0x00 && !(m >= 0xd0 && m <= 0xd7) && m != 0xff)
                        return at;
                at += m == 0xff ? 1 : 2;
        }
        return n;
}

static int jpeg_probe(const uint8_t *d, size_t n, bool verify, struct relief_image_info *ret,
                      struct kiln_error *err)
{
        struct relief_image_info info = { .codec = RELIEF_JPEG, .orientation = 1, .depth = 8 };
        bool frame = false, scan = false;

        for (size_t at = 2;;) {
                while (at < n && d[at] == 0xff && at + 1 < n && d[at + 1] == 0xff)
                        at++; /* fill bytes */
                if (n - at < 2)
                        return kiln_error_set(err, FIELD, "inputs.image is a truncated JPEG (no end-of-image marker)");
                if (d[at] != 0xff)
                        return kiln_error_set(err, FIELD, "inputs.image is a damaged JPEG (no marker at byte %zu)", at);
                uint8_t m = d[at + 1];
                at += 2;
                if (m == 0xd9) {
                        if (!frame || !scan)
                                return kiln_error_set(err, FIELD, "inputs.image is a JPEG without %s",
                                                      frame ? "image data" : "a frame header");
                        break;
                }
                if (m == 0x01 || (m >= 0xd0 && m <= 0xd7))
                        continue; /* markers without a length */
                if (m == 0xd8 || m == 0x00)
                        return kiln_error_set(err, FIELD, "inputs.image is a damaged JPEG (marker 0x%02x at byte %zu)",
                                              m, at - 2);
                if (n - at < 2 || be16(d + at) < 2 || be16(d + at) > n - at)
                        return kiln_error_set(err, FIELD,
                                              "inputs.image is a truncated JPEG (segment 0x%02x at byte %zu runs past "
                                              "its end)",
                                              m, at - 2);
                size_t len = be16(d + at);
                const uint8_t *s = d + at + 2;
                bool sof = m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
                if (sof && !frame) {
                        if (len < 8)
                                return kiln_error_set(err, FIELD, "inputs.image is a JPEG with a short frame header");
                        uint32_t h = be16(s + 1), w = be16(s + 3);
                        int r = check_size(w, h, err);
                        if (r < 0)
                                return r;
                        if (s[0] != 8)
                                return kiln_error_set(err, FIELD,
                                                      "inputs.image is a %d-bit JPEG: only 8-bit JPEG is supported",
                                                      s[0]);
                        if (s[5] != 1 && s[5] != 3)
                                return kiln_error_set(err, FIELD,
                                                      "inputs.image is a JPEG with %d colour components: only grey "
                                                      "and RGB (YCbCr) are supported, not CMYK",
                                                      s[5]);
                        info.width = w;
                        info.height = h;
                        info.channels = s[5] == 1 ? 1 : 3;
                        frame = true;
                } else if (m == 0xe1 && info.orientation == 1) {
                        info.orientation = exif_orientation(s, len - 2);
                }
                at += len;
                if (m == 0xda) {
                        if (!frame)
                                return kiln_error_set(err, FIELD, "inputs.image is a JPEG with a scan before its frame");
                        if (!verify)
                                break; /* the header is read */
                        scan = true;
                        at = scan_end(d, n, at);
                }
        }
        *ret = info;
        return 0;
}

int relief_image_probe(const void *data, size_t n, bool verify, struct relief_image_info *ret,
                       struct kiln_error *err)
{
        const uint8_t *d = data;

        if (d && n >= 8 && !memcmp(d, png_signature, 8)) {
#ifdef RELIEF_NO_PNG
                return kiln_error_set(err, FIELD, "inputs.image is a PNG: this kiln was built without libspng");
#endif
                return png_probe(d, n, verify, ret, err);
        }
        if (d && n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff) {
#ifdef RELIEF_NO_JPEG
                return kiln_error_set(err, FIELD, "inputs.image is a JPEG: this kiln was built without libjpeg");
#endif
                return jpeg_probe(d, n, verify, ret, err);
        }
        return kiln_error_set(err, FIELD, "inputs.image is neither a PNG nor a JPEG image (%zu bytes)", n);
}

/* ---- rows ---- */

struct relief_rows {
        struct relief_png *png;
        struct relief_jpeg *jpeg;
};

int relief_rows_open(const void *data, size_t n, const struct relief_image_info *info, struct relief_rows **ret)
{
        struct relief_rows *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        int r = -EPROTONOSUPPORT;
#ifndef RELIEF_NO_PNG
        if (info->codec == RELIEF_PNG)
                r = relief_png_open(data, n, info, &d->png);
#endif
#ifndef RELIEF_NO_JPEG
        if (info->codec == RELIEF_JPEG)
                r = relief_jpeg_open(data, n, info, &d->jpeg);
#endif
        if (r < 0) {
                free(d);
                return r;
        }
        *ret = d;
        return 0;
}

int relief_rows_next(struct relief_rows *d, const void **ret_row)
{
#ifndef RELIEF_NO_PNG
        if (d->png)
                return relief_png_next(d->png, ret_row);
#endif
#ifndef RELIEF_NO_JPEG
        if (d->jpeg)
                return relief_jpeg_next(d->jpeg, ret_row);
#endif
        return -EPROTONOSUPPORT;
}

void relief_rows_free(struct relief_rows *d)
{
        if (!d)
                return;
#ifndef RELIEF_NO_PNG
        relief_png_free(d->png);
#endif
#ifndef RELIEF_NO_JPEG
        relief_jpeg_free(d->jpeg);
#endif
        free(d);
}
