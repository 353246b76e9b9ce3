/* The tokens file (SPEC §4 [auth]): lines `NAME TENANT ROLE SHA256-OF-TOKEN` (hex),
 * each name and each token on one line only. Only hashes are kept, and they are
 * compared in constant time. Read by kilnd (auth.c) and checked by `kilnctl token
 * new` before it adds a line, by the same rules. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

enum auth_role { AUTH_ROLE_READ, AUTH_ROLE_SUBMIT, AUTH_ROLE_WRITER, AUTH_ROLE_ADMIN };

struct auth_identity {
        char name[64];
        char tenant[64];
        enum auth_role role;
        unsigned char token_hash[32]; /* SHA-256 of the token it signed in with; zero: none */
};

struct auth_tokens;

/* Parses a tokens file. A missing file gives an empty set (every hello is then
 * refused). Returns >= 0, -EINVAL with `line` set to the first bad line, -EEXIST
 * with `line` set to a line naming a token a line above named already, -ENOTUNIQ
 * with `line` set to a line whose hash a line above has already, -EISDIR
 * (or -ENODEV) for a path that is not a regular file, -EPERM for one that its group
 * or others may write or that neither root nor this process's user owns, or the
 * -errno of opening or reading it. */
int auth_tokens_load(const char *path, struct auth_tokens **ret, unsigned *line);
/* The same, with also_owner (>= 0): a user besides root and this process's who may
 * own the file (kilnctl, run by root, checks for kilnd's user, kiln). */
int auth_tokens_read(const char *path, long also_owner, struct auth_tokens **ret, unsigned *line);
/* auth_tokens_load's failure r (line: its `line`) as "PATH:LINE: reason", or
 * "PATH: reason" when no line is at fault; with `key` (the setting that names the
 * file) after the place: "PATH:LINE: KEY: reason". Returns buf. */
const char *auth_tokens_error(const char *path, const char *key, int r, unsigned line, char *buf, size_t size);
void auth_tokens_free(struct auth_tokens *t);
size_t auth_tokens_count(const struct auth_tokens *t);
/* The identity of the token whose SHA-256 is `hash`, or NULL; the time taken does
 * not depend on which entry matches. */
const struct auth_identity *auth_tokens_match(const struct auth_tokens *t, const unsigned char hash[32]);
bool auth_tokens_has_name(const struct auth_tokens *t, const char *name);
const char *auth_role_name(enum auth_role r);
