/* SHA-256 through OpenSSL's EVP interface with the algorithm fetched once. Passing
 * EVP_sha256() makes OpenSSL 3 look the algorithm up in its provider tables on every
 * call (an "implicit fetch"), which cost as much as hashing a small job's params. */
#include "digest.h"

#include <stdatomic.h>
#include <string.h>

#include <openssl/evp.h>

static _Atomic(EVP_MD *) sha256;

/* The fetched algorithm, fetched now if no call has yet (again after a failure). */
static EVP_MD *sha256_md(void)
{
        EVP_MD *md = atomic_load(&sha256), *none = NULL;

        if (md)
                return md;
        md = EVP_MD_fetch(NULL, "SHA256", NULL);
        if (md && !atomic_compare_exchange_strong(&sha256, &none, md)) {
                EVP_MD_free(md); /* another thread fetched it first */
                md = none;
        }
        return md;
}

bool digest_sha256(const struct digest_piece *pieces, size_t n, uint8_t ret[32])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_MD *alg = sha256_md();
        EVP_MD_CTX *c = alg ? EVP_MD_CTX_new() : NULL;
        bool ok = c && EVP_DigestInit_ex(c, alg, NULL);

        for (size_t i = 0; ok && i < n; i++)
                ok = EVP_DigestUpdate(c, pieces[i].p, pieces[i].n);
        ok = ok && EVP_DigestFinal_ex(c, md, &len) && len == 32;
        EVP_MD_CTX_free(c);
        if (ok)
                memcpy(ret, md, 32);
        else
                memset(ret, 0, 32);
        return ok;
}
