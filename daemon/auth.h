/* Who a connection is: tokens, tenants and roles (SPEC §2.1, §4 [auth]), against
 * the daemon's token set (tokens.h). */
#pragma once

#include "tokens.h"

struct kilnd;

/* The identity of every connection when auth.required is false. */
void auth_anonymous(struct auth_identity *ret);
/* Checks a token against the daemon's current token set. Returns >= 0 and the
 * identity, or -EACCES. */
int auth_check(struct kilnd *d, const char *token, struct auth_identity *ret);
/* Logs that a sign-in was refused for a missing or unknown token (`via`: "WebSocket"
 * or "HTTP"; `wsi`: its connection, for the peer's address): one notice at most
 * every 10 s, counting the refusals since the last. Loop thread. */
struct lws;
void auth_note_refused(const char *via, struct lws *wsi);
/* After the token set was replaced (SIGHUP): whether the token `who` signed in
 * with is still in it, for the same tenant. Returns >= 0 with who's name and role
 * brought up to date, or -EACCES (revoked, given to another tenant, or none). */
int auth_recheck(const struct kilnd *d, struct auth_identity *who);
