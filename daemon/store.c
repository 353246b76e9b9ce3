/* The store's environment, databases and transactions, and the helpers every part of
 * the store uses (see store.h for the layout, store_impl.h for what the parts share):
 *   store_records.c  job records in memory and on disk (the codec)
 *   store_jobs.c     jobs: put, get, delete, pending, listing, idempotency keys
 *   store_results.c  pieces, results, shared result blobs (aliases, refs)
 *   store_inputs.c   jobs' stored inputs
 *   store_cache.c    the result cache, retention and maintenance
 *   store_objects.c  stored objects: headers, blobs, tenant usage and limits
 *   store_items.c    stored objects' items
 *   store_ops.c      what each writer operation does
 *   store_writer.c   the group-commit writer thread */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store_impl.h"

#define STORE_MAX_DBS 24
#define STORE_FILE_MODE 0600
#define STORE_DIR_MODE 0700
/* Pieces fill exactly this many overflow pages. LMDB needs a contiguous run of free
 * pages for each value; with values of many sizes written and purged (retention,
 * eviction) the free space fragments, and 0.9.24 then grows the file instead of
 * searching further (measured: a 1 GiB map full with 57 % of its pages free, with
 * 64 MiB pieces). Same-sized small pieces reuse each other's runs. */
#define PIECE_PAGES 16
#define PAGE_HEADER_BYTES 16 /* LMDB's PAGEHDRSZ, before the data of an overflow page */

/* The one place where LMDB codes become -errno. */
int store_mdb_errno(int rc)
{
        if (rc == MDB_SUCCESS)
                return 0;
        /* A disk quota or the file size limit is no room, as a full disk is. These
         * codes mean kiln's own limits to the store's callers (EDQUOT objects per
         * tenant, EFBIG an object's bytes): the file system's must not pass for those. */
        if (rc == EDQUOT || rc == EFBIG)
                return -ENOSPC;
        if (rc > 0)
                return -rc;
        switch (rc) {
        case MDB_NOTFOUND:
                return -ENOENT;
        case MDB_MAP_FULL:
        case MDB_TXN_FULL:
                return -ENOSPC;
        default: /* MDB_CORRUPTED, MDB_PANIC, MDB_VERSION_MISMATCH, MDB_INVALID, ... */
                return -EIO;
        }
}

/* Converts the result of an LMDB write call; an error other than a missing key leaves
 * the LMDB transaction unusable, so it is remembered and every later call fails. */
/* LMDB reports a write that the file system cut short (its disk full, the file
 * size limit reached) as EIO ("short write, filesystem full?"), the same as a
 * failing disk. A write error while the store's file system has almost nothing
 * left, or while its data file is within as much of RLIMIT_FSIZE (systemd's
 * LimitFSIZE=), is taken for what it almost surely is: no room (-ENOSPC), which
 * callers handle as such. */
#define STORE_FS_NEARLY_FULL (16u << 20)

/* The process's file size limit (RLIMIT_FSIZE, systemd's LimitFSIZE=), or
 * UINT64_MAX when there is none. */
static uint64_t file_size_limit(void)
{
        struct rlimit lim;
        return getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY ? (uint64_t)lim.rlim_cur
                                                                                    : UINT64_MAX;
}

static int write_errno(struct store *s, int r)
{
        struct statvfs vfs;
        struct stat st;
        int fd;

        if (r != -EIO || mdb_env_get_fd(s->env, &fd) != MDB_SUCCESS || fstatvfs(fd, &vfs) < 0)
                return r;
        if ((uint64_t)vfs.f_bavail * vfs.f_frsize < STORE_FS_NEARLY_FULL)
                return -ENOSPC;
        uint64_t limit = file_size_limit();
        if (limit != UINT64_MAX && fstat(fd, &st) == 0 && (uint64_t)st.st_size + STORE_FS_NEARLY_FULL >= limit)
                return -ENOSPC;
        return r;
}

int store_txn_result(struct store_txn *t, int rc)
{
        int r = store_mdb_errno(rc);
        if (t->write)
                r = write_errno(t->s, r);

        if (r < 0 && r != -ENOENT && t->err == 0)
                t->err = r;
        return r;
}

/* mdb_put for keys that mostly arrive in order (time keys, pieces of new jobs): tried
 * as MDB_APPEND first, which fills pages instead of splitting them in half, so a run
 * of such puts dirties and writes about half as many pages. A key that is not past
 * the last one is refused untouched (MDB_KEYEXIST) and put normally. */
int store_put_in_order(struct store_txn *t, MDB_dbi dbi, MDB_val *key, MDB_val *val, unsigned flags)
{
        int rc = mdb_put(t->txn, dbi, key, val, flags | MDB_APPEND);

        if (rc == MDB_KEYEXIST)
                rc = mdb_put(t->txn, dbi, key, val, flags);
        return store_txn_result(t, rc);
}

/* Deletes one key; an absent key is not an error. */
int store_del_quiet(struct store_txn *t, MDB_dbi dbi, MDB_val *key)
{
        int r = store_txn_result(t, mdb_del(t->txn, dbi, key, NULL));

        return r == -ENOENT ? 0 : r;
}

/* ---- job states ---- */

static const char *const state_names[STORE_STATE_COUNT] = {
        [KILN_JOB_QUEUED] = "queued",
        [KILN_JOB_RUNNING] = "running",
        [KILN_JOB_DONE] = "done",
        [KILN_JOB_FAILED] = "failed",
        [KILN_JOB_CANCELLED] = "cancelled",
        [KILN_JOB_EXPIRED] = "expired",
};

/* Returns the protocol name of a job state, or NULL when `s` is not a state. */
const char *kiln_job_state_name(enum kiln_job_state s)
{
        if ((unsigned)s >= STORE_STATE_COUNT)
                return NULL;
        return state_names[s];
}

/* Parses a protocol state name. Returns >= 0 and sets *ret, or -EINVAL. */
int kiln_job_state_from_name(const char *name, enum kiln_job_state *ret)
{
        if (!name)
                return -EINVAL;
        for (size_t i = 0; i < STORE_STATE_COUNT; i++) {
                if (strcmp(name, state_names[i]) == 0) {
                        *ret = (enum kiln_job_state)i;
                        return 0;
                }
        }
        return -EINVAL;
}

/* ---- environment ---- */

/* Creates `path` and its missing parents with `mode` (like mkdir -p). */
static int mkdir_p(const char *path, mode_t mode)
{
        char *copy = strdup(path);
        struct stat st;
        int r = 0;

        if (!copy)
                return -ENOMEM;
        for (char *p = copy + 1; ; p++) {
                if (*p != '/' && *p != '\0')
                        continue;
                char c = *p;
                *p = '\0';
                if (mkdir(copy, mode) < 0 && errno != EEXIST) {
                        /* An existing parent may refuse mkdir (EACCES, EROFS): fine. */
                        r = -errno;
                        if (stat(copy, &st) < 0 || !S_ISDIR(st.st_mode))
                                break;
                        r = 0;
                }
                *p = c;
                if (c == '\0')
                        break;
        }
        free(copy);
        if (r < 0)
                return r;
        if (stat(path, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        return 0;
}

/* Puts into dbi, with an empty value, the key key_of makes of each job record that
 * parses (one of no size: none). Returns an LMDB code. */
static int index_every_job(struct store *s, MDB_txn *txn, MDB_dbi dbi,
                           MDB_val (*key_of)(const struct record_view *v, const uint8_t *id, uint8_t *buf))
{
        MDB_cursor *c;
        MDB_val key, val;
        int rc = mdb_cursor_open(txn, s->jobs, &c);

        if (rc)
                return rc;
        for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                struct record_view v;
                uint8_t buf[TENANT_JOB_KEY_MAX];
                MDB_val ik, empty = { .mv_size = 0, .mv_data = NULL };

                if (key.mv_size != 16 || store_record_parse(val.mv_data, val.mv_size, &v) < 0)
                        continue;
                ik = key_of(&v, key.mv_data, buf);
                if (!ik.mv_size)
                        continue;
                rc = mdb_put(txn, dbi, &ik, &empty, 0);
                if (rc)
                        break;
        }
        mdb_cursor_close(c);
        return rc == MDB_NOTFOUND ? 0 : rc;
}

static MDB_val retain_key_of(const struct record_view *v, const uint8_t *id, uint8_t *buf)
{
        if (!kiln_job_state_is_final(v->state))
                return (MDB_val){ .mv_size = 0, .mv_data = NULL };
        return store_time_key(buf, v->finished_ms, id);
}

static MDB_val tenant_key_of(const struct record_view *v, const uint8_t *id, uint8_t *buf)
{
        if (!v->tenant.p)
                return (MDB_val){ .mv_size = 0, .mv_data = NULL };
        return store_tenant_job_key(buf, v->tenant.p, v->tenant.n, id);
}

/* At open, for a store written before the "retain" database existed: indexes its
 * finished jobs. Returns an LMDB code. */
static int retain_rebuild(struct store *s, MDB_txn *txn)
{
        MDB_stat retain, pending, jobs;
        int rc;

        rc = mdb_stat(txn, s->retain, &retain);
        if (!rc)
                rc = mdb_stat(txn, s->pending, &pending);
        if (!rc)
                rc = mdb_stat(txn, s->jobs, &jobs);
        if (rc || retain.ms_entries || jobs.ms_entries <= pending.ms_entries)
                return rc;
        return index_every_job(s, txn, s->retain, retain_key_of);
}

/* At open, when "tenant_jobs" does not index every job once (a store written before
 * it existed, or by such a kilnd since; an entry left by a record that could not be
 * read when deleted): indexes every job by its tenant anew. Returns an LMDB code. */
static int tenant_jobs_rebuild(struct store *s, MDB_txn *txn)
{
        MDB_stat index, jobs;
        int rc;

        rc = mdb_stat(txn, s->tenant_jobs, &index);
        if (!rc)
                rc = mdb_stat(txn, s->jobs, &jobs);
        if (rc || index.ms_entries == jobs.ms_entries)
                return rc;
        rc = mdb_drop(txn, s->tenant_jobs, 0);
        return rc ? rc : index_every_job(s, txn, s->tenant_jobs, tenant_key_of);
}

/* At open: the pieces of an input no job record owns. A big input is written in
 * slices, each committed before the job's record (store_writer.c); a kill -9
 * between them leaves pieces that nothing refers to or would ever delete. Nothing
 * is being written at open, so an input without its record is such a leftover.
 * Counts the pieces it drops in s->orphan_pieces. Returns an LMDB code. */
static int orphan_inputs_drop(struct store *s, MDB_txn *txn)
{
        uint8_t at[20] = { 0 }, id[16];
        MDB_cursor *c;
        MDB_val key, val;
        int rc = mdb_cursor_open(txn, s->inputs, &c);

        if (rc)
                return rc;
        for (;;) {
                key = (MDB_val){ .mv_size = sizeof(at), .mv_data = at };
                rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
                if (rc)
                        break;
                if (key.mv_size != 20) { /* not a piece key: past it */
                        rc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
                        if (rc)
                                break;
                        memcpy(at, key.mv_data, key.mv_size < 20 ? key.mv_size : 20);
                        continue;
                }
                memcpy(id, key.mv_data, 16);
                MDB_val jk = { .mv_size = 16, .mv_data = id }, jv;
                rc = mdb_get(txn, s->jobs, &jk, &jv);
                if (rc == MDB_NOTFOUND) {
                        rc = mdb_cursor_del(c, 0);
                        if (rc)
                                break;
                        s->orphan_pieces++;
                        memcpy(at, id, 16);
                        memset(at + 16, 0, 4);
                        continue; /* the next piece of this id, or the next id */
                }
                if (rc)
                        break;
                /* Its record is there: on to the next id. */
                memcpy(at, id, 16);
                memset(at + 16, 0, 4);
                int i = 15;
                while (i >= 0 && ++at[i] == 0)
                        i--;
                if (i < 0) {
                        rc = MDB_NOTFOUND; /* the last possible id */
                        break;
                }
        }
        mdb_cursor_close(c);
        return rc == MDB_NOTFOUND ? 0 : rc;
}

static int open_databases(struct store *s)
{
        MDB_txn *txn;
        int rc;

        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc != 0)
                return store_mdb_errno(rc);
        const struct {
                const char *name;
                MDB_dbi *dbi;
        } dbs[] = {
                { "jobs", &s->jobs },
                { "tenant_jobs", &s->tenant_jobs },
                { "results", &s->results },
                { "pending", &s->pending },
                { "cache", &s->cache },
                { "cache_recent", &s->cache_recent },
                { "cache_lru", &s->cache_lru },
                { "cache_ttl", &s->cache_ttl },
                { "idem", &s->idem },
                { "retain", &s->retain },
                { "alias", &s->alias },
                { "refs", &s->refs },
                { "inputs", &s->inputs },
                { "objects", &s->objects },
                { "object_blob", &s->object_blob },
                { "object_items", &s->object_items },
                { "object_usage", &s->object_usage },
                { "object_gone", &s->object_gone },
        };
        rc = 0;
        for (size_t i = 0; rc == 0 && i < sizeof(dbs) / sizeof(dbs[0]); i++)
                rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbs[i].dbi);
        if (rc == 0)
                rc = store_cache_scan(s, txn);
        if (rc == 0)
                rc = retain_rebuild(s, txn);
        if (rc == 0)
                rc = tenant_jobs_rebuild(s, txn);
        if (rc != 0) {
                mdb_txn_abort(txn);
                return store_mdb_errno(rc);
        }
        return store_mdb_errno(mdb_txn_commit(txn));
}

/* What LMDB's lock file takes with its default 126 readers: two 4 KiB pages. */
#define LOCK_MDB_BYTES 8192

/* Opens the file `name` in the store's directory: the fd or -errno. */
static int store_file_open(const char *path, const char *name, int flags)
{
        char file[4096];
        if ((size_t)snprintf(file, sizeof(file), "%s/%s", path, name) >= sizeof(file))
                return -ENAMETOOLONG;
        int fd = open(file, flags | O_CLOEXEC | O_NOFOLLOW, STORE_FILE_MODE);
        return fd < 0 ? -errno : fd;
}

/* Takes the store's lock file (store.h) and writes this process's pid into it:
 * the fd, or -EBUSY when another process holds it. The kernel lets go of it when
 * the process ends, however it ends; a clean stop empties it (store_close), so a
 * pid found in it, or a lock file made now, says the last stop may have left
 * pieces of inputs behind (*ret_unclean). */
static int lock_store(const char *path, bool *ret_unclean)
{
        char pid[24];
        int fd = store_file_open(path, STORE_LOCK_FILE, O_RDWR | O_CREAT | O_EXCL), r;

        *ret_unclean = fd >= 0;
        if (fd == -EEXIST)
                fd = store_file_open(path, STORE_LOCK_FILE, O_RDWR);
        if (fd < 0)
                return fd;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                close(fd);
                return r;
        }
        *ret_unclean |= pread(fd, pid, 1, 0) != 0;
        int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* LMDB sizes its lock file (lock.mdb) with ftruncate and writes it through a shared
 * mapping: on a full filesystem a new one is a sparse file whose first write is a
 * SIGBUS. Its first pages are allocated here instead, where no room is an error. */
static int lock_mdb_allocate(const char *path)
{
        int fd = store_file_open(path, "lock.mdb", O_RDWR | O_CREAT);
        if (fd < 0)
                return fd;
        int r = posix_fallocate(fd, 0, LOCK_MDB_BYTES);
        close(fd);
        return -r;
}

long store_holder(const char *path)
{
        char buf[24] = "";
        int fd = store_file_open(path, STORE_LOCK_FILE, O_RDONLY);
        if (fd < 0)
                return 0;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        return n > 0 ? strtol(buf, NULL, 10) : 0;
}

/* Opens (creating if needed) the store in directory `path`; see store.h. MDB_NOTLS
 * lets read transactions move between threads; BATCH and OFF commit without fsync
 * (MDB_NOSYNC, never with MDB_WRITEMAP, which can corrupt on a crash). */
int store_open(const char *path, uint64_t map_size, enum store_sync_mode sync, struct store **ret)
{
        unsigned flags = MDB_NOTLS;
        struct store *s;
        int dead, r;

        if (!path || !*path || map_size == 0 || map_size > SIZE_MAX)
                return -EINVAL;
        if (sync != STORE_SYNC_FULL && sync != STORE_SYNC_BATCH && sync != STORE_SYNC_OFF)
                return -EINVAL;
        if (sync != STORE_SYNC_FULL)
                flags |= MDB_NOSYNC;

        r = mkdir_p(path, STORE_DIR_MODE);
        if (r < 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->sync = sync;
        bool unclean;
        s->lock_fd = lock_store(path, &unclean);
        if (s->lock_fd < 0) {
                r = s->lock_fd;
                free(s);
                return r;
        }
        r = cache_recent_new(s);
        if (r < 0) {
                close(s->lock_fd);
                free(s);
                return r;
        }
        r = lock_mdb_allocate(path);
        if (r >= 0)
                r = store_mdb_errno(mdb_env_create(&s->env));
        if (r < 0) {
                cache_recent_free(s);
                close(s->lock_fd);
                free(s);
                return r;
        }
        r = store_mdb_errno(mdb_env_set_mapsize(s->env, (size_t)map_size));
        if (r >= 0)
                r = store_mdb_errno(mdb_env_set_maxdbs(s->env, STORE_MAX_DBS));
        if (r >= 0)
                r = store_mdb_errno(mdb_env_open(s->env, path, flags, STORE_FILE_MODE));
        if (r >= 0)
                r = store_mdb_errno(mdb_reader_check(s->env, &dead));
        if (r >= 0)
                r = open_databases(s);
        if (r >= 0 && unclean) {
                /* After a stop that may have left some (a clean one leaves none), in
                 * a transaction of its own, and never in the way of a start: a store
                 * that cannot take the deletes now (full) keeps the leftovers until a
                 * later start. */
                MDB_txn *txn = NULL;
                int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
                if (rc == 0) {
                        rc = orphan_inputs_drop(s, txn);
                        if (rc == 0)
                                rc = mdb_txn_commit(txn);
                        else
                                mdb_txn_abort(txn);
                }
                if (rc) {
                        s->orphan_error = store_mdb_errno(rc);
                        s->orphan_pieces = 0;
                        s->leftovers = true;
                }
        }
        if (r >= 0) {
                MDB_stat st;
                r = store_mdb_errno(mdb_env_stat(s->env, &st));
                if (r >= 0)
                        s->piece = (size_t)st.ms_psize * PIECE_PAGES - PAGE_HEADER_BYTES;
        }
        if (r < 0) {
                mdb_env_close(s->env);
                cache_recent_free(s);
                close(s->lock_fd);
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

/* Closes the environment; see store.h. */
void store_close(struct store *s)
{
        if (!s)
                return;
        mdb_env_close(s->env);
        cache_recent_free(s);
        /* A clean stop: nothing for the next open to sweep, unless a sweep or a
         * big write's cleanup failed (should the truncation fail, the next open
         * only sweeps for nothing). Then the lock is let go, after the
         * environment: no other process opens it before. */
        if (!s->leftovers)
                (void)!ftruncate(s->lock_fd, 0);
        close(s->lock_fd);
        free(s);
}

/* Flushes committed data to disk; see store.h. */
int store_sync(struct store *s)
{
        return store_mdb_errno(mdb_env_sync(s->env, 1));
}

/* ---- transactions ---- */

/* Begins a read or write transaction. One thread must not hold two write
 * transactions of the same store (LMDB deadlocks); read transactions may be begun on
 * any thread. Returns >= 0 or -errno. */
int store_txn_begin(struct store *s, bool write, struct store_txn **ret)
{
        struct store_txn *t = calloc(1, sizeof(*t));
        int r;

        if (!t)
                return -ENOMEM;
        t->s = s;
        t->write = write;
        r = store_mdb_errno(mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn));
        if (r < 0) {
                free(t);
                return r;
        }
        *ret = t;
        return 0;
}

static void delta_apply(struct store *s, const struct cache_delta *d)
{
        atomic_fetch_add(&s->c_bytes, (uint64_t)d->bytes);
        atomic_fetch_add(&s->c_entries, (uint64_t)d->entries);
        atomic_fetch_add(&s->c_hits, d->hits);
        atomic_fetch_add(&s->c_misses, d->misses);
        atomic_fetch_add(&s->c_evicted, d->evicted);
        atomic_fetch_add(&s->c_expired, d->expired);
        atomic_fetch_add(&s->c_purged, d->purged);
        atomic_fetch_add(&s->c_stored, d->stored);
        atomic_fetch_add(&s->c_jobs_purged, d->jobs_purged);
}

/* Commits and frees `t`; a transaction made unusable by an earlier error (map full)
 * is aborted and that error returned. Returns >= 0 or -errno. */
int store_txn_commit(struct store_txn *t)
{
        int r;

        if (t->err < 0) {
                r = t->err;
                mdb_txn_abort(t->txn);
        } else {
                r = store_mdb_errno(mdb_txn_commit(t->txn));
                if (t->write)
                        r = write_errno(t->s, r);
                if (r >= 0 && t->write)
                        delta_apply(t->s, &t->delta);
        }
        if (t->write) {
                if (r >= 0)
                        cache_recent_committed(t);
                else
                        cache_recent_aborted(t);
        }
        free(t);
        return r;
}

/* Aborts and frees `t`. Accepts NULL. */
void store_txn_abort(struct store_txn *t)
{
        if (!t)
                return;
        mdb_txn_abort(t->txn);
        if (t->write)
                cache_recent_aborted(t);
        free(t);
}

/* ---- free room ---- */

/* Pages listed on LMDB's freelist (the free DB, dbi 0) as of the read transaction
 * `txn`: each value is an IDL whose first element is the number of pages it lists. */
static int freelist_pages(MDB_txn *txn, uint64_t *ret)
{
        MDB_cursor *c;
        MDB_val key, val;
        uint64_t pages = 0;
        int rc;

        rc = mdb_cursor_open(txn, 0, &c);
        if (rc)
                return store_mdb_errno(rc);
        while ((rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) == 0) {
                size_t n, cap = val.mv_size / sizeof(size_t);
                size_t first; /* pgno_t, size_t in LMDB 0.9 */

                if (cap == 0)
                        continue;
                memcpy(&first, val.mv_data, sizeof(first));
                n = first < cap - 1 ? (size_t)first : cap - 1;
                pages += n;
        }
        mdb_cursor_close(c);
        if (rc != MDB_NOTFOUND)
                return store_mdb_errno(rc);
        *ret = pages;
        return 0;
}

/* Reports how much can still be written; see store.h. Pages on the freelist that an
 * old read transaction still holds are counted as free although the writer cannot
 * reuse them until that reader ends: read transactions here are short, so the error
 * is brief. The freelist and the used end are read at slightly different moments
 * (the walk in a read transaction, the end from the environment), close enough for a
 * figure that admission checks once a second. */
int store_room(struct store *s, struct store_room *ret)
{
        MDB_envinfo info;
        MDB_stat st;
        MDB_txn *txn;
        struct stat fst;
        struct statvfs vfs;
        uint64_t free_pages, used, file_end, fs_free, grow;
        int fd, r;

        r = store_mdb_errno(mdb_env_stat(s->env, &st));
        if (r >= 0)
                r = store_mdb_errno(mdb_env_get_fd(s->env, &fd));
        if (r < 0)
                return r;
        if (fstat(fd, &fst) < 0 || fstatvfs(fd, &vfs) < 0)
                return -errno;
        r = store_mdb_errno(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
        if (r < 0)
                return r;
        r = freelist_pages(txn, &free_pages);
        mdb_txn_abort(txn);
        if (r >= 0)
                r = store_mdb_errno(mdb_env_info(s->env, &info));
        if (r < 0)
                return r;

        used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
        file_end = (uint64_t)fst.st_size > used ? (uint64_t)fst.st_size : used;
        fs_free = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        /* A file size limit (LimitFSIZE=) is a disk that ends there. */
        uint64_t limit = file_size_limit(), left = limit > file_end ? limit - file_end : 0;
        if (left < fs_free)
                fs_free = left;
        /* Past the file's end the map can only grow as far as the file system lets it. */
        grow = info.me_mapsize > file_end ? info.me_mapsize - file_end : 0;
        *ret = (struct store_room){
                .map_free = free_pages * st.ms_psize + (info.me_mapsize > used ? info.me_mapsize - used : 0),
                .fs_free = fs_free,
                .room = free_pages * st.ms_psize + (file_end - used) + (grow < fs_free ? grow : fs_free),
                .map_size = info.me_mapsize,
                .used = used,
        };
        return 0;
}

size_t store_orphan_pieces(const struct store *s)
{
        return s->orphan_pieces;
}

int store_orphan_error(const struct store *s)
{
        return s->orphan_error;
}
