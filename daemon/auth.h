/* Who a connection is: tokens, tenants and roles (SPEC §2.1, §4 [auth]).
 *
 * The tokens file holds lines `NAME TENANT ROLE SHA256-OF-TOKEN` (hex); only hashes
 * are kept, and they are compared in constant time. */
#pragma once

#include <stddef.h>

struct kilnd;

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
/* auth_tokens_load's failure r (line: its `line`) as "PATH:LINE: reason", or
 * "PATH: reason" when no line is at fault; with `key` (the setting that names the
 * file) after the place: "PATH:LINE: KEY: reason". Returns buf. */
const char *auth_tokens_error(const char *path, const char *key, int r, unsigned line, char *buf, size_t size);
void auth_tokens_free(struct auth_tokens *t);
size_t auth_tokens_count(const struct auth_tokens *t);

/* The identity of every connection when auth.required is false. */
void auth_anonymous(struct auth_identity *ret);
/* Checks a token against the daemon's current token set. Returns >= 0 and the
 * identity, or -EACCES. */
int auth_check(struct kilnd *d, const char *token, struct auth_identity *ret);
const char *auth_role_name(enum auth_role r);
/* Logs that a sign-in was refused for a missing or unknown token (`via`: "WebSocket"
 * or "HTTP"; `wsi`: its connection, for the peer's address): one notice at most
 * every 10 s, counting the refusals since the last. Loop thread. */
struct lws;
void auth_note_refused(const char *via, struct lws *wsi);
/* After the token set was replaced (SIGHUP): whether the token `who` signed in
 * with is still in it, for the same tenant. Returns >= 0 with who's name and role
 * brought up to date, or -EACCES (revoked, given to another tenant, or none). */
int auth_recheck(const struct kilnd *d, struct auth_identity *who);
