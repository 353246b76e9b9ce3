/* kilnctl's helpers that need no server: job parameters from KEY=VALUE words,
 * NumPy .npy files, tokens-file entries, ids files, the KLNB frames of an upload,
 * and result parts received into files. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Builds a submit's "params" object from `n` words KEY=VALUE. Known parameters of
 * `kind` (its schema, gpu/kinds) get their schema's JSON type: numbers, integers,
 * booleans (true/false/yes/no/on/off/1/0), strings, string sets as comma-separated
 * lists ("maps=kappa,psi"); dotted keys address nested objects
 * ("source.x_arcsec=0.5"). A value that does not convert (e.g. "mass=heavy") is
 * sent as a string so the server, the authority, names the field in its error.
 * Unknown keys and kinds get the value as JSON when it parses as JSON, else as a
 * string. Returns >= 0 and a new object in *ret, or -EINVAL (a word without '=' or
 * with an empty key segment) / -ENOMEM with a sentence in err. */
int ctl_params_from_words(const char *kind, char *const *words, int n, json_t **ret, char *err, size_t err_size);

#define CTL_NPY_HEADER_MAX 256

/* Writes the header of a NumPy .npy file (format 1.0) for an array of KLNB dtype
 * `dtype` ("f32", "u8", "u32", "bytes") and `shape`, whose little-endian bytes
 * follow it as they are. Returns the header's length (a multiple of 64), or -EINVAL
 * for an unknown dtype or ndim outside 1..4. */
int ctl_npy_header(const char *dtype, int ndim, const uint64_t *shape, char hdr[CTL_NPY_HEADER_MAX]);

/* Writes all `len` bytes to fd, retrying short writes and EINTR. Returns >= 0 or -errno. */
int ctl_write_all(int fd, const void *buf, size_t len);

/* Creates directory `path` and its missing parents (mode 0755). Returns >= 0 or -errno. */
int ctl_mkdir_p(const char *path);
/* 0 when `dir` is a folder kilnctl may write in, or one ctl_mkdir_p could make
 * (its nearest existing parent is a folder it may write in); else an errno.
 * Nothing is made. */
int ctl_out_dir_usable(const char *dir);

/* True when `s` is 1..63 characters of [A-Za-z0-9_.-] (token names and tenants). */
int ctl_valid_name(const char *s);

/* `token new`, in three steps, so that a token is added only once it has been shown
 * and only to a file kilnd would take:
 * ctl_tokens_check: reads `tokens_file` as kilnd does (tokens.h; a missing one is
 *   empty): 0, or a -errno with the reason in `why` (-EEXIST: it names NAME already);
 * ctl_token_make: a random token (32 bytes from getrandom, 64 hex digits) into
 *   ret_token (at least 65 bytes);
 * ctl_token_add: appends `NAME TENANT ROLE SHA256HEX` of `token` (a new file is
 *   made 0640, group kiln), fsynced. Returns >= 0; -EINVAL for an invalid name,
 *   tenant or role; -EEXIST when the file names NAME; another -errno for I/O. */
int ctl_tokens_check(const char *tokens_file, const char *name, char *why, size_t size);
int ctl_token_make(char *ret_token);
int ctl_token_add(const char *name, const char *tenant, const char *role, const char *tokens_file,
                  const char *token);

/* ---- result parts received into files (part_file.c) ---- */

/* One result part written to a file while its KLNB frame arrives, so that a part
 * of gigabytes costs no more memory than a part of bytes and the file is written
 * while the rest is still on the wire. A mesh (dtype bytes, part "mesh") becomes
 * DIR/mesh.stl or DIR/mesh.glb, any other part DIR/NAME.npy. Until
 * ctl_part_file_commit the file has no name where the filesystem allows (nothing
 * is left behind, whatever stops kilnctl), else a hidden one, DIR/.NAME.ext.XXXXXX.
 * A finished part keeps its file open until it is committed or freed. */
struct ctl_part_file;

/* Starts receiving one frame into directory `dir` (created with its parents when
 * the header is in; NULL: the frame is checked and dropped). Returns >= 0 or -ENOMEM. */
int ctl_part_file_new(const char *dir, struct ctl_part_file **ret);

/* Takes the frame's next `len` bytes. A frame the server got wrong or a file that
 * cannot be written is not an error here: the rest of the frame is read and
 * dropped, and ctl_part_file_finish reports it. */
void ctl_part_file_feed(struct ctl_part_file *p, const uint8_t *buf, size_t len);

/* The frame has ended (calling it again returns the same). Returns >= 0, or -EPROTO (a bad frame: too short, a bad
 * header, a payload other than its header's size, a part in pieces) or -errno (the
 * file) with a sentence in ctl_part_file_error. */
int ctl_part_file_finish(struct ctl_part_file *p);

/* The part's name once its header is in, else NULL. */
const char *ctl_part_file_name(const struct ctl_part_file *p);

/* Finishes the frame and moves its file into place, over an earlier file of that
 * name; *ret_path is where (borrowed; NULL when the frame was dropped). Returns >= 0,
 * or ctl_part_file_finish's error or -errno with a sentence in ctl_part_file_error. */
int ctl_part_file_commit(struct ctl_part_file *p, const char **ret_path);

/* Why the last call failed; "" when nothing did. */
const char *ctl_part_file_error(const struct ctl_part_file *p);

/* Discards the file unless committed, and frees. Accepts NULL. */
void ctl_part_file_free(struct ctl_part_file *p);

/* ---- stored objects (SPEC §2.4): local inputs and upload frames ---- */

#define CTL_NPY_MAX_DIMS 8
#define CTL_ID_MAX 256u        /* bytes of one vector id */

/* Reads exactly len bytes at offset off of fd. Returns >= 0, -ENODATA when the
 * file ends first, or another -errno. */
int ctl_pread_all(int fd, void *buf, size_t len, uint64_t off);

/* The header of a NumPy .npy file. */
struct ctl_npy {
        char descr[16];        /* "<f4", ...; "structured" for a record dtype */
        bool fortran_order;
        int ndim;
        uint64_t shape[CTL_NPY_MAX_DIMS];
        uint64_t data_offset;  /* where the array's bytes start */
        uint64_t file_size;
};

/* Reads the header of the .npy file open at fd (format 1.0, 2.0 or 3.0). Returns
 * >= 0; -EINVAL for a file that is not .npy or whose header this reader does not
 * take (more than CTL_NPY_MAX_DIMS dimensions, keys other than descr,
 * fortran_order and shape); -ENOMEM; or another -errno for I/O errors. */
int ctl_npy_read_header(int fd, struct ctl_npy *ret);

/* Opens `path` as the vectors of `vec put`: a C-order little-endian float32 .npy
 * array of shape [n][dim] with n, dim >= 1 and exactly n*dim*4 bytes of data.
 * Returns >= 0 with the open descriptor in *ret_fd (caller closes) and the header
 * in *ret, or -EINVAL / -errno with a sentence naming the file in err. */
int ctl_npy_open_f32_matrix(const char *path, int *ret_fd, struct ctl_npy *ret, char *err, size_t err_size);

/* Reads the rows of `kilnctl submit --rows FILE` (risk.score): a .npy file of
 * float32 [n][f] (as ctl_npy_open_f32_matrix takes), or a .csv file of n lines of f
 * numbers (an optional header line of names first; an empty field, nan, NA or null is a
 * missing value, NaN). Returns >= 0 with *ret_rows (malloc'd, row-major, caller
 * frees), *ret_n and *ret_cols, or -EINVAL / -errno with a sentence naming the file
 * (and line and column) in err. */
int ctl_rows_read(const char *path, float **ret_rows, uint64_t *ret_n, uint64_t *ret_cols, char *err,
                  size_t err_size);

/* Checks one vector id: 1..CTL_ID_MAX bytes of UTF-8 without NUL. Returns >= 0,
 * or -EINVAL with why ("is empty", ...) written. */
int ctl_id_check(const char *s, size_t len, char *why, size_t why_size);

/* Reads an ids file: one id per line ("\n" or "\r\n"), each checked with
 * ctl_id_check; blank lines only at the end. Returns >= 0 and a new JSON array of
 * strings in *ret, or -EINVAL (a bad line, or no ids) / -errno with a sentence
 * naming the file and line in err. */
int ctl_ids_read(const char *path, json_t **ret, char *err, size_t err_size);

/* Builds the prefix of one KLNB frame that carries (a piece of) part `part`:
 * "KLNB" | u32 LE header length | {"ref":ref,"part":..,"dtype":..,"shape":[..]}
 * with "offset" added when offset >= 0 (the part then spans several frames; shape
 * and dtype describe the whole part). The payload follows the prefix. Returns >= 0
 * and a new buffer (*ret_buf, caller frees) of *ret_len bytes; -EINVAL for an
 * unknown dtype or ndim outside 1..4; -ENOMEM. */
int ctl_frame_prefix(long long ref, const char *part, const char *dtype, int ndim, const uint64_t *shape,
                     int64_t offset, uint8_t **ret_buf, size_t *ret_len);

/* Plans the frames of a part of `total` bytes so that every frame (prefix and
 * payload) is at most max_message bytes and carries at most `cap` payload bytes.
 * *ret_multi is false when one frame without "offset" carries it all
 * (*ret_chunk = total); else every frame carries *ret_chunk bytes (the last one
 * the rest), a multiple of the dtype's size, at offsets 0, chunk, 2*chunk, ...
 * Returns >= 0, -EMSGSIZE when max_message leaves no room for one element,
 * -EINVAL or -ENOMEM as ctl_frame_prefix. */
int ctl_frame_plan(long long ref, const char *part, const char *dtype, int ndim, const uint64_t *shape,
                   uint64_t total, size_t max_message, size_t cap, size_t *ret_chunk, bool *ret_multi);
