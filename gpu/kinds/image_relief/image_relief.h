/* The `image.relief` job kind (SPEC section 1.6): a PNG or JPEG image becomes a
 * closed, manifold relief (or lithophane) mesh, written as binary STL or glTF 2.0
 * binary. Shared by the descriptor (kind.c), the decoders (decode*.c), the
 * heightfield (heightfield.c), the simplifier (simplify.c), the writers (mesh.c) and
 * the CUDA preparation; no jansson. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kind.h"

/* Decoded images over this many pixels are refused before any pixel is decoded. */
#define RELIEF_MAX_PIXELS 50000000ull
#define RELIEF_MAX_SIDE_PX 4096

enum relief_format {
        RELIEF_STL,
        RELIEF_GLB,
};

/* The typed, validated parameters of one image.relief job. */
struct relief_params {
        double width_mm;        /* the model's width along +x; the depth follows the aspect ratio */
        double base_mm;         /* > 0: the thickness under the darkest (lightest, inverted) pixel */
        double max_height_mm;   /* relief above the base for white (black, inverted) */
        bool invert;            /* lithophane: dark = thick */
        int32_t max_side_px;    /* the grid's longer side at most this (shrinks only) */
        double tolerance_mm;    /* 0: one vertex per pixel; > 0: the top surface simplified */
        int format;             /* enum relief_format */
};

/* ---- images (decode.c, decode_png.c, decode_jpeg.c) ---- */

enum relief_codec {
        RELIEF_PNG,
        RELIEF_JPEG,
};

/* What an image's header says, read without decoding a pixel. */
struct relief_image_info {
        enum relief_codec codec;
        uint32_t width, height;  /* as stored in the file */
        int orientation;         /* EXIF orientation 1..8 (1 for PNG and JPEG without one) */
        int channels;            /* of the decoded rows: 1 (grey), 3 (RGB), 4 (RGBA) */
        int depth;               /* bits per decoded sample: 8 or 16 */
        bool interlaced;         /* PNG Adam7 */
};

/* Reads an image's header without decoding a pixel: the signature, the dimensions
 * (over RELIEF_MAX_PIXELS: -EFBIG), the sample format, the EXIF orientation. With
 * `verify` it also checks the whole structure: every PNG chunk within the data with
 * a correct CRC and an IEND, every JPEG segment within the data and an EOI after
 * the last scan; that costs one pass over the bytes (memchr and crc32 speed).
 * Returns >= 0 and *ret, or -EINVAL (-EFBIG) with err naming "inputs.image". */
int relief_image_probe(const void *data, size_t n, bool verify, struct relief_image_info *ret,
                       struct kiln_error *err);

/* A decoder that hands out an image's rows in file order. */
struct relief_rows;

/* Starts decoding an image that relief_image_probe accepted (`info` is its
 * answer). Rows have info->width pixels of info->channels samples of info->depth
 * bits (host order). Returns >= 0 and a decoder in *ret, -ENOMEM, or -EBADMSG. */
int relief_rows_open(const void *data, size_t n, const struct relief_image_info *info, struct relief_rows **ret);
/* The next row (valid until the next call). Returns >= 0, or -EBADMSG for corrupt
 * or truncated data (a JPEG's warnings count as errors), -ENOMEM. */
int relief_rows_next(struct relief_rows *d, const void **ret_row);
/* Frees the decoder. Accepts NULL. */
void relief_rows_free(struct relief_rows *d);

/* The two codecs behind relief_rows_* (decode_png.c, decode_jpeg.c), same contract. */
struct relief_png;
int relief_png_open(const void *data, size_t n, const struct relief_image_info *info, struct relief_png **ret);
int relief_png_next(struct relief_png *d, const void **ret_row);
void relief_png_free(struct relief_png *d);
struct relief_jpeg;
int relief_jpeg_open(const void *data, size_t n, const struct relief_image_info *info, struct relief_jpeg **ret);
int relief_jpeg_next(struct relief_jpeg *d, const void **ret_row);
void relief_jpeg_free(struct relief_jpeg *d);

/* ---- the heightfield (heightfield.c) ---- */

/* The sizes of one job's grid, from the image's header and the params. */
struct relief_dims {
        uint32_t src_w, src_h;   /* stored in the file */
        int orientation;         /* EXIF 1..8 */
        uint32_t ori_w, ori_h;   /* as displayed (orientation applied) */
        uint32_t res_w, res_h;   /* after the area-averaged shrink to max_side_px */
        uint32_t grid_w, grid_h; /* grid points: res_* with a side of 1 doubled to 2 */
        /* Between neighbouring grid points along a row (x) and a column (y): the
         * model is width_mm wide and width_mm * ori_h / ori_w deep (the image's
         * aspect ratio), its corners the corner pixels' points. */
        double pitch_x_mm, pitch_y_mm;
        double width_mm, depth_mm;
};

/* The dims of a job. Returns >= 0, or -EINVAL for unusable params. */
int relief_dims_get(const struct relief_image_info *info, const struct relief_params *p, struct relief_dims *ret);

/* The heightfield: grid_h rows of grid_w heights in mm (row 0 is the image's top). */
struct relief_grid {
        struct relief_dims dims;
        double *h;               /* malloc'd, grid_w * grid_h */
};

/* Decodes the image row by row and builds its heightfield (Rec. 709 luma of the
 * sRGB values, alpha over white, EXIF orientation, area-averaged shrink, invert).
 * Returns >= 0 and *ret (free ret->h), -ECANCELED, -ENOMEM, -EBADMSG. */
int relief_heightfield(const void *data, size_t n, const struct relief_image_info *info, const struct relief_params *p,
                       struct relief_grid *ret, struct kiln_exec *ex);

/* The share (0..1) of the grid's inner points that differ from the mean of their
 * two neighbours along the row or along the column by more than tol_mm: points
 * that a surface within tol_mm can pass through only near a vertex or an edge of
 * its triangulation (relief_simplify's up-front estimate). 0 for grids with a side
 * under 3 points. */
double relief_grid_rough(const struct relief_grid *g, double tol_mm);

/* ---- meshes (mesh.c) ---- */

/* A closed relief mesh: the top surface over grid points, a wall down to z = 0
 * under each edge of its boundary loop, and a base fanned from its centre over the
 * same boundary vertices. With `top`, `tris` and `ring` NULL it is the full grid
 * (every grid point a vertex, two triangles per cell, the whole border as ring). */
struct relief_mesh {
        const struct relief_grid *grid;
        uint32_t n_top;          /* top vertices */
        const uint32_t *top;     /* the grid index (i * grid_w + j) of each */
        uint64_t n_top_tris;
        const uint32_t *tris;    /* 3 top-vertex ids per top triangle, counter-clockwise from above */
        uint32_t n_ring;         /* boundary vertices, counter-clockwise from above */
        const uint32_t *ring;    /* top-vertex ids */
};

/* The full-grid mesh of `g` (nothing allocated). */
void relief_mesh_full(const struct relief_grid *g, struct relief_mesh *ret);
uint64_t relief_mesh_triangles(const struct relief_mesh *m);
uint64_t relief_mesh_vertices(const struct relief_mesh *m);
/* Bytes of the mesh written as `format` (enum relief_format). */
uint64_t relief_mesh_bytes(const struct relief_mesh *m, int format);

/* Writes the mesh as binary STL (mm) or GLB (metres, +y up) into out (exactly
 * relief_mesh_bytes). A full grid's top surface is written in bands of rows on one
 * thread per CPU (8 at most). Checks the stop flag every million triangles (every 64
 * rows of a full grid). Returns >= 0 or -ECANCELED. */
int relief_mesh_write(const struct relief_mesh *m, int format, uint8_t *out, struct kiln_exec *ex);

/* The GLB's JSON chunk for v vertices and t triangles whose positions (metres)
 * span [min, max]: the text, padded with spaces to a multiple of 4 bytes. Returns
 * its length written to out (at most RELIEF_GLB_JSON_MAX bytes), or -ENOSPC. */
#define RELIEF_GLB_JSON_MAX 1024
int relief_glb_json(uint64_t v, uint64_t t, const float min[3], const float max[3], char *out);

/* Writes the head of a GLB of nv vertices and nt triangles whose positions span
 * [min, max]: the file header, the JSON chunk and the binary chunk's header; the
 * positions (12 bytes each) and indices follow it. Returns its length (at most
 * 28 + RELIEF_GLB_JSON_MAX), or -ENOSPC. */
int relief_glb_head(uint64_t nv, uint64_t nt, const float min[3], const float max[3], uint8_t *out);

/* The volume (mm^3) enclosed by the mesh in `data` (a binary STL in mm, or a GLB
 * as relief_mesh_write makes it), summed over its triangles as written: exact for
 * the file up to double rounding. The sum is taken in 64 fixed chunks of triangles
 * (on threads of their own for big files), so it is the same bits however many
 * threads there are and whichever backend wrote the file. Returns >= 0 and *ret, or -EINVAL for bytes that
 * are not such a file. */
int relief_mesh_volume(const uint8_t *data, size_t n, int format, double *ret);

/* ---- simplification (simplify.c) ---- */

/* The top surface of `g` simplified by greedy insertion (Garland and Heckbert's
 * Delaunay height-field approximation): starting from the four corners, the grid
 * point farthest from the surface is inserted until none is more than tol_mm
 * away. The boundary is approximated the same way, so the walls built on it match.
 * Fills *ret (its arrays malloc'd: relief_mesh_release). The full grid (within
 * every tolerance, and what a simplified surface of over half the points would
 * cost more triangles than) is returned instead when the grid is too rough to
 * simplify (relief_grid_rough at or above RELIEF_ROUGH_FULL, decided before any
 * insertion) or when the insertion reaches half the grid points; so the result
 * never has more triangles than the full grid. Returns >= 0, -ECANCELED or
 * -ENOMEM. */
#define RELIEF_ROUGH_FULL 0.65
int relief_simplify(const struct relief_grid *g, double tol_mm, struct relief_mesh *ret, struct kiln_exec *ex);
/* Frees the arrays of a mesh made by relief_simplify. Accepts a full-grid mesh. */
void relief_mesh_release(struct relief_mesh *m);

/* ---- the kind (kind.c, cpu.c) ---- */

extern const struct kiln_kind kiln_kind_image_relief;

/* Adds the part `mesh` (the mesh written as p->format) and the values triangles,
 * vertices, volume_mm3, width_mm, depth_mm to `ret`. Returns >= 0, -ECANCELED,
 * -ENOMEM. */
int relief_result_add(const struct relief_mesh *m, const struct relief_params *p, struct kiln_result *ret,
                      struct kiln_exec *ex);
/* Adds the values of a mesh file already in `part` (its volume summed from its
 * bytes). Shared by the CPU and CUDA paths. Returns >= 0, -ENOMEM, -EINVAL. */
int relief_result_values(struct kiln_result *ret, const struct kiln_part *part, int format, uint64_t triangles,
                         uint64_t vertices, const struct relief_dims *d);

/* The CPU implementation (kiln_kind.run_cpu). */
int relief_run_cpu(struct kiln_task *t);
