/* Token authentication against hashed tokens. */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libwebsockets.h>
#include <openssl/sha.h>

#include "daemon.h"
#include "log.h"

void auth_anonymous(struct auth_identity *ret)
{
        memset(ret, 0, sizeof(*ret));
        snprintf(ret->name, sizeof(ret->name), "anonymous");
        snprintf(ret->tenant, sizeof(ret->tenant), "default");
        ret->role = AUTH_ROLE_ADMIN;
}

int auth_check(struct kilnd *d, const char *token, struct auth_identity *ret)
{
        unsigned char h[SHA256_DIGEST_LENGTH];

        if (!token || !d->tokens)
                return -EACCES;
        SHA256((const unsigned char *)token, strlen(token), h);
        const struct auth_identity *who = auth_tokens_match(d->tokens, h);
        if (!who)
                return -EACCES;
        *ret = *who;
        memcpy(ret->token_hash, h, sizeof(ret->token_hash));
        return 0;
}

void auth_note_refused(const char *via, struct lws *wsi)
{
        static struct log_every every;
        char peer[64] = "?";
        uint64_t refused;

        if (!log_every_due(&every, 10000, &refused))
                return;
        if (wsi)
                lws_get_peer_simple(wsi, peer, sizeof(peer));
        log_notice("%llu sign-in%s refused for a missing or unknown token since the last such line; the last over %s "
                   "from %s",
                   (unsigned long long)refused, refused == 1 ? "" : "s", via, peer);
}

int auth_recheck(const struct kilnd *d, struct auth_identity *who)
{
        static const unsigned char none[sizeof(who->token_hash)];

        if (!d->tokens || !memcmp(who->token_hash, none, sizeof(none)))
                return -EACCES;
        const struct auth_identity *now = auth_tokens_match(d->tokens, who->token_hash);
        if (!now || strcmp(now->tenant, who->tenant))
                return -EACCES;
        snprintf(who->name, sizeof(who->name), "%s", now->name);
        who->role = now->role;
        return 0;
}
