/* kilnctl's helpers that need no server: job parameters from KEY=VALUE words,
 * NumPy .npy files, and tokens-file entries. */
#pragma once

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

/* Writes one part as a NumPy .npy file (format 1.0) at `path`, via a temporary
 * file renamed into place. `dtype` is a KLNB dtype ("f32", "u8", "u32", "bytes");
 * `data` is written as it is (little-endian already). Returns >= 0 or -errno
 * (-EINVAL for an unknown dtype or ndim outside 1..4). */
int ctl_npy_write(const char *path, const char *dtype, int ndim, const uint64_t *shape, const void *data,
                  size_t len);

/* Creates directory `path` and its missing parents (mode 0755). Returns >= 0 or -errno. */
int ctl_mkdir_p(const char *path);

/* True when `s` is 1..63 characters of [A-Za-z0-9_.-] (token names and tenants). */
int ctl_valid_name(const char *s);

/* `token new`: makes a random token (32 bytes from getrandom, 64 hex digits),
 * appends `NAME TENANT ROLE SHA256HEX` to `tokens_file` (created with mode 0600)
 * and writes the token to *ret_token (at least 65 bytes). Returns >= 0; -EINVAL for
 * an invalid name, tenant or role; -EEXIST when the file already names NAME;
 * another -errno for I/O failures. */
int ctl_token_new(const char *name, const char *tenant, const char *role, const char *tokens_file,
                  char *ret_token);
