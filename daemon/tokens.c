/* The tokens file (tokens.h). */
#include "tokens.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "config.h"

struct token {
        struct auth_identity who;
        unsigned char hash[SHA256_DIGEST_LENGTH];
};

struct auth_tokens {
        struct token *v;
        size_t n;
};

static const char *const role_names[] = { "read", "submit", "writer", "admin" };

const char *auth_role_name(enum auth_role r)
{
        return r <= AUTH_ROLE_ADMIN ? role_names[r] : "read";
}

static int parse_hex(const char *s, unsigned char *out, size_t n)
{
        if (strlen(s) != 2 * n)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                unsigned v;
                if (!isxdigit((unsigned char)s[2 * i]) || !isxdigit((unsigned char)s[2 * i + 1]) ||
                    sscanf(s + 2 * i, "%2x", &v) != 1)
                        return -EINVAL;
                out[i] = (unsigned char)v;
        }
        return 0;
}

int auth_tokens_load(const char *path, struct auth_tokens **ret, unsigned *line)
{
        return auth_tokens_read(path, -1, ret, line);
}

int auth_tokens_read(const char *path, long also_owner, struct auth_tokens **ret, unsigned *line)
{
        struct auth_tokens *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        FILE *f;
        int r = kiln_config_open_file(path, &f); /* a regular file, a FIFO never waited on */

        *line = 0;
        if (r < 0) {
                if (r != -ENOENT) {
                        free(t);
                        return r;
                }
                *ret = t;
                return 0;
        }
        /* Whoever may write the file may add an admin token: only root and the user
         * kilnd runs as may (sshd's StrictModes). */
        struct stat st;
        if (fstat(fileno(f), &st) < 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) ||
            (st.st_uid != 0 && st.st_uid != geteuid() && (also_owner < 0 || st.st_uid != (uid_t)also_owner))) {
                fclose(f);
                free(t);
                return -EPERM;
        }
        char buf[1024];
        unsigned no = 0;
        while (fgets(buf, sizeof(buf), f)) {
                no++;
                char name[64], tenant[64], role[16], hex[80], extra[2];
                char *p = buf;
                while (isspace((unsigned char)*p))
                        p++;
                if (!*p || *p == '#')
                        continue;
                int n = sscanf(p, "%63s %63s %15s %79s %1s", name, tenant, role, hex, extra);
                struct token tok = { 0 };
                int ri = -1;
                for (int i = 0; i <= AUTH_ROLE_ADMIN; i++)
                        if (!strcmp(role, role_names[i]))
                                ri = i;
                if (n != 4 || ri < 0 || parse_hex(hex, tok.hash, sizeof(tok.hash)) < 0) {
                        r = -EINVAL;
                        *line = no;
                        break;
                }
                /* A name identifies its token in the log and in limits.rate_per_s (one
                 * bucket per name): two tokens may not share one. */
                for (size_t i = 0; i < t->n; i++)
                        if (!strcmp(t->v[i].who.name, name))
                                r = -EEXIST;
                /* One token, one identity: signing in and a reload's recheck of the
                 * open sessions must find the same line. */
                for (size_t i = 0; r >= 0 && i < t->n; i++)
                        if (!memcmp(t->v[i].hash, tok.hash, sizeof(tok.hash)))
                                r = -ENOTUNIQ;
                if (r < 0) {
                        *line = no;
                        break;
                }
                snprintf(tok.who.name, sizeof(tok.who.name), "%s", name);
                snprintf(tok.who.tenant, sizeof(tok.who.tenant), "%s", tenant);
                tok.who.role = (enum auth_role)ri;
                struct token *v = realloc(t->v, (t->n + 1) * sizeof(*v));
                if (!v) {
                        r = -ENOMEM;
                        break;
                }
                t->v = v;
                t->v[t->n++] = tok;
        }
        if (r >= 0 && ferror(f))
                r = -EIO;
        fclose(f);
        if (r < 0) {
                auth_tokens_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

const char *auth_tokens_error(const char *path, const char *key, int r, unsigned line, char *buf, size_t size)
{
        char at[24] = "";
        const char *why = r == -EINVAL                   ? "malformed token line (NAME TENANT ROLE SHA256)"
                          : r == -EEXIST ? "a token name given twice (names identify tokens in the log and in "
                                           "limits.rate_per_s)"
                          : r == -ENOTUNIQ ? "a token (its SHA-256) given twice: it would sign in as either line's "
                                             "tenant and role"
                          : r == -ENODEV || r == -EISDIR ? "not a regular file"
                          : r == -EPERM ? "writable by its group or by others, or owned by a user other than root "
                                          "or kilnd's: whoever may write it may add an admin token (the package "
                                          "makes it 0640 root:kiln)"
                                        : NULL;

        if (line)
                snprintf(at, sizeof(at), ":%u", line);
        snprintf(buf, size, "%.700s%s: %s%s%s%s", path, at, key ? key : "", key ? ": " : "",
                 why ? why : "cannot read the tokens file: ", why ? "" : strerror(-r));
        return buf;
}

void auth_tokens_free(struct auth_tokens *t)
{
        if (!t)
                return;
        free(t->v);
        free(t);
}

size_t auth_tokens_count(const struct auth_tokens *t)
{
        return t ? t->n : 0;
}

const struct auth_identity *auth_tokens_match(const struct auth_tokens *t, const unsigned char hash[32])
{
        const struct auth_identity *found = NULL;

        /* Every entry is looked at, so the time taken does not depend on which one
         * matches; no two have one hash (auth_tokens_load). */
        for (size_t i = 0; t && i < t->n; i++)
                if (CRYPTO_memcmp(hash, t->v[i].hash, SHA256_DIGEST_LENGTH) == 0)
                        found = &t->v[i].who;
        return found;
}

bool auth_tokens_has_name(const struct auth_tokens *t, const char *name)
{
        for (size_t i = 0; t && i < t->n; i++)
                if (!strcmp(t->v[i].who.name, name))
                        return true;
        return false;
}
