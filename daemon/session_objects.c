/* The stored-object ops of a session (SPEC §2.4): model.put, model.list,
 * model.delete, vec.put, vec.delete, vec.drop, vec.info, vec.list, for the session's
 * tenant.
 *
 * The loop thread only checks what is cheap (the message's fields, the binary part's
 * dtype and shape) and routes the rest:
 *
 *   put:    loop -> a worker (objects_work_submit: the class validates the upload,
 *           which for a model parses all of its JSON and for a collection checks and
 *           normalises every row) -> loop -> the store writer (the change, committed with the limits checked in
 *           its transaction) -> loop: objects_changed, then the reply.
 *   delete, drop: loop -> the store writer -> loop: the reply.
 *   list, info: loop -> a worker (a read transaction, which no writer holds up:
 *           in the writer's queue a 2 M-row put's commit held them 0.7 s) -> loop:
 *           the reply.
 *
 * One session's ops take effect in the order it sent them (pump): its changes
 * reach the writer in that order (a drop sent after a put waits while the put is
 * checked, and a put checked sooner waits for an earlier one); a list or an info
 * starts once the changes before it are answered, and a change after it waits for
 * its answer. So a put, an info and a drop in one pipeline answer the put's
 * version, then not_found.
 *
 * A reply that acknowledges a change is sent only after its commit, so it survives
 * kill -9 like an accepted job. */
#include "session_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "jobs.h"
#include "log.h"
#include "membudget.h"
#include "objects.h"
#include "risk_score/model.h"
#include "store.h"
#include "storeq.h"
#include "util.h"
#include "vec_search/collection.h"

/* One object op in flight, from its message to its reply. */
struct obj_req {
        struct kilnd *d;
        uint64_t session_id;
        enum kiln_op kop;
        json_t *ref;
        json_t *root;              /* the message: ids point into it */
        const struct kiln_object_class *cls;
        char tenant[STORE_OBJECT_TENANT_MAX + 1];
        char name[STORE_OBJECT_NAME_MAX + 1];
        struct part *part;         /* model.put: "model"; vec.put: "vectors" */
        uint64_t mem_held;         /* its bytes, held in memory.max_bytes (MEM_INPUTS) until freed */
        uint64_t check_held;       /* model.put: what its check may hold (MEM_RESULTS) until done */
        uint64_t room_promised;    /* a put let through: the store room promised to it until freed */

        /* vec.put, vec.delete */
        struct kiln_object_id *ids;
        struct store_object_item *items;
        size_t n;
        uint32_t dim;
        enum kiln_metric metric;   /* 0: vec.put named none (the collection's own) */
        uint8_t meta[RISK_MODEL_META_BYTES];
        size_t meta_len;

        /* validation, on a worker */
        struct objects_work work;
        int status;
        struct kiln_object_info info;
        struct kiln_error err;

        /* the store */
        struct store_op op;
        struct mail mail;
        /* Its turn among the session's object ops (pump). */
        bool ordered;              /* it takes part (every op but a refused one) */
        bool listed;               /* waiting in the session's objops list */
        bool read;                 /* a list or an info (else a change) */
        bool ready;                /* a change checked (or a read): it goes as op.type */
        bool check_waits;          /* vec.put: its check waits for an earlier change (check_or_wait) */
        struct obj_req *next;
        struct obj_req *wnext;     /* in the session's objops_writing */
};

static bool is_model(const struct obj_req *r)
{
        return r->cls == &risk_model_class;
}

/* The field naming the object, and the one naming its data. */
static const char *name_field(const struct obj_req *r)
{
        return is_model(r) ? "name" : "collection";
}

static const char *data_field(const struct obj_req *r)
{
        return is_model(r) ? "model" : "vectors";
}

static void unlist(struct session *s, struct obj_req *r);
static void unlist_writing(struct session *s, struct obj_req *r);
static void pump(struct session *s);
static void start_waiting_checks(struct session *s);

static void req_free(struct obj_req *r)
{
        if (!r)
                return;
        if (r->ordered) {
                struct session *s = session_find(r->d, r->session_id);
                if (s) {
                        if (r->listed) /* refused before its turn */
                                unlist(s, r);
                        else if (r->read)
                                s->objops_reading--;
                        else
                                s->objops_at_writer--, unlist_writing(s, r);
                        start_waiting_checks(s);
                        pump(s);
                }
        }
        json_decref(r->ref);
        json_decref(r->root);
        part_free(r->part);
        if (r->mem_held)
                membudget_give(r->d->mem, MEM_INPUTS, r->mem_held);
        if (r->check_held)
                membudget_give(r->d->mem, MEM_RESULTS, r->check_held);
        if (r->room_promised)
                jobs_store_unpromise(r->d->jobs, r->room_promised);
        free(r->ids);
        free(r->items);
        store_object_info_clear(&r->op.object_info);
        store_object_infos_free(r->op.object_list, r->op.object_n);
        free(r->op.result_out);
        free(r);
}

static struct obj_req *req_new(struct session *s, const struct proto_req *rq)
{
        struct obj_req *r = calloc(1, sizeof(*r));

        if (!r)
                return NULL;
        r->d = s->d;
        r->session_id = s->id;
        r->kop = rq->op;
        r->ref = rq->ref ? json_incref(rq->ref) : NULL;
        r->root = json_incref(rq->root);
        bool model = rq->op == KOP_MODEL_PUT || rq->op == KOP_MODEL_LIST || rq->op == KOP_MODEL_DELETE;
        r->cls = model ? &risk_model_class : &vec_collection_class;
        snprintf(r->tenant, sizeof(r->tenant), "%s", s->who.tenant);
        if (rq->object.name)
                snprintf(r->name, sizeof(r->name), "%s", rq->object.name);
        return r;
}

/* Sends an error to the request's session (when it is still there) and frees it. */
__attribute__((format(printf, 4, 5)))
static void req_fail(struct obj_req *r, enum kiln_err code, const char *field, const char *fmt, ...)
{
        struct session *s = session_find(r->d, r->session_id);
        char msg[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (s)
                session_send_error(s, r->ref, code, field, "%s", msg);
        req_free(r);
}

/* Sends a reply to the request's session (when it is still there) and frees it. */
static void req_reply(struct obj_req *r, json_t *reply)
{
        struct session *s = session_find(r->d, r->session_id);

        if (s && reply)
                session_send_json(s, reply, r->ref);
        else
                json_decref(reply);
        req_free(r);
}

/* ---- replies ---- */

static json_t *model_json(const char *name, const struct store_object_info *info, uint64_t trees, uint32_t features)
{
        return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "op", "model", "name", name, "version",
                         (json_int_t)info->version, "trees", (json_int_t)trees, "features", (json_int_t)features,
                         "bytes", (json_int_t)info->bytes);
}

/* A model's entry from its stored header (its meta holds trees and features). */
static json_t *model_entry(const struct store_object_info *info)
{
        uint64_t trees = 0;
        uint32_t features = 0;
        json_t *e;

        if (risk_model_meta_decode(info->meta, info->meta_len, &trees, &features) < 0)
                log_warning("stored model \"%s\" has no readable description", info->name);
        e = model_json(info->name, info, trees, features);
        if (e)
                json_object_del(e, "op");
        return e;
}

/* The `vec` reply, or a list entry (op NULL), of a collection's stored header. NULL
 * when its meta cannot be read. */
static json_t *vec_json(const char *op, const char *name, const struct store_object_info *info)
{
        enum kiln_metric metric;
        uint32_t dim;
        json_t *o;

        if (kiln_vec_meta_decode(info->meta, info->meta_len, &metric, &dim) < 0)
                return NULL;
        o = op ? json_pack("{s:s}", "op", op) : json_object();
        if (o && json_object_update_new(o, json_pack("{s:s, s:I, s:I, s:I, s:s}", "collection", name, "version",
                                                 (json_int_t)info->version, "count", (json_int_t)info->count, "dim",
                                                 (json_int_t)dim, "metric", kiln_metric_name(metric))) < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *list_json(const struct obj_req *r)
{
        json_t *arr = json_array();

        for (size_t i = 0; arr && i < r->op.object_n; i++) {
                const struct store_object_info *info = &r->op.object_list[i];
                json_t *e = is_model(r) ? model_entry(info) : vec_json(NULL, info->name, info);
                if (!e) {
                        log_warning("stored collection \"%s\" of tenant %s has an unreadable meta; not listed",
                                    info->name, r->tenant);
                        continue;
                }
                json_array_append_new(arr, e);
        }
        return is_model(r) ? json_pack("{s:s, s:o}", "op", "models", "models", arr)
                           : json_pack("{s:s, s:o}", "op", "collections", "collections", arr);
}

/* ---- the store's answer ---- */

static void fail_store(struct obj_req *r, int status)
{
        const struct kiln_config *c = r->d->cfg;
        const char *what = is_model(r) ? "model" : "collection";

        switch (status) {
        case -ENOENT:
                if (r->op.type == STORE_OP_OBJECT_ITEMS_PUT) {
                        req_fail(r, KERR_BAD_PARAMS, "metric",
                                 "collection \"%s\" was dropped meanwhile; \"metric\" (cosine, ip or l2) is "
                                 "required to create it again; nothing was stored",
                                 r->name);
                        return;
                }
                req_fail(r, KERR_NOT_FOUND, name_field(r), "no %s \"%s\"", what, r->name);
                return;
        case -EFBIG:
                req_fail(r, KERR_TOO_LARGE, data_field(r),
                         "the %s \"%s\" would hold more than limits.max_object_bytes (%llu bytes); nothing was stored",
                         what, r->name, (unsigned long long)c->limits.max_object_bytes);
                return;
        case -EDQUOT:
                req_fail(r, KERR_TOO_LARGE, name_field(r),
                         "this tenant already holds limits.max_objects_per_tenant (%u) models and collections; "
                         "delete one first",
                         (unsigned)c->limits.max_objects_per_tenant);
                return;
        case -EOVERFLOW:
                req_fail(r, KERR_TOO_LARGE, data_field(r),
                         "this tenant's models and collections would hold more than limits.max_tenant_bytes "
                         "(%llu bytes); nothing was stored",
                         (unsigned long long)c->limits.max_tenant_bytes);
                return;
        case -EEXIST:
                req_fail(r, KERR_BAD_PARAMS, "metric",
                         "collection \"%s\" changed meanwhile and now has another metric or dim than this put; "
                         "nothing was stored",
                         r->name);
                return;
        case -ENOSPC:
                req_fail(r, KERR_UNAVAILABLE, NULL,
                         "the object store has no room: its map (store.map_size_gb) or the file system under "
                         "store.path is full; nothing was stored");
                return;
        default:
                log_error("the store failed a %s op on %s \"%s\" of tenant %s: %s", kiln_op_name(r->kop), what,
                          r->name, r->tenant, strerror(-status));
                req_fail(r, KERR_INTERNAL, NULL, "the object store failed: %s", strerror(-status));
                return;
        }
}

/* The reply to the request whose store op is done (r->op.status, its outputs). */
/* The store's own bytes around an item: its node header and its slot in the page. */
#define PUT_ITEM_NODE_BYTES 16

/* What a put will take of the store, at most: a model's JSON as it is; a
 * collection's items (each keyed by the object's prefix and its id, its row the
 * value) in leaf pages that may be only half full, as pages split in two are. */
static uint64_t put_bytes(const struct obj_req *r)
{
        uint64_t bytes = 4096 + (r->part ? r->part->bytes : 0);
        if (r->ids) {
                size_t prefix = strlen(r->tenant) + strlen(r->cls->name) + strlen(r->name) + 3;
                bytes += r->part->bytes;
                for (size_t i = 0; i < r->n; i++)
                        bytes += 2 * (prefix + r->ids[i].len + PUT_ITEM_NODE_BYTES);
        }
        return bytes;
}

static void store_answered(struct obj_req *r)
{
        struct kilnd *d = r->d;
        const struct store_object_info *info = &r->op.object_info;
        json_t *reply = NULL;

        if (r->op.status < 0) {
                fail_store(r, r->op.status);
                return;
        }
        switch (r->op.type) {
        case STORE_OP_OBJECT_PUT:
        case STORE_OP_OBJECT_ITEMS_PUT:
                jobs_room_used(d->jobs, put_bytes(r)); /* until the room is measured again */
                /* fall through */
        case STORE_OP_OBJECT_ITEMS_DELETE:
                objects_changed(d->objects, r->tenant, r->cls->name, r->name, info->version, info->meta,
                                info->meta_len);
                break;
        case STORE_OP_OBJECT_DROP:
                objects_changed(d->objects, r->tenant, r->cls->name, r->name, 0, NULL, 0);
                break;
        default:
                break;
        }
        switch (r->op.type) {
        case STORE_OP_OBJECT_PUT:
                reply = model_json(r->name, info, r->info.trees, r->info.features);
                break;
        case STORE_OP_OBJECT_ITEMS_PUT:
        case STORE_OP_OBJECT_ITEMS_DELETE:
        case STORE_OP_OBJECT_GET:
                reply = vec_json("vec", r->name, info);
                if (!reply) {
                        req_fail(r, KERR_INTERNAL, "collection", "the stored collection \"%s\" cannot be read",
                                 r->name);
                        return;
                }
                break;
        case STORE_OP_OBJECT_DROP:
                reply = json_pack("{s:s}", "op", "ok");
                break;
        case STORE_OP_OBJECT_LIST:
                reply = list_json(r);
                break;
        default:
                break;
        }
        req_reply(r, reply);
}

static void on_store_mail(struct mail *m)
{
        struct obj_req *r = container_of(m, struct obj_req, mail);

        storeq_answered(r->d->storeq);
        store_answered(r);
}

static void on_store_done(struct store_op *op)
{
        struct obj_req *r = container_of(op, struct obj_req, op);
        r->mail.fn = on_store_mail;
        mailbox_post(r->d->mailbox, &r->mail);
}

static void write_model(struct store_op *op, uint8_t *dst, size_t offset, size_t len)
{
        struct obj_req *r = container_of(op, struct obj_req, op);
        memcpy(dst, r->part->data + offset, len);
}

/* Hands the request's op to the writer. */
static void ask_store(struct obj_req *r, enum store_op_type type)
{
        const struct kiln_config *c = r->d->cfg;

        r->op.type = type;
        r->op.object = (struct store_object_ref){ .tenant = r->tenant, .cls = r->cls->name, .name = r->name };
        r->op.done = on_store_done;
        r->op.limits = (struct store_object_limits){ .max_object_bytes = c->limits.max_object_bytes,
                                                     .max_objects_per_tenant = c->limits.max_objects_per_tenant,
                                                     .max_tenant_bytes = c->limits.max_tenant_bytes };
        switch (type) {
        case STORE_OP_OBJECT_PUT:
                r->op.meta = r->meta;
                r->op.meta_len = r->meta_len;
                r->op.blob_size = r->part->bytes;
                r->op.write_blob = write_model;
                break;
        case STORE_OP_OBJECT_ITEMS_PUT:
                r->op.meta = r->meta;
                r->op.meta_len = r->meta_len;
                /* Without a metric the put adds to the collection as it was checked: one
                 * dropped meanwhile is not made again with the metric it had. */
                r->op.must_exist = !r->metric;
                /* fall through */
        case STORE_OP_OBJECT_ITEMS_DELETE:
                r->op.items = r->items;
                r->op.n_items = r->n;
                break;
        default:
                break;
        }
        storeq_submit_loop(r->d->storeq, &r->op);
}

/* A list or an info, on a worker: a read transaction sees every committed change
 * and waits for no writer. */
static void read_run(struct objects_work *w)
{
        struct obj_req *r = container_of(w, struct obj_req, work);
        struct store_txn *t;

        r->op.status = store_txn_begin(r->d->store, false, &t);
        if (r->op.status < 0)
                return;
        r->op.status = r->op.type == STORE_OP_OBJECT_GET
                               ? store_object_get(t, &r->op.object, &r->op.object_info)
                               : store_object_list(t, r->tenant, r->cls->name, &r->op.object_list, &r->op.object_n);
        store_txn_abort(t);
}

static void on_read(struct mail *m)
{
        struct obj_req *r = container_of(m, struct obj_req, work.mail);

        r->d->object_reads--;
        store_answered(r);
}

static void start_read(struct obj_req *r)
{
        r->d->object_reads++;
        r->work.run = read_run;
        r->work.prompt = true;
        r->work.mail.fn = on_read;
        objects_work_submit(r->d->objects, &r->work);
}

/* ---- one session's order ---- */

static void unlist(struct session *s, struct obj_req *r)
{
        struct obj_req **p = &s->objops_head, *prev = NULL;

        while (*p && *p != r) {
                prev = *p;
                p = &(*p)->next;
        }
        if (*p) {
                *p = r->next;
                if (s->objops_tail == r)
                        s->objops_tail = prev;
                s->d->objops_waiting--;
        }
        r->next = NULL;
        r->listed = false;
}

/* Starts the session's ops whose turn it is: a read once no change of the session
 * is at the writer, a checked change once no read of it runs (the writer keeps
 * the order of what it is handed). Nothing once the loop has stopped: what waits
 * then goes with the session. */
static void pump(struct session *s)
{
        struct obj_req *r;

        while (!s->d->quit && (r = s->objops_head) && r->ready) {
                if (r->read ? s->objops_at_writer > 0 : s->objops_reading > 0)
                        return;
                unlist(s, r);
                if (r->read) {
                        s->objops_reading++;
                        start_read(r);
                } else {
                        s->objops_at_writer++;
                        r->wnext = s->objops_writing;
                        s->objops_writing = r;
                        ask_store(r, r->op.type);
                }
        }
}

static void unlist_writing(struct session *s, struct obj_req *r)
{
        for (struct obj_req **p = &s->objops_writing; *p; p = &(*p)->wnext)
                if (*p == r) {
                        *p = r->wnext;
                        break;
                }
        r->wnext = NULL;
}

/* Whether a is a change of the object r names. */
static bool changes_same(const struct obj_req *a, const struct obj_req *r)
{
        return !a->read && a->cls == r->cls && !strcmp(a->name, r->name);
}

/* Whether the session has a change of r's object before r that is not stored yet:
 * waiting for its turn (ahead of r in the list) or at the writer. */
static bool earlier_change_pending(const struct session *s, const struct obj_req *r)
{
        for (const struct obj_req *a = s->objops_head; a && a != r; a = a->next)
                if (changes_same(a, r))
                        return true;
        for (const struct obj_req *a = s->objops_writing; a; a = a->wnext)
                if (changes_same(a, r))
                        return true;
        return false;
}

static void validate_vectors(struct objects_work *w);
static void on_validated(struct mail *m);

/* A vec.put's check reads the collection as stored (its metric, when the put names
 * none, decides whether rows are normalised; a put that creates it needs one): it
 * waits until the session's earlier changes of that collection are stored, so that
 * a put pipelined behind the put that creates the collection, or behind its drop,
 * is checked against what they made. */
static void check_or_wait(struct session *s, struct obj_req *r)
{
        r->check_waits = earlier_change_pending(s, r);
        if (r->check_waits)
                return;
        r->work.run = validate_vectors;
        r->work.mail.fn = on_validated;
        objects_work_submit(s->d->objects, &r->work);
}

/* Starts the checks that waited for changes now stored (or refused). */
static void start_waiting_checks(struct session *s)
{
        if (s->d->quit)
                return; /* what waits goes with the session (session_objects_close) */
        for (struct obj_req *r = s->objops_head; r; r = r->next)
                if (r->check_waits)
                        check_or_wait(s, r);
}

/* Takes its place among the session's object ops (see the top of this file). */
static void objop_list(struct session *s, struct obj_req *r)
{
        r->ordered = r->listed = true;
        s->d->objops_waiting++;
        if (s->objops_tail)
                s->objops_tail->next = r;
        else
                s->objops_head = r;
        s->objops_tail = r;
}

/* A change checked, or a read: it goes at its turn. */
static void objop_ready(struct session *s, struct obj_req *r, enum store_op_type type)
{
        r->ready = true;
        r->op.type = type;
        r->op.object = (struct store_object_ref){ .tenant = r->tenant, .cls = r->cls->name, .name = r->name };
        pump(s);
}

void session_objects_close(struct session *s)
{
        /* A change being checked on a worker finds the session gone (on_validated);
         * the others go now. */
        while (s->objops_head) {
                struct obj_req *r = s->objops_head;
                unlist(s, r);
                if (r->ready || r->check_waits)
                        req_free(r);
        }
}

/* ---- puts: validated on a worker, then stored ---- */

static void on_validated(struct mail *m)
{
        struct obj_req *r = container_of(m, struct obj_req, work.mail);
        struct kilnd *d = r->d;

        if (r->check_held) {
                membudget_give(d->mem, MEM_RESULTS, r->check_held);
                r->check_held = 0;
        }

        /* Gone, or the loop has stopped: nothing was acknowledged, nothing is stored. */
        struct session *s = d->quit ? NULL : session_find(d, r->session_id);
        if (!s) {
                req_free(r);
                return;
        }
        if (r->status == -EINVAL) {
                req_fail(r, KERR_BAD_PARAMS, r->err.field[0] ? r->err.field : data_field(r), "%s", r->err.message);
                return;
        }
        if (r->status < 0) {
                log_error("checking a %s for tenant %s failed: %s", kiln_op_name(r->kop), r->tenant,
                          strerror(-r->status));
                req_fail(r, KERR_INTERNAL, NULL, "checking the %s failed: %s", data_field(r), strerror(-r->status));
                return;
        }
        /* As a submission is: nothing acknowledged that would take the room kept free
         * (what lets a drop or a delete still be written) or promised to accepted jobs. */
        char reason[256];
        if (jobs_store_refuses(d->jobs, put_bytes(r), is_model(r) ? "this model" : "these vectors", reason)) {
                req_fail(r, KERR_UNAVAILABLE, NULL, "%s; nothing was stored", reason);
                return;
        }
        r->room_promised = put_bytes(r);
        jobs_store_promise(d->jobs, r->room_promised);
        if (is_model(r)) {
                risk_model_meta_encode(r->info.trees, r->info.features, r->meta);
                r->meta_len = RISK_MODEL_META_BYTES;
        }
        objop_ready(s, r, is_model(r) ? STORE_OP_OBJECT_PUT : STORE_OP_OBJECT_ITEMS_PUT);
}

/* Worker: the whole XGBoost JSON parsed and compiled once, to refuse what the scorer
 * could not use and to learn its trees and features. */
static void validate_model(struct objects_work *w)
{
        struct obj_req *r = container_of(w, struct obj_req, work);
        struct kiln_object_put put = { .blob = r->part->data, .blob_bytes = r->part->bytes };

        r->status = risk_model_class.validate(&put, &r->info, &r->err);
}

/* Worker: the collection's current meta (its metric when the put names none, and
 * what the put must agree with), then the class's checks, which normalise cosine
 * rows in place; then the items the writer will store. */
static void validate_vectors(struct objects_work *w)
{
        struct obj_req *r = container_of(w, struct obj_req, work);
        struct store_object_ref ref = { .tenant = r->tenant, .cls = r->cls->name, .name = r->name };
        struct store_object_info cur = { 0 };
        struct store_txn *t;
        enum kiln_metric metric = r->metric;
        uint32_t dim;
        int k;

        k = store_txn_begin(r->d->store, false, &t);
        if (k >= 0) {
                k = store_object_get(t, &ref, &cur);
                store_txn_abort(t);
        }
        if (k < 0 && k != -ENOENT) {
                r->status = k;
                return;
        }
        bool exists = k >= 0;
        if (!metric && !exists) {
                snprintf(r->err.field, sizeof(r->err.field), "metric");
                snprintf(r->err.message, sizeof(r->err.message),
                         "\"metric\" (cosine, ip or l2) is required to create collection \"%s\"", r->name);
                r->status = -EINVAL;
                goto out;
        }
        if (!metric && kiln_vec_meta_decode(cur.meta, cur.meta_len, &metric, &dim) < 0) {
                r->status = -EIO;
                goto out;
        }
        kiln_vec_meta_encode(metric, r->dim, r->meta);
        r->meta_len = KILN_VEC_META_BYTES;
        struct kiln_object_put put = {
                .meta = r->meta,
                .meta_len = r->meta_len,
                .current_meta = exists ? cur.meta : NULL,
                .current_meta_len = exists ? cur.meta_len : 0,
                .ids = r->ids,
                .n = r->n,
                .rows = (float *)r->part->data,
                .rows_bytes = r->part->bytes,
        };
        r->status = vec_collection_class.validate(&put, &r->info, &r->err);
        if (r->status < 0)
                goto out;
        r->items = calloc(r->n, sizeof(*r->items));
        if (!r->items) {
                r->status = -ENOMEM;
                goto out;
        }
        size_t row = (size_t)r->dim * sizeof(float);
        for (size_t i = 0; i < r->n; i++)
                r->items[i] = (struct store_object_item){ .id = r->ids[i].data, .id_len = r->ids[i].len,
                                                          .data = r->part->data + i * row, .size = row };
out:
        store_object_info_clear(&cur);
}

/* ---- the ops ---- */

/* A message of these ops takes at most its own part: any other sent with its ref is
 * refused (and dropped) as a submission's would be. */
static bool no_other_parts(struct session *s, struct obj_req *r)
{
        const char *left = s->parts && r->ref ? parts_left(s->parts, r->ref) : NULL;

        if (!left)
                return true;
        char field[64];
        snprintf(field, sizeof(field), "parts.%s", left);
        session_send_error(s, r->ref, KERR_BAD_PARAMS, field, "%s takes no binary part \"%s\"", kiln_op_name(r->kop),
                           left);
        parts_drop(s->parts, r->ref);
        return false;
}

/* Takes the op's binary part. On failure the error is sent, whatever else was sent
 * with the message's ref is dropped, and false returned. */
static bool take_part(struct session *s, struct obj_req *r)
{
        struct parts *ps = session_parts(s);
        struct proto_error err = { 0 };
        const char *field = data_field(r);
        int k;

        if (!ps) {
                session_send_error(s, r->ref, KERR_INTERNAL, NULL, "out of memory");
                return false;
        }
        /* Its bytes stay in the memory budget while the request holds them, as a
         * job's inputs do: uploads waiting for a worker or the store are bounded by
         * memory.max_bytes like everything else. */
        k = parts_take(ps, r->ref, field, &r->part, &r->mem_held, &err);
        if (k == -ENOENT)
                session_send_error(s, r->ref, KERR_BAD_PARAMS, field,
                                   "%s needs the binary part \"%s\" (%s), sent with this message's \"ref\" before it",
                                   kiln_op_name(r->kop), field,
                                   is_model(r) ? "the XGBoost JSON file as bytes" : "f32[n][dim], one row per id");
        else if (k < 0)
                session_send_error(s, r->ref, err.code, err.field[0] ? err.field : field, "%s", err.message);
        else if (r->part->bytes > s->d->cfg->limits.max_object_bytes)
                session_send_error(s, r->ref, KERR_TOO_LARGE, field,
                                   "part \"%s\" of %zu bytes is more than limits.max_object_bytes (%llu bytes)", field,
                                   r->part->bytes, (unsigned long long)s->d->cfg->limits.max_object_bytes);
        else
                return no_other_parts(s, r);
        if (r->ref)
                parts_drop(ps, r->ref);
        return false;
}

/* The kind that has a built-in object of r's class by r's name (risk.score's
 * "altman-z"), or NULL: a stored object of that name could never be used. */
static const struct kiln_kind *builtin_of(const struct obj_req *r)
{
        for (size_t i = 0; kiln_kinds[i]; i++) {
                const struct kiln_kind *k = kiln_kinds[i];
                for (size_t b = 0; k->object == r->cls && k->builtin_objects && k->builtin_objects[b]; b++)
                        if (strcmp(k->builtin_objects[b], r->name) == 0)
                                return k;
        }
        return NULL;
}

static void op_model_put(struct session *s, struct obj_req *r)
{
        const struct kiln_kind *k = builtin_of(r);

        if (k) {
                session_send_error(s, r->ref, KERR_BAD_PARAMS, name_field(r),
                                   "\"%s\" is a built-in model of %s; a stored model needs another name", r->name,
                                   k->name);
                if (s->parts && r->ref)
                        parts_drop(s->parts, r->ref);
                goto fail;
        }
        if (!take_part(s, r))
                goto fail;
        if ((r->part->dtype != KILN_DTYPE_BYTES && r->part->dtype != KILN_DTYPE_U8) || r->part->ndim != 1) {
                session_send_error(s, r->ref, KERR_BAD_PARAMS, "model",
                                   "the part \"model\" must be the JSON file's bytes (dtype bytes, one dimension)");
                goto fail;
        }
        /* The check parses and compiles the whole model on a worker: what that may
         * hold is taken from memory.max_bytes first, as a running job's result is. */
        uint64_t need = risk_model_work_bytes(r->part->bytes);
        if (s->d->mem) {
                struct membudget_view v;
                membudget_view(s->d->mem, &v);
                /* Its upload is held from the same room: what can never fit together
                 * is too_large, not "retry later". */
                if (need > v.take_max || r->mem_held > v.take_max - need) {
                        session_send_error(s, r->ref, KERR_TOO_LARGE, "model",
                                           "checking a model of %zu bytes takes up to %llu bytes of memory besides "
                                           "the upload, more than memory.max_bytes lets kilnd hold (%llu)",
                                           r->part->bytes, (unsigned long long)need, (unsigned long long)v.take_max);
                        goto fail;
                }
                if (!membudget_try_take(s->d->mem, MEM_RESULTS, need)) {
                        session_send_error(s, r->ref, KERR_UNAVAILABLE, NULL,
                                           "kilnd's memory budget (memory.max_bytes) has no room to check a model "
                                           "of %zu bytes now (up to %llu bytes while it is read); retry later",
                                           r->part->bytes, (unsigned long long)need);
                        goto fail;
                }
                r->check_held = need;
        }
        r->work.run = validate_model;
        r->work.mail.fn = on_validated;
        objects_work_submit(s->d->objects, &r->work);
        return;
fail:
        req_free(r);
}

static void op_vec_put(struct session *s, struct obj_req *r, const struct proto_req *rq)
{
        json_t *ids = rq->object.ids;

        if (rq->object.metric && kiln_metric_from_name(rq->object.metric, &r->metric) < 0) {
                session_send_error(s, r->ref, KERR_BAD_PARAMS, "metric", "\"metric\" must be cosine, ip or l2");
                goto fail;
        }
        r->n = json_array_size(ids);
        if (r->n == 0) {
                session_send_error(s, r->ref, KERR_BAD_PARAMS, "ids", "\"ids\" must hold at least one id");
                goto fail;
        }
        if (!take_part(s, r))
                goto fail;
        const struct part *p = r->part;
        if (p->dtype != KILN_DTYPE_F32 || p->ndim != 2 || p->shape[1] < 1 || p->shape[1] > KILN_VEC_DIM_MAX) {
                session_send_error(s, r->ref, KERR_BAD_PARAMS, "vectors",
                                   "the part \"vectors\" must be f32[n][dim] with dim 1 to %u", KILN_VEC_DIM_MAX);
                goto fail;
        }
        if (p->shape[0] != r->n) {
                session_send_error(s, r->ref, KERR_BAD_PARAMS, "ids",
                                   "\"ids\" holds %zu ids for %llu rows of vectors: one id per row", r->n,
                                   (unsigned long long)p->shape[0]);
                goto fail;
        }
        r->dim = (uint32_t)p->shape[1];
        r->ids = calloc(r->n, sizeof(*r->ids));
        if (!r->ids) {
                session_send_error(s, r->ref, KERR_INTERNAL, NULL, "out of memory");
                goto fail;
        }
        for (size_t i = 0; i < r->n; i++) {
                json_t *v = json_array_get(ids, i);
                r->ids[i] = (struct kiln_object_id){ .data = json_string_value(v), .len = json_string_length(v) };
        }
        check_or_wait(s, r);
        return;
fail:
        req_free(r);
}

static void op_vec_delete(struct session *s, struct obj_req *r, const struct proto_req *rq)
{
        json_t *ids = rq->object.ids;

        r->n = json_array_size(ids);
        if (r->n == 0) {
                session_send_error(s, r->ref, KERR_BAD_PARAMS, "ids", "\"ids\" must hold at least one id");
                goto fail;
        }
        r->items = calloc(r->n, sizeof(*r->items));
        if (!r->items) {
                session_send_error(s, r->ref, KERR_INTERNAL, NULL, "out of memory");
                goto fail;
        }
        for (size_t i = 0; i < r->n; i++) {
                json_t *v = json_array_get(ids, i);
                size_t len = json_string_length(v);
                if (len < 1 || len > KILN_VEC_ID_MAX) {
                        char field[32];
                        snprintf(field, sizeof(field), "ids[%zu]", i);
                        session_send_error(s, r->ref, KERR_BAD_PARAMS, field, "%s must be 1 to %u bytes long, not %zu",
                                           field, KILN_VEC_ID_MAX, len);
                        goto fail;
                }
                r->items[i] = (struct store_object_item){ .id = (const uint8_t *)json_string_value(v), .id_len = len };
        }
        objop_ready(s, r, STORE_OP_OBJECT_ITEMS_DELETE);
        return;
fail:
        req_free(r);
}

void session_op_object(struct session *s, const struct proto_req *rq)
{
        bool change = rq->op == KOP_MODEL_PUT || rq->op == KOP_MODEL_DELETE || rq->op == KOP_VEC_PUT ||
                      rq->op == KOP_VEC_DELETE || rq->op == KOP_VEC_DROP;

        if (change && s->d->draining) {
                session_send_error(s, rq->ref, KERR_SHUTTING_DOWN, NULL,
                                   "kilnd is shutting down and takes no changes to models or collections");
                if (s->parts && rq->ref)
                        parts_drop(s->parts, rq->ref);
                return;
        }
        struct obj_req *r = req_new(s, rq);
        if (!r) {
                session_send_error(s, rq->ref, KERR_INTERNAL, NULL, "out of memory");
                return;
        }
        objop_list(s, r);
        switch (rq->op) {
        case KOP_MODEL_PUT:
                op_model_put(s, r);
                return;
        case KOP_VEC_PUT:
                op_vec_put(s, r, rq);
                return;
        default:
                break;
        }
        if (!no_other_parts(s, r)) {
                req_free(r);
                return;
        }
        switch (rq->op) {
        case KOP_MODEL_LIST:
        case KOP_VEC_LIST:
                r->read = true;
                objop_ready(s, r, STORE_OP_OBJECT_LIST);
                break;
        case KOP_MODEL_DELETE:
        case KOP_VEC_DROP:
                objop_ready(s, r, STORE_OP_OBJECT_DROP);
                break;
        case KOP_VEC_INFO:
                r->read = true;
                objop_ready(s, r, STORE_OP_OBJECT_GET);
                break;
        case KOP_VEC_DELETE:
                op_vec_delete(s, r, rq);
                break;
        default:
                req_fail(r, KERR_UNKNOWN_OP, "op", "unknown op");
                break;
        }
}
