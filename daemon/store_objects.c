/* Stored objects (SPEC §2.4): headers ("objects"), blobs ("object_blob"), tenant
 * totals ("object_usage") and the last versions of dropped names ("object_gone").
 * Items are in store_items.c.
 *
 * Header format, version 1 (integers little-endian):
 *   u8 format, u64 version, i64 created_ms, i64 updated_ms, u64 bytes, u64 count,
 *   u32 meta_len, meta bytes.
 * Usage: u64 objects, u64 bytes. Tombstone: u64 version. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

#define HEADER_FORMAT 1
#define HEADER_FIXED (1 + 5 * 8 + 4)

/* ---- keys ---- */

static int name_part(const char *s, size_t max, uint8_t **p)
{
        size_t n;

        if (!s)
                return -EINVAL;
        n = strnlen(s, max + 1);
        if (n == 0 || n > max)
                return -EINVAL;
        memcpy(*p, s, n);
        *p += n;
        return 0;
}

/* Builds "tenant NUL class NUL name" [NUL]; see store_impl.h. */
int store_object_key(const struct store_object_ref *o, bool sep, uint8_t *buf)
{
        uint8_t *p = buf;

        if (!o || name_part(o->tenant, STORE_OBJECT_TENANT_MAX, &p) < 0)
                return -EINVAL;
        *p++ = 0;
        if (name_part(o->cls, STORE_OBJECT_CLASS_MAX, &p) < 0)
                return -EINVAL;
        *p++ = 0;
        if (name_part(o->name, STORE_OBJECT_NAME_MAX, &p) < 0)
                return -EINVAL;
        if (sep)
                *p++ = 0;
        return (int)(p - buf);
}

/* ---- headers ---- */

static int header_parse(const MDB_val *val, struct object_header *h)
{
        struct reader r = { .p = val->mv_data, .left = val->mv_size };
        const uint8_t *meta;
        uint8_t format;

        if (!read_u8(&r, &format) || format != HEADER_FORMAT || !read_u64(&r, &h->version) ||
            !read_i64(&r, &h->created_ms) || !read_i64(&r, &h->updated_ms) || !read_u64(&r, &h->bytes) ||
            !read_u64(&r, &h->count) || !read_u32(&r, &h->meta_len) || h->meta_len > STORE_OBJECT_META_MAX ||
            !read_bytes(&r, h->meta_len, &meta) || r.left != 0)
                return -EIO;
        h->meta = NULL;
        if (h->meta_len) {
                h->meta = malloc(h->meta_len);
                if (!h->meta)
                        return -ENOMEM;
                memcpy(h->meta, meta, h->meta_len);
        }
        return 0;
}

/* Reads a header; see store_impl.h. */
int store_object_header_get(struct store_txn *t, const uint8_t *k, size_t klen, struct object_header *ret)
{
        MDB_val key = { .mv_size = klen, .mv_data = (void *)k }, val;
        int r = store_mdb_errno(mdb_get(t->txn, t->s->objects, &key, &val));

        return r < 0 ? r : header_parse(&val, ret);
}

/* Writes a header; see store_impl.h. */
int store_object_header_put(struct store_txn *t, const uint8_t *k, size_t klen, const struct object_header *h)
{
        MDB_val key = { .mv_size = klen, .mv_data = (void *)k };
        MDB_val val = { .mv_size = HEADER_FIXED + h->meta_len, .mv_data = NULL };
        uint8_t *p;
        int r;

        r = store_txn_result(t, mdb_put(t->txn, t->s->objects, &key, &val, MDB_RESERVE));
        if (r < 0)
                return r;
        p = val.mv_data;
        *p++ = HEADER_FORMAT;
        p = write_i64(p, (int64_t)h->version);
        p = write_i64(p, h->created_ms);
        p = write_i64(p, h->updated_ms);
        p = write_i64(p, (int64_t)h->bytes);
        p = write_i64(p, (int64_t)h->count);
        p = write_u32(p, h->meta_len);
        if (h->meta_len)
                memcpy(p, h->meta, h->meta_len);
        return 0;
}

/* ---- versions of dropped objects ---- */

/* The version a new object starts at; see store_impl.h. */
int store_object_first_version(struct store_txn *t, const uint8_t *k, size_t klen, uint64_t *ret)
{
        MDB_val key = { .mv_size = klen, .mv_data = (void *)k }, val;
        struct reader rd;
        uint64_t v;
        int r = store_mdb_errno(mdb_get(t->txn, t->s->object_gone, &key, &val));

        if (r == -ENOENT) {
                *ret = 1;
                return 0;
        }
        if (r < 0)
                return r;
        rd = (struct reader){ .p = val.mv_data, .left = val.mv_size };
        if (!read_u64(&rd, &v) || rd.left != 0)
                return -EIO;
        *ret = v + 1;
        return 0;
}

static int gone_put(struct store_txn *t, const uint8_t *k, size_t klen, uint64_t version)
{
        MDB_val key = { .mv_size = klen, .mv_data = (void *)k }, val;
        uint8_t buf[8];

        write_i64(buf, (int64_t)version);
        val = (MDB_val){ .mv_size = 8, .mv_data = buf };
        return store_txn_result(t, mdb_put(t->txn, t->s->object_gone, &key, &val, 0));
}

/* ---- tenant usage and limits ---- */

static MDB_val usage_key(const char *tenant)
{
        return (MDB_val){ .mv_size = strlen(tenant), .mv_data = (void *)tenant };
}

/* The tenant's totals; see store.h. */
int store_object_usage(struct store_txn *t, const char *tenant, struct store_tenant_usage *ret)
{
        MDB_val key, val;
        struct reader rd;
        struct store_tenant_usage u;
        int r;

        if (t->err < 0)
                return t->err;
        if (!tenant || !*tenant || strlen(tenant) > STORE_OBJECT_TENANT_MAX)
                return -EINVAL;
        key = usage_key(tenant);
        r = store_mdb_errno(mdb_get(t->txn, t->s->object_usage, &key, &val));
        if (r == -ENOENT) {
                *ret = (struct store_tenant_usage){ 0 };
                return 0;
        }
        if (r < 0)
                return r;
        rd = (struct reader){ .p = val.mv_data, .left = val.mv_size };
        if (!read_u64(&rd, &u.objects) || !read_u64(&rd, &u.bytes) || rd.left != 0)
                return -EIO;
        *ret = u;
        return 0;
}

static uint64_t add_clamped(uint64_t a, int64_t d)
{
        if (d < 0 && (uint64_t)-d > a)
                return 0;
        return a + (uint64_t)d;
}

/* Adds to the tenant's totals; see store_impl.h. A tenant back at zero has no record. */
int store_usage_add(struct store_txn *t, const char *tenant, int64_t objects, int64_t bytes)
{
        struct store_tenant_usage u;
        MDB_val key = usage_key(tenant), val;
        uint8_t buf[16];
        int r;

        r = store_object_usage(t, tenant, &u);
        if (r < 0)
                return r;
        u.objects = add_clamped(u.objects, objects);
        u.bytes = add_clamped(u.bytes, bytes);
        if (u.objects == 0 && u.bytes == 0)
                return store_del_quiet(t, t->s->object_usage, &key);
        write_i64(write_i64(buf, (int64_t)u.objects), (int64_t)u.bytes);
        val = (MDB_val){ .mv_size = sizeof(buf), .mv_data = buf };
        return store_txn_result(t, mdb_put(t->txn, t->s->object_usage, &key, &val, 0));
}

/* Checks a change against the limits; see store_impl.h. Shrinking never fails on the
 * tenant's bytes, so a tenant over a lowered limit can still make room. */
int store_object_check_limits(struct store_txn *t, const char *tenant, const struct store_object_limits *lim,
                              bool created, uint64_t old_bytes, uint64_t new_bytes)
{
        struct store_tenant_usage u;
        int r;

        if (!lim)
                return 0;
        if (lim->max_object_bytes && new_bytes > lim->max_object_bytes)
                return -EFBIG;
        if (!created && new_bytes <= old_bytes)
                return 0;
        r = store_object_usage(t, tenant, &u);
        if (r < 0)
                return r;
        if (created && lim->max_objects_per_tenant && u.objects >= lim->max_objects_per_tenant)
                return -EDQUOT;
        if (lim->max_tenant_bytes && new_bytes > old_bytes &&
            add_clamped(u.bytes, -(int64_t)old_bytes) + new_bytes > lim->max_tenant_bytes)
                return -EOVERFLOW;
        return 0;
}

/* Writes the header of a changed object and keeps the tenant's totals in step; see
 * store_impl.h. */
int store_object_changed(struct store_txn *t, const struct store_object_ref *o, const uint8_t *k, size_t klen,
                         bool created, uint64_t old_bytes, const struct object_header *h)
{
        int r;

        r = store_object_header_put(t, k, klen, h);
        if (r >= 0)
                r = store_usage_add(t, o->tenant, created ? 1 : 0, (int64_t)h->bytes - (int64_t)old_bytes);
        /* The name's "object_gone" entry stays: the new object began one past it. */
        return r;
}

/* ---- infos ---- */

void store_object_info_refresh(struct store_object_info *info, const struct object_header *h)
{
        info->version = h->version;
        info->created_ms = h->created_ms;
        info->updated_ms = h->updated_ms;
        info->bytes = h->bytes;
        info->count = h->count;
}

/* Fills an info from a header; see store_impl.h. */
int store_object_info_fill(const char *name, const struct object_header *h, struct store_object_info *ret)
{
        struct store_object_info info = { 0 };

        snprintf(info.name, sizeof(info.name), "%s", name);
        store_object_info_refresh(&info, h);
        info.meta_len = h->meta_len;
        if (h->meta_len) {
                info.meta = malloc(h->meta_len);
                if (!info.meta)
                        return -ENOMEM;
                memcpy(info.meta, h->meta, h->meta_len);
        }
        *ret = info;
        return 0;
}

/* Frees an info's meta. Accepts NULL. */
void store_object_info_clear(struct store_object_info *info)
{
        if (!info)
                return;
        free(info->meta);
        info->meta = NULL;
}

/* Frees a list of infos. Accepts NULL. */
void store_object_infos_free(struct store_object_info *infos, size_t n)
{
        if (!infos)
                return;
        for (size_t i = 0; i < n; i++)
                store_object_info_clear(&infos[i]);
        free(infos);
}

/* ---- objects ---- */

/* Puts an object: meta and blob, replacing all it held; see store.h. */
int store_object_put(struct store_txn *t, const struct store_object_ref *o, const void *meta, size_t meta_len,
                     size_t blob_size, store_result_writer write, void *opaque,
                     const struct store_object_limits *lim, int64_t now_ms, struct store_object_info *ret)
{
        uint8_t k[STORE_MAX_KEY];
        struct object_header old = { 0 }, h;
        struct store_object_info info;
        bool created;
        int klen, r;

        if (t->err < 0)
                return t->err;
        klen = store_object_key(o, false, k);
        if (klen < 0 || (meta_len && !meta) || (blob_size && !write))
                return -EINVAL;
        if (meta_len > STORE_OBJECT_META_MAX)
                return -E2BIG;
        r = store_object_header_get(t, k, (size_t)klen, &old);
        if (r < 0 && r != -ENOENT)
                return r;
        created = r == -ENOENT;
        free(old.meta);
        r = store_object_check_limits(t, o->tenant, lim, created, old.bytes, blob_size);
        if (r < 0)
                return r;
        h = (struct object_header){ .version = old.version + 1, .created_ms = old.created_ms, .updated_ms = now_ms,
                                    .bytes = blob_size, .count = 0, .meta = (uint8_t *)meta,
                                    .meta_len = (uint32_t)meta_len };
        if (created) {
                r = store_object_first_version(t, k, (size_t)klen, &h.version);
                if (r < 0)
                        return r;
                h.created_ms = now_ms;
        }

        if (ret) {
                r = store_object_info_fill(o->name, &h, &info); /* before any write */
                if (r < 0)
                        return r;
        }
        k[klen] = 0; /* the prefix of its blob pieces and items */
        if (!created && old.count)
                r = store_object_items_clear(t, k, (size_t)klen + 1);
        if (r >= 0)
                r = blob_size ? store_pieces_put(t, t->s->object_blob, k, (size_t)klen + 1, blob_size, write, opaque)
                              : store_pieces_delete(t, t->s->object_blob, k, (size_t)klen + 1);
        if (r >= 0)
                r = store_object_changed(t, o, k, (size_t)klen, created, old.bytes, &h);
        if (r < 0) {
                if (ret)
                        store_object_info_clear(&info);
                return r;
        }
        if (ret)
                *ret = info;
        return 0;
}

/* Deletes an object with everything it holds; see store.h. */
int store_object_drop(struct store_txn *t, const struct store_object_ref *o)
{
        uint8_t k[STORE_MAX_KEY];
        struct object_header h;
        MDB_val key;
        int klen, r;

        if (t->err < 0)
                return t->err;
        klen = store_object_key(o, false, k);
        if (klen < 0)
                return -EINVAL;
        r = store_object_header_get(t, k, (size_t)klen, &h);
        if (r < 0)
                return r;
        free(h.meta);
        key = (MDB_val){ .mv_size = (size_t)klen, .mv_data = k };
        r = store_txn_result(t, mdb_del(t->txn, t->s->objects, &key, NULL));
        if (r >= 0)
                r = gone_put(t, k, (size_t)klen, h.version);
        if (r >= 0)
                r = store_usage_add(t, o->tenant, -1, -(int64_t)h.bytes);
        k[klen] = 0;
        if (r >= 0)
                r = store_object_items_clear(t, k, (size_t)klen + 1);
        if (r >= 0)
                r = store_pieces_delete(t, t->s->object_blob, k, (size_t)klen + 1);
        return r < 0 ? r : 0;
}

/* Reads an object's header and meta; see store.h. */
int store_object_get(struct store_txn *t, const struct store_object_ref *o, struct store_object_info *ret)
{
        uint8_t k[STORE_MAX_KEY];
        struct object_header h;
        int klen, r;

        if (t->err < 0)
                return t->err;
        klen = store_object_key(o, false, k);
        if (klen < 0)
                return -EINVAL;
        r = store_object_header_get(t, k, (size_t)klen, &h);
        if (r < 0)
                return r;
        r = store_object_info_fill(o->name, &h, ret);
        free(h.meta);
        return r;
}

/* The version the stored object of that name began at; see store.h. */
int store_object_began(struct store_txn *t, const struct store_object_ref *o, uint64_t *ret)
{
        uint8_t k[STORE_MAX_KEY];
        int klen;

        if (t->err < 0)
                return t->err;
        klen = store_object_key(o, false, k);
        if (klen < 0)
                return -EINVAL;
        return store_object_first_version(t, k, (size_t)klen, ret);
}

/* Copies an object's blob out; see store.h. */
int store_object_blob_get(struct store_txn *t, const struct store_object_ref *o, uint8_t **ret_data,
                          size_t *ret_size)
{
        uint8_t k[STORE_MAX_KEY], *data;
        MDB_val key, val;
        size_t size;
        int klen, r;

        if (t->err < 0)
                return t->err;
        klen = store_object_key(o, false, k);
        if (klen < 0)
                return -EINVAL;
        key = (MDB_val){ .mv_size = (size_t)klen, .mv_data = k };
        r = store_mdb_errno(mdb_get(t->txn, t->s->objects, &key, &val));
        if (r < 0)
                return r;
        k[klen] = 0;
        r = store_pieces_get(t, t->s->object_blob, k, (size_t)klen + 1, &data, &size);
        if (r == -ENOENT) { /* an object without a blob: an empty one */
                data = malloc(1);
                size = 0;
                r = data ? 0 : -ENOMEM;
        }
        if (r < 0)
                return r;
        *ret_data = data;
        *ret_size = size;
        return 0;
}

/* Walks every object; see store.h. */
int store_object_foreach(struct store_txn *t,
                         int (*cb)(const struct store_object_ref *o, uint64_t version, const uint8_t *meta,
                                   size_t meta_len, void *userdata),
                         void *userdata)
{
        MDB_cursor *c;
        MDB_val key, val;
        int rc, r;

        if (t->err < 0)
                return t->err;
        r = store_mdb_errno(mdb_cursor_open(t->txn, t->s->objects, &c));
        if (r < 0)
                return r;
        for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0 && r >= 0;
             rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                /* "tenant NUL class NUL name": copied with a NUL after the name. */
                char k[STORE_MAX_KEY + 1];
                struct object_header h;
                if (key.mv_size > STORE_MAX_KEY) {
                        r = -EIO;
                        break;
                }
                memcpy(k, key.mv_data, key.mv_size);
                k[key.mv_size] = '\0';
                char *cls = memchr(k, 0, key.mv_size);
                char *name = cls ? memchr(cls + 1, 0, key.mv_size - (size_t)(cls + 1 - k)) : NULL;
                if (!name || (r = header_parse(&val, &h)) < 0) {
                        r = r < 0 ? r : -EIO;
                        break;
                }
                struct store_object_ref o = { .tenant = k, .cls = cls + 1, .name = name + 1 };
                r = cb(&o, h.version, h.meta_len ? h.meta : NULL, h.meta_len, userdata);
                free(h.meta);
        }
        if (r >= 0 && rc != 0 && rc != MDB_NOTFOUND)
                r = store_mdb_errno(rc);
        mdb_cursor_close(c);
        return r < 0 ? r : 0;
}

/* Lists a tenant's objects of one class; see store.h. */
int store_object_list(struct store_txn *t, const char *tenant, const char *cls, struct store_object_info **ret,
                      size_t *ret_n)
{
        struct store_object_ref o = { .tenant = tenant, .cls = cls, .name = "-" };
        struct store_object_info *v = NULL;
        uint8_t k[STORE_MAX_KEY];
        size_t n = 0, cap = 0, plen;
        MDB_cursor *c;
        MDB_val key, val;
        int klen, rc, r = 0;

        if (t->err < 0)
                return t->err;
        klen = store_object_key(&o, false, k);
        if (klen < 0)
                return -EINVAL;
        plen = (size_t)klen - 1; /* "tenant NUL class NUL" */
        r = store_mdb_errno(mdb_cursor_open(t->txn, t->s->objects, &c));
        if (r < 0)
                return r;
        key = (MDB_val){ .mv_size = plen, .mv_data = k };
        for (rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
             rc == 0 && key.mv_size > plen && !memcmp(key.mv_data, k, plen);
             rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                char name[STORE_OBJECT_NAME_MAX + 1];
                struct object_header h;
                size_t nl = key.mv_size - plen;

                if (nl > STORE_OBJECT_NAME_MAX || memchr((const uint8_t *)key.mv_data + plen, 0, nl)) {
                        r = -EIO;
                        break;
                }
                memcpy(name, (const uint8_t *)key.mv_data + plen, nl);
                name[nl] = '\0';
                if (n == cap) {
                        size_t nc = cap ? cap * 2 : 16;
                        void *nv = realloc(v, nc * sizeof(*v));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                        cap = nc;
                }
                r = header_parse(&val, &h);
                if (r >= 0) {
                        r = store_object_info_fill(name, &h, &v[n]);
                        free(h.meta);
                }
                if (r < 0)
                        break;
                n++;
        }
        if (r >= 0 && rc != 0 && rc != MDB_NOTFOUND)
                r = store_mdb_errno(rc);
        mdb_cursor_close(c);
        if (r < 0) {
                store_object_infos_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}
