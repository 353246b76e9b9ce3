/* Stored objects' items ("object_items"): key "tenant NUL class NUL name NUL id",
 * value the item's bytes. Ids are any bytes, 1..STORE_OBJECT_ITEM_ID_MAX of them; keys
 * sort by id byte order. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

struct item_key {
        uint8_t b[STORE_MAX_KEY];
        size_t plen;          /* the object's prefix, ending in NUL */
};

static bool id_valid(const struct store_object_item *it)
{
        return it->id && it->id_len >= 1 && it->id_len <= STORE_OBJECT_ITEM_ID_MAX;
}

static MDB_val item_key(struct item_key *k, const struct store_object_item *it)
{
        memcpy(k->b + k->plen, it->id, it->id_len);
        return (MDB_val){ .mv_size = k->plen + it->id_len, .mv_data = k->b };
}

/* Builds the object's key (k->b, returned length) and item prefix (k->plen). */
static int item_key_init(struct item_key *k, const struct store_object_ref *o)
{
        int klen = store_object_key(o, true, k->b);

        if (klen < 0)
                return klen;
        k->plen = (size_t)klen;
        return klen - 1;
}

static bool in_object(const MDB_val *key, const uint8_t *prefix, size_t plen)
{
        return key->mv_size > plen && !memcmp(key->mv_data, prefix, plen);
}

/* Deletes every item under prefix p; see store_impl.h. */
int store_object_items_clear(struct store_txn *t, const uint8_t *p, size_t plen)
{
        MDB_cursor *c;
        MDB_val key, val;
        int rc;

        rc = mdb_cursor_open(t->txn, t->s->object_items, &c);
        if (rc)
                return store_txn_result(t, rc);
        for (;;) {
                key = (MDB_val){ .mv_size = plen, .mv_data = (void *)p };
                rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
                if (rc || !in_object(&key, p, plen))
                        break;
                rc = mdb_cursor_del(c, 0);
                if (rc)
                        break;
        }
        mdb_cursor_close(c);
        if (rc && rc != MDB_NOTFOUND)
                return store_txn_result(t, rc);
        return 0;
}

/* ---- put ---- */

struct sorted_item {
        const struct store_object_item *it;
        size_t index;
};

static int cmp_items(const void *a, const void *b)
{
        const struct sorted_item *x = a, *y = b;
        size_t n = x->it->id_len < y->it->id_len ? x->it->id_len : y->it->id_len;
        int c = memcmp(x->it->id, y->it->id, n);

        if (c)
                return c;
        if (x->it->id_len != y->it->id_len)
                return x->it->id_len < y->it->id_len ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

static bool same_id(const struct store_object_item *a, const struct store_object_item *b)
{
        return a->id_len == b->id_len && !memcmp(a->id, b->id, a->id_len);
}

/* The batch in id order with, for each id, only its last item; *ret_n of them. */
static int sort_batch(const struct store_object_item *items, size_t n, struct sorted_item **ret, size_t *ret_n)
{
        struct sorted_item *v = malloc((n ? n : 1) * sizeof(*v));
        size_t m = 0;

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                v[i] = (struct sorted_item){ .it = &items[i], .index = i };
        qsort(v, n, sizeof(*v), cmp_items);
        for (size_t i = 0; i < n; i++) {
                if (i + 1 < n && same_id(v[i].it, v[i + 1].it))
                        continue; /* a later item of the batch replaces it */
                v[m++] = v[i];
        }
        *ret = v;
        *ret_n = m;
        return 0;
}

static int validate_items(const struct store_object_item *items, size_t n, bool values)
{
        if (n && !items)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (!id_valid(&items[i]))
                        return -EINVAL;
                if (values && items[i].size > STORE_OBJECT_ITEM_MAX)
                        return -E2BIG;
                if (values && items[i].size && !items[i].data)
                        return -EINVAL;
        }
        return 0;
}

/* Adds or replaces a batch of items; see store.h. Two passes: the first reads what the
 * batch replaces (so the limits are checked before anything is written), the second
 * writes, in id order. */
int store_object_items_put(struct store_txn *t, const struct store_object_ref *o, const void *meta,
                           size_t meta_len, const struct store_object_item *items, size_t n,
                           const struct store_object_limits *lim, int64_t now_ms, struct store_object_info *ret)
{
        struct object_header old = { 0 }, h;
        struct sorted_item *v = NULL;
        struct store_object_info info = { 0 }; /* cleared on failure: a no-op when unfilled */
        struct item_key k;
        uint64_t old_part = 0, new_part = 0, added = 0;
        size_t m = 0;
        bool created;
        int klen, r;

        if (t->err < 0)
                return t->err;
        klen = item_key_init(&k, o);
        if (klen < 0 || (meta_len && !meta))
                return -EINVAL;
        if (meta_len > STORE_OBJECT_META_MAX)
                return -E2BIG;
        r = validate_items(items, n, true);
        if (r < 0)
                return r;
        r = store_object_header_get(t, k.b, (size_t)klen, &old);
        if (r < 0 && r != -ENOENT)
                return r;
        created = r == -ENOENT;
        if (!created && meta && (old.meta_len != meta_len || (meta_len && memcmp(old.meta, meta, meta_len)))) {
                free(old.meta);
                return -EEXIST;
        }
        r = sort_batch(items, n, &v, &m);
        for (size_t i = 0; r >= 0 && i < m; i++) {
                MDB_val key = item_key(&k, v[i].it), val;
                new_part += v[i].it->id_len + v[i].it->size;
                if (created)
                        continue;
                r = store_mdb_errno(mdb_get(t->txn, t->s->object_items, &key, &val));
                if (r >= 0)
                        old_part += v[i].it->id_len + val.mv_size;
                else if (r == -ENOENT)
                        added++;
                r = r == -ENOENT ? 0 : r;
        }
        if (created)
                added = m;
        h = (struct object_header){ .version = old.version + 1, .created_ms = old.created_ms, .updated_ms = now_ms,
                                    .bytes = old.bytes - old_part + new_part, .count = old.count + added,
                                    .meta = created ? (uint8_t *)meta : old.meta,
                                    .meta_len = created ? (uint32_t)meta_len : old.meta_len };
        if (r >= 0)
                r = store_object_check_limits(t, o->tenant, lim, created, old.bytes, h.bytes);
        if (r >= 0 && created) {
                r = store_object_first_version(t, k.b, (size_t)klen, &h.version);
                h.created_ms = now_ms;
        }
        if (r >= 0 && ret)
                r = store_object_info_fill(o->name, &h, &info); /* before any write */
        for (size_t i = 0; r >= 0 && i < m; i++) {
                MDB_val key = item_key(&k, v[i].it);
                MDB_val val = { .mv_size = v[i].it->size, .mv_data = (void *)v[i].it->data };
                r = store_put_in_order(t, t->s->object_items, &key, &val, 0);
        }
        if (r >= 0)
                r = store_object_changed(t, o, k.b, (size_t)klen, created, old.bytes, &h);
        if (r >= 0 && ret)
                *ret = info;
        else
                store_object_info_clear(&info);
        free(v);
        free(old.meta);
        return r < 0 ? r : 0;
}

/* ---- delete, iterate ---- */

/* Deletes items by id; see store.h. */
int store_object_items_delete(struct store_txn *t, const struct store_object_ref *o,
                              const struct store_object_item *ids, size_t n, int64_t now_ms,
                              struct store_object_info *ret)
{
        struct object_header h;
        struct store_object_info info;
        struct item_key k;
        uint64_t old_bytes;
        size_t deleted = 0;
        int klen, r;

        if (t->err < 0)
                return t->err;
        klen = item_key_init(&k, o);
        if (klen < 0)
                return -EINVAL;
        r = validate_items(ids, n, false);
        if (r < 0)
                return r;
        r = store_object_header_get(t, k.b, (size_t)klen, &h);
        if (r < 0)
                return r;
        if (ret) {
                r = store_object_info_fill(o->name, &h, &info); /* before any write */
                if (r < 0) {
                        free(h.meta);
                        return r;
                }
        }
        old_bytes = h.bytes;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                MDB_val key = item_key(&k, &ids[i]), val;
                /* An error other than absence ends the transaction (store_txn_result):
                 * the deletes before it must not be committed without the rest. */
                r = store_txn_result(t, mdb_get(t->txn, t->s->object_items, &key, &val));
                if (r == -ENOENT) {
                        r = 0; /* not there (or twice in the batch) */
                        continue;
                }
                if (r < 0)
                        break;
                uint64_t size = ids[i].id_len + val.mv_size;
                h.bytes = h.bytes > size ? h.bytes - size : 0;
                h.count = h.count ? h.count - 1 : 0;
                r = store_txn_result(t, mdb_del(t->txn, t->s->object_items, &key, NULL));
                deleted++;
        }
        /* Nothing there: nothing changed, and the version (which keys the cached
         * results of the object's jobs) stays. */
        if (r >= 0 && deleted) {
                h.version++;
                h.updated_ms = now_ms;
                r = store_object_changed(t, o, k.b, (size_t)klen, false, old_bytes, &h);
        }
        if (ret && r >= 0) {
                store_object_info_refresh(&info, &h);
                *ret = info;
        } else if (ret) {
                store_object_info_clear(&info);
        }
        free(h.meta);
        return r < 0 ? r : 0;
}

/* Calls cb for each item in id order, with borrowed bytes; see store.h. */
int store_object_items_foreach(struct store_txn *t, const struct store_object_ref *o,
                               int (*cb)(const uint8_t *id, size_t id_len, const uint8_t *data, size_t size,
                                         void *userdata),
                               void *userdata)
{
        struct object_header h;
        struct item_key k;
        MDB_cursor *c;
        MDB_val key, val;
        int klen, rc, r;

        if (t->err < 0)
                return t->err;
        klen = item_key_init(&k, o);
        if (klen < 0)
                return -EINVAL;
        r = store_object_header_get(t, k.b, (size_t)klen, &h);
        if (r < 0)
                return r;
        free(h.meta);
        r = store_mdb_errno(mdb_cursor_open(t->txn, t->s->object_items, &c));
        if (r < 0)
                return r;
        key = (MDB_val){ .mv_size = k.plen, .mv_data = k.b };
        for (rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE); rc == 0 && in_object(&key, k.b, k.plen);
             rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                size_t id_len = key.mv_size - k.plen;

                if (id_len > STORE_OBJECT_ITEM_ID_MAX) {
                        r = -EIO;
                        break;
                }
                r = cb((const uint8_t *)key.mv_data + k.plen, id_len, val.mv_data, val.mv_size, userdata);
                if (r < 0)
                        break;
        }
        if (r >= 0 && rc != 0 && rc != MDB_NOTFOUND)
                r = store_mdb_errno(rc);
        mdb_cursor_close(c);
        return r < 0 ? r : 0;
}
