/* Values in pieces (results, inputs, object blobs), jobs' results, and result blobs
 * shared between jobs and cache entries ("alias", "refs"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

static size_t piece_override; /* 0: the store's own piece size */

void store_set_result_chunk(size_t bytes)
{
        piece_override = bytes;
}

/* ---- pieces ---- */

struct piece_key {
        uint8_t b[STORE_MAX_KEY];
        size_t plen;
};

static MDB_val piece_key(struct piece_key *k, uint32_t n)
{
        k->b[k->plen] = (uint8_t)(n >> 24);
        k->b[k->plen + 1] = (uint8_t)(n >> 16);
        k->b[k->plen + 2] = (uint8_t)(n >> 8);
        k->b[k->plen + 3] = (uint8_t)n;
        return (MDB_val){ .mv_size = k->plen + 4, .mv_data = k->b };
}

static int piece_key_init(struct piece_key *k, const uint8_t *prefix, size_t plen)
{
        if (plen > STORE_PIECE_PREFIX_MAX)
                return -EINVAL;
        memcpy(k->b, prefix, plen);
        k->plen = plen;
        return 0;
}

static bool piece_of(const MDB_val *key, const struct piece_key *k)
{
        return key->mv_size == k->plen + 4 && !memcmp(key->mv_data, k->b, k->plen);
}

static uint32_t piece_number(const MDB_val *key)
{
        const uint8_t *p = (const uint8_t *)key->mv_data + key->mv_size - 4;

        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Deletes every piece under `prefix`; see store_impl.h. */
int store_pieces_delete(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen)
{
        struct piece_key k;
        MDB_val key, val;
        MDB_cursor *c;
        int rc, n = 0;

        rc = piece_key_init(&k, prefix, plen);
        if (rc < 0)
                return rc;
        rc = mdb_cursor_open(t->txn, dbi, &c);
        if (rc)
                return store_txn_result(t, rc);
        for (;;) {
                key = piece_key(&k, 0);
                rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
                if (rc || !piece_of(&key, &k))
                        break;
                rc = mdb_cursor_del(c, 0);
                if (rc)
                        break;
                n++;
        }
        mdb_cursor_close(c);
        if (rc && rc != MDB_NOTFOUND)
                return store_txn_result(t, rc);
        return n;
}

/* The size of the pieces values are written in now. */
size_t store_piece_size(const struct store *s)
{
        return piece_override ? piece_override : s->piece;
}

/* Writes bytes [from, to) of a value in pieces; `fresh`: nothing was ever stored
 * under the prefix. See store_impl.h. A value of 0 bytes is one empty piece, so
 * that it exists. */
static int pieces_put(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen, size_t size,
                      size_t from, size_t to, store_result_writer write, void *opaque, bool fresh)
{
        size_t chunk = store_piece_size(t->s), off = from;
        struct piece_key k;
        uint32_t n;
        int r;

        if (t->err < 0)
                return t->err;
        if (size > 0 && !write)
                return -EINVAL;
        if (from % chunk || from > to || to > size || (to < size && to % chunk) || size / chunk >= UINT32_MAX)
                return -EINVAL;
        r = piece_key_init(&k, prefix, plen);
        if (r < 0)
                return r;
        if (from == 0 && !fresh) {
                /* Also what an earlier, longer value or a partly written attempt left. */
                r = store_pieces_delete(t, dbi, prefix, plen);
                if (r < 0)
                        return r;
        } else if (from == to && from > 0) {
                return 0;
        }
        n = (uint32_t)(from / chunk);
        do {
                size_t len = to - off < chunk ? to - off : chunk;
                MDB_val key = piece_key(&k, n), val = { .mv_size = len, .mv_data = NULL };
                r = store_put_in_order(t, dbi, &key, &val, MDB_RESERVE);
                if (r < 0)
                        return r;
                if (len)
                        write(opaque, val.mv_data, off, len);
                off += len;
                n++;
        } while (off < to);
        return 0;
}

int store_pieces_put_range(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen, size_t size,
                           size_t from, size_t to, store_result_writer write, void *opaque)
{
        return pieces_put(t, dbi, prefix, plen, size, from, to, write, opaque, false);
}

int store_pieces_put_new(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen, size_t size,
                         store_result_writer write, void *opaque)
{
        return pieces_put(t, dbi, prefix, plen, size, 0, size, write, opaque, true);
}

/* Stores a value in pieces, replacing any previous one; see store_impl.h. */
int store_pieces_put(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen, size_t size,
                     store_result_writer write, void *opaque)
{
        return store_pieces_put_range(t, dbi, prefix, plen, size, 0, size, write, opaque);
}

/* Copies a value in pieces out; see store_impl.h. */
int store_pieces_get(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen, uint8_t **ret_data,
                     size_t *ret_size)
{
        struct piece_key k;
        MDB_val key, val;
        MDB_cursor *c;
        size_t total = 0, off = 0;
        uint8_t *copy = NULL;
        int rc, r;

        r = piece_key_init(&k, prefix, plen);
        if (r < 0)
                return r;
        rc = mdb_cursor_open(t->txn, dbi, &c);
        if (rc)
                return store_mdb_errno(rc);
        /* Two passes: sizes first (no data is touched), then one copy. */
        for (int pass = 0; pass < 2 && r == 0; pass++) {
                uint32_t expect = 0;
                key = piece_key(&k, 0);
                for (rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE); !rc && piece_of(&key, &k);
                     rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                        if (piece_number(&key) != expect++) {
                                r = -EIO; /* a missing piece */
                                break;
                        }
                        if (pass == 0) {
                                total += val.mv_size;
                        } else {
                                if (off + val.mv_size > total) {
                                        r = -EIO;
                                        break;
                                }
                                memcpy(copy + off, val.mv_data, val.mv_size);
                                off += val.mv_size;
                        }
                }
                if (r == 0 && rc && rc != MDB_NOTFOUND)
                        r = store_mdb_errno(rc);
                if (r == 0 && pass == 0) {
                        if (expect == 0)
                                r = -ENOENT;
                        else if (!(copy = malloc(total ? total : 1)))
                                r = -ENOMEM;
                }
        }
        mdb_cursor_close(c);
        if (r < 0) {
                free(copy);
                return r;
        }
        *ret_data = copy;
        *ret_size = total;
        return 0;
}

/* Whether a value's first piece is there. */
bool store_pieces_exist(struct store_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen)
{
        struct piece_key k;
        MDB_val key, val;

        if (piece_key_init(&k, prefix, plen) < 0)
                return false;
        key = piece_key(&k, 0);
        return mdb_get(t->txn, dbi, &key, &val) == 0;
}

/* ---- results ---- */

/* Stores the result of `id` in pieces; see store.h. */
int store_result_put(struct store_txn *t, const uint8_t id[16], size_t size, store_result_writer write,
                     void *opaque)
{
        return store_pieces_put(t, t->s->results, id, 16, size, write, opaque);
}

/* Sets *ret to the blob holding the result of `id` (itself unless it has an alias);
 * the pointer lives until the next write. */
static int alias_resolve(struct store_txn *t, const uint8_t id[16], const uint8_t **ret)
{
        MDB_val key = store_key16(id), val;
        int r = store_mdb_errno(mdb_get(t->txn, t->s->alias, &key, &val));

        if (r == -ENOENT) {
                *ret = id;
                return 0;
        }
        if (r < 0)
                return r;
        if (val.mv_size != 16)
                return -EIO;
        *ret = val.mv_data;
        return 0;
}

/* Copies the result of `id` out (malloc'd, caller frees; an empty result gives a
 * non-NULL pointer and size 0). Returns >= 0, -ENOENT when absent, or -errno. */
int store_result_get(struct store_txn *t, const uint8_t id[16], uint8_t **ret_data, size_t *ret_size)
{
        int r;

        if (t->err < 0)
                return t->err;
        r = alias_resolve(t, id, &id);
        if (r < 0)
                return r;
        return store_pieces_get(t, t->s->results, id, 16, ret_data, ret_size);
}

/* Reads piece n of the value under k: -ENOENT when it is not there. The bytes live
 * until the transaction ends (or its next write). */
static int piece_get(struct store_txn *t, MDB_dbi dbi, struct piece_key *k, uint32_t n, MDB_val *ret)
{
        MDB_val key = piece_key(k, n);

        return store_mdb_errno(mdb_get(t->txn, dbi, &key, ret));
}

/* The last piece of the value under k: its number and size. -ENOENT when the value
 * has no piece. */
static int piece_last(struct store_txn *t, MDB_dbi dbi, struct piece_key *k, uint32_t *ret_n, size_t *ret_size)
{
        MDB_val key = piece_key(k, UINT32_MAX), val;
        MDB_cursor *c;
        int rc;

        rc = mdb_cursor_open(t->txn, dbi, &c);
        if (rc)
                return store_mdb_errno(rc);
        rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND)
                rc = mdb_cursor_get(c, &key, &val, MDB_LAST);
        else if (rc == 0 && !piece_of(&key, k))
                rc = mdb_cursor_get(c, &key, &val, MDB_PREV);
        if (rc == 0 && !piece_of(&key, k))
                rc = MDB_NOTFOUND;
        if (rc == 0) {
                *ret_n = piece_number(&key);
                *ret_size = val.mv_size;
        }
        mdb_cursor_close(c);
        return store_mdb_errno(rc);
}

/* The size of the value under k, from its first and last pieces: every piece but the
 * last is as long as the first (store_pieces_put), whatever piece size was in force
 * when it was written. -ENOENT when absent. */
static int pieces_size(struct store_txn *t, MDB_dbi dbi, struct piece_key *k, uint64_t *ret)
{
        MDB_val first;
        uint32_t last;
        size_t last_size;
        int r;

        r = piece_last(t, dbi, k, &last, &last_size);
        if (r < 0)
                return r;
        if (last == 0) {
                *ret = last_size;
                return 0;
        }
        r = piece_get(t, dbi, k, 0, &first);
        if (r < 0)
                return r; /* the first piece is missing */
        if (last_size > first.mv_size)
                return -EIO;
        *ret = (uint64_t)last * first.mv_size + last_size;
        return 0;
}

/* Which blob answers for job `id`, and its size; see store.h. */
int store_result_locate(struct store_txn *t, const uint8_t id[16], uint8_t ret_blob[16], uint64_t *ret_size)
{
        struct piece_key k;
        const uint8_t *blob;
        uint64_t size;
        int r;

        if (t->err < 0)
                return t->err;
        r = alias_resolve(t, id, &blob);
        if (r < 0)
                return r;
        r = piece_key_init(&k, blob, 16);
        if (r >= 0)
                r = pieces_size(t, t->s->results, &k, &size);
        if (r < 0)
                return r;
        memcpy(ret_blob, blob, 16);
        *ret_size = size;
        return 0;
}

/* Piece n of the value under k is not there: past its end (-EINVAL) when the last
 * piece comes before n, else a piece missing from it (-ENOENT). */
static int piece_missing(struct store_txn *t, MDB_dbi dbi, struct piece_key *k, uint32_t n)
{
        uint32_t last;
        size_t last_size;
        int r = piece_last(t, dbi, k, &last, &last_size);

        if (r < 0)
                return r;
        return last < n ? -EINVAL : -ENOENT;
}

/* Copies bytes [offset, offset + len) of blob `blob`; see store.h. The stride is the
 * size of the first piece (all but the last are that long), so a blob reads right
 * whatever piece size it was written with. */
int store_result_read(struct store_txn *t, const uint8_t blob[16], uint64_t offset, void *dst, size_t len)
{
        MDB_dbi dbi = t->s->results;
        struct piece_key k;
        MDB_val val;
        uint64_t stride, n, in, size;
        uint8_t *out = dst;
        int r;

        if (t->err < 0)
                return t->err;
        if (offset > UINT64_MAX - len)
                return -EINVAL;
        r = piece_key_init(&k, blob, 16);
        if (r < 0)
                return r;
        r = piece_get(t, dbi, &k, 0, &val);
        if (r < 0)
                return r;
        stride = val.mv_size;
        if (len == 0) {
                /* Nothing to copy: only whether offset is within [0, size]. */
                if (offset <= stride)
                        return 0;
                r = pieces_size(t, dbi, &k, &size);
                return r < 0 ? r : offset <= size ? 0 : -EINVAL;
        }
        if (stride == 0)
                return -EINVAL; /* an empty value */
        n = offset / stride;
        in = offset % stride;
        if (n > UINT32_MAX)
                return -EINVAL;
        while (len > 0) {
                size_t c;

                if (n > 0) {
                        if (n > UINT32_MAX)
                                return -EINVAL;
                        r = piece_get(t, dbi, &k, (uint32_t)n, &val);
                        if (r == -ENOENT)
                                return piece_missing(t, dbi, &k, (uint32_t)n);
                        if (r < 0)
                                return r;
                        if (val.mv_size > stride)
                                return -EIO;
                }
                if (in >= val.mv_size)
                        return -EINVAL; /* past the end of the (short) last piece */
                c = val.mv_size - in < len ? (size_t)(val.mv_size - in) : len;
                memcpy(out, (const uint8_t *)val.mv_data + in, c);
                out += c;
                len -= c;
                if (len > 0 && val.mv_size < stride)
                        return -EINVAL; /* only the last piece is short */
                in = 0;
                n++;
        }
        return 0;
}

/* Deletes one piece of a result blob; a test hook (store_internal.h). */
int store_result_piece_delete_raw(struct store_txn *t, const uint8_t blob[16], uint32_t n)
{
        struct piece_key k;
        MDB_val key;

        if (t->err < 0)
                return t->err;
        piece_key_init(&k, blob, 16);
        key = piece_key(&k, n);
        return store_txn_result(t, mdb_del(t->txn, t->s->results, &key, NULL));
}

/* ---- shared result blobs: aliases and reference counts ---- */

/* Holders of `blob`: jobs answering with it and cache entries (absent = 1). */
static int refs_get(struct store_txn *t, const uint8_t blob[16], uint32_t *ret)
{
        MDB_val key = store_key16(blob), val;
        int r = store_mdb_errno(mdb_get(t->txn, t->s->refs, &key, &val));

        if (r == -ENOENT) {
                *ret = 1;
                return 0;
        }
        if (r < 0)
                return r;
        if (val.mv_size != 4)
                return -EIO;
        memcpy(ret, val.mv_data, 4);
        return 0;
}

static int refs_set(struct store_txn *t, const uint8_t blob[16], uint32_t n)
{
        MDB_val key = store_key16(blob), val = { .mv_size = 4, .mv_data = &n };

        if (n > 1)
                return store_txn_result(t, mdb_put(t->txn, t->s->refs, &key, &val, 0));
        return store_del_quiet(t, t->s->refs, &key);
}

/* One more holder of `blob`; see store_impl.h. */
int store_blob_ref(struct store_txn *t, const uint8_t blob[16])
{
        uint32_t n;
        int r = refs_get(t, blob, &n);

        return r < 0 ? r : refs_set(t, blob, n + 1);
}

/* Drops one holder of `blob`; the last one deletes its pieces. */
int store_blob_release(struct store_txn *t, const uint8_t blob[16])
{
        uint32_t n;
        int r = refs_get(t, blob, &n);

        if (r < 0)
                return r;
        if (n <= 1) {
                r = store_pieces_delete(t, t->s->results, blob, 16);
                return r < 0 ? r : 0;
        }
        return refs_set(t, blob, n - 1);
}

bool store_blob_exists(struct store_txn *t, const uint8_t blob[16])
{
        return store_pieces_exist(t, t->s->results, blob, 16);
}

/* Job `id` no longer answers with its result: drops its alias, or its own pieces. */
int store_result_release(struct store_txn *t, const uint8_t id[16])
{
        MDB_val key = store_key16(id), val;
        uint8_t blob[16];
        int r = store_mdb_errno(mdb_get(t->txn, t->s->alias, &key, &val));

        if (r == -ENOENT)
                return store_blob_release(t, id);
        if (r < 0)
                return r;
        if (val.mv_size != 16)
                return -EIO;
        memcpy(blob, val.mv_data, 16);
        r = store_txn_result(t, mdb_del(t->txn, t->s->alias, &key, NULL));
        return r < 0 ? r : store_blob_release(t, blob);
}

/* Makes job `id` answer with the pieces of `blob`; see store.h. */
int store_result_alias(struct store_txn *t, const uint8_t id[16], const uint8_t blob[16])
{
        MDB_val key = store_key16(id), val = { .mv_size = 16, .mv_data = (void *)blob };
        int r;

        if (t->err < 0)
                return t->err;
        r = store_txn_result(t, mdb_put(t->txn, t->s->alias, &key, &val, 0));
        return r < 0 ? r : store_blob_ref(t, blob);
}
