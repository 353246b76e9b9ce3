/* kilnctl's stored-object commands (SPEC §2.4): XGBoost models for risk.score
 * (`model put|list|delete`) and vector collections for vec.search (`vec
 * put|info|list|delete|drop`).
 *
 * An upload sends its binary part as KLNB frames ahead of the message that names
 * it by "ref": one frame when the part fits in the server's max_message_bytes,
 * else several, each carrying its byte "offset". Files are read one frame at a
 * time, so an upload holds at most two frames in memory whatever its size. The ids
 * of one vec.put or vec.delete travel in its text message, so a long list is sent
 * as several puts (or deletes), each within one message. A put's reply may take
 * as long as the server needs to check and store a big object: it is awaited
 * without limit unless --timeout-s says otherwise (a lost connection ends it). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl.h"
#include "kilnctl.h"
#include "ws.h"

#define FRAME_CAP (16u << 20) /* payload bytes of one frame at most */
#define MSG_ROOM 1024         /* bytes of a message kept for all but its ids */

static const char *const model_keys[] = { "name", "version", "trees", "features", "bytes", NULL };
static const char *const vec_keys[] = { "collection", "version", "count", "dim", "metric", NULL };

static int64_t remaining_ms(const struct conn *c)
{
        if (c->deadline < 0)
                return -1;
        int64_t left = c->deadline - now_ms();
        return left > 0 ? left : 0;
}

/* Reads what has arrived during an upload: an error that echoes `ref` (a frame
 * refused, say too_large) ends it. Returns 0, or 1 after printing the error. */
static int early_error(struct conn *c, int ref)
{
        struct ctl_msg *m;

        while (ctl_ws_try_recv(c->ws, &m) >= 0) {
                json_t *j = m->binary ? NULL : json_loadb((const char *)m->data, m->len, 0, NULL);
                ctl_msg_free(m);
                json_t *jr = json_object_get(j, "ref");
                if (is_op(j, "error") && json_is_integer(jr) && json_integer_value(jr) == ref) {
                        print_error(j);
                        json_decref(j);
                        return 1;
                }
                json_decref(j);
        }
        return 0;
}

/* Where a part's bytes come from: `total` bytes at `offset` in an open file. */
struct part_src {
        const char *path;
        int fd;
        uint64_t offset;
        uint64_t total;
};

/* Sends bytes [src->offset, +total) of a file as part `part` of the message with
 * `ref`, in as many frames as the server's max_message_bytes asks. Returns 0 or an
 * exit code after printing why. */
static int upload_part(struct conn *c, int ref, const char *part, const char *dtype, int ndim, const uint64_t *shape,
                       const struct part_src *src)
{
        size_t chunk;
        bool multi;
        int r = ctl_frame_plan(ref, part, dtype, ndim, shape, src->total, c->max_message, FRAME_CAP, &chunk, &multi);

        if (r == -EMSGSIZE) {
                fprintf(stderr, "kilnctl: the server's max_message_bytes (%zu) leaves no room for a part frame\n",
                        c->max_message);
                return 1;
        }
        uint8_t *buf = r >= 0 ? malloc(chunk) : NULL;
        if (!buf) {
                fprintf(stderr, "kilnctl: out of memory\n");
                return 1;
        }
        bool bar = multi && isatty(STDERR_FILENO) && !getenv("KILNCTL_NO_PROGRESS");
        int code = 0;
        for (uint64_t off = 0; off < src->total && !code;) {
                size_t n = src->total - off < chunk ? (size_t)(src->total - off) : chunk;
                uint8_t *prefix = NULL;
                size_t plen = 0;
                r = ctl_pread_all(src->fd, buf, n, src->offset + off);
                if (r < 0) {
                        fprintf(stderr, "kilnctl: cannot read %s: %s\n", src->path,
                                r == -ENODATA ? "it got shorter while being sent" : strerror(-r));
                        code = 1;
                        break;
                }
                r = ctl_frame_prefix(ref, part, dtype, ndim, shape, multi ? (int64_t)off : -1, &prefix, &plen);
                if (r >= 0) {
                        struct iovec iov[2] = { { prefix, plen }, { buf, n } };
                        r = ctl_ws_send_binary(c->ws, iov, 2);
                        free(prefix);
                }
                if (r >= 0)
                        r = ctl_ws_drain(c->ws, remaining_ms(c));
                if (r < 0) {
                        code = early_error(c, ref);
                        if (!code && r == -ETIMEDOUT)
                                fprintf(stderr, "kilnctl: timed out sending %s (%s)\n", src->path, c->url);
                        else if (!code)
                                fprintf(stderr, "kilnctl: cannot send %s to %s: %s\n", src->path, c->url,
                                        r == -ENOMEM ? "out of memory" : ctl_ws_error(c->ws));
                        code = 1;
                        break;
                }
                off += n;
                code = early_error(c, ref);
                if (bar && !code)
                        progress_show(src->path, (int)(off * 100 / src->total));
        }
        if (bar)
                progress_clear();
        free(buf);
        return code;
}

/* Prints a field the way tables and field lists show it: "-" when absent. */
static void print_cell(const json_t *v, int width)
{
        char text[64];
        const char *s = text;

        if (json_is_integer(v))
                snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
                snprintf(text, sizeof(text), "%.10g", json_real_value(v));
        else if (json_is_string(v))
                s = json_string_value(v);
        else
                s = "-";
        printf("%-*s", width, s);
}

/* The reply of an object op: `op` prints its fields (keys first, in that order,
 * then any others); anything else is an error. Takes over `reply`. Returns the
 * exit code. */
static int print_object(struct conn *c, json_t *reply, const char *op, const char *const *keys)
{
        if (!is_op(reply, op)) {
                print_error(reply);
                json_decref(reply);
                return 1;
        }
        json_object_del(reply, "ref");
        if (c->json) {
                print_json(reply, JSON_COMPACT);
        } else {
                for (const char *const *k = keys; *k; k++) {
                        printf("%-10s ", *k);
                        print_cell(json_object_get(reply, *k), 0);
                        putchar('\n');
                }
                const char *key;
                json_t *v;
                json_object_foreach(reply, key, v) {
                        bool known = !strcmp(key, "op");
                        for (const char *const *k = keys; *k && !known; k++)
                                known = !strcmp(key, *k);
                        if (!known) {
                                printf("%-10s ", key);
                                print_value(v);
                        }
                }
        }
        json_decref(reply);
        fflush(stdout);
        return 0;
}

/* A list entry's field; a collection's name may come as "collection" or "name". */
static const json_t *entry_field(const json_t *e, const char *key)
{
        const json_t *v = json_object_get(e, key);
        if (!v && !strcmp(key, "collection"))
                v = json_object_get(e, "name");
        return v;
}

static int cell_width(const json_t *v)
{
        char text[64];

        if (json_is_string(v))
                return (int)strlen(json_string_value(v));
        if (json_is_integer(v))
                return snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(v));
        if (json_is_real(v))
                return snprintf(text, sizeof(text), "%.10g", json_real_value(v));
        return 1;
}

/* `model list`, `vec list`: one row per entry of reply[member], under upper-case
 * headings of `keys`. Takes over `reply`. */
static int print_table(json_t *reply, const char *member, const char *const *keys)
{
        const json_t *list = json_object_get(reply, member), *e;
        int width[8] = { 0 };
        size_t nk = 0, i;

        while (keys[nk] && nk < 8) {
                width[nk] = (int)strlen(keys[nk]);
                nk++;
        }
        json_array_foreach(list, i, e) {
                for (size_t k = 0; k < nk; k++) {
                        int w = cell_width(entry_field(e, keys[k]));
                        if (w > width[k])
                                width[k] = w;
                }
        }
        for (size_t k = 0; k < nk; k++) {
                for (const char *p = keys[k]; *p; p++)
                        putchar(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
                printf("%*s", k + 1 < nk ? width[k] - (int)strlen(keys[k]) + 2 : 0, "");
        }
        putchar('\n');
        json_array_foreach(list, i, e) {
                for (size_t k = 0; k < nk; k++) {
                        print_cell(entry_field(e, keys[k]), k + 1 < nk ? width[k] : 0);
                        if (k + 1 < nk)
                                printf("  ");
                }
                putchar('\n');
        }
        json_decref(reply);
        fflush(stdout);
        return 0;
}

/* The bytes `s` takes inside a JSON array of strings as jansson writes it
 * (quotes, escapes, the comma). */
static size_t json_string_cost(const char *s)
{
        size_t n = 3;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                n += *p == '"' || *p == '\\' || *p == '\b' || *p == '\f' || *p == '\n' || *p == '\r' || *p == '\t'
                             ? 2
                             : *p < 0x20 ? 6 : 1;
        return n;
}

/* The end of the batch of ids that starts at `from`: as many as fit in `budget`
 * bytes of JSON, at least one. */
static size_t batch_end(const json_t *ids, size_t from, size_t budget)
{
        size_t end = from, used = 0, n = json_array_size(ids);

        while (end < n) {
                size_t cost = json_string_cost(json_string_value(json_array_get(ids, end)));
                if (end > from && used + cost > budget)
                        break;
                used += cost;
                end++;
        }
        return end;
}

static size_t ids_budget(const struct conn *c, const char *collection)
{
        size_t fixed = MSG_ROOM + 6 * strlen(collection);
        return c->max_message > 2 * fixed ? c->max_message - fixed : c->max_message / 2;
}

static json_t *ids_slice(const json_t *ids, size_t from, size_t to)
{
        json_t *a = json_array();
        for (size_t i = from; a && i < to; i++)
                if (json_array_append(a, json_array_get(ids, i)) < 0) {
                        json_decref(a);
                        a = NULL;
                }
        return a;
}

/* ---- model ---- */

/* `model put FILE`: the name defaults to the file's base name without ".json". */
static int model_put(struct ctx *x)
{
        struct args *a = x->a;
        char name[256];

        if (a->npos != 3)
                return usage_error("%s", "model put needs exactly one FILE (an XGBoost JSON model)");
        const char *path = a->pos[2];
        if (a->val[OPT_NAME]) {
                if (!*a->val[OPT_NAME])
                        return usage_error("%s", "--name needs a model name");
                snprintf(name, sizeof(name), "%s", a->val[OPT_NAME]);
        } else {
                const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
                snprintf(name, sizeof(name), "%s", base);
                size_t n = strlen(name);
                if (n > 5 && !strcasecmp(name + n - 5, ".json"))
                        name[n - 5] = '\0';
                if (!name[0] || !strcmp(name, ".json"))
                        return usage_error("cannot name a model after \"%s\": give --name", path);
        }

        struct stat st;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "kilnctl: cannot open %s: %s\n", path, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return EXIT_USAGE;
        }
        if (!S_ISREG(st.st_mode) || st.st_size == 0) {
                fprintf(stderr, "kilnctl: %s %s\n", path, S_ISREG(st.st_mode) ? "is empty" : "is not a regular file");
                close(fd);
                return EXIT_USAGE;
        }
        int r = conn_open(x);
        if (r) {
                close(fd);
                return r;
        }
        struct conn *c = &x->c;
        int ref = ++c->next_ref;
        uint64_t shape[1] = { (uint64_t)st.st_size };
        struct part_src src = { .path = path, .fd = fd, .offset = 0, .total = (uint64_t)st.st_size };
        r = upload_part(c, ref, "model", "bytes", 1, shape, &src);
        close(fd);
        if (r)
                return r;
        json_t *reply;
        if (conn_send_ref(c, json_pack("{s:s, s:s}", "op", "model.put", "name", name), ref) < 0 ||
            conn_await(c, ref, -1, "the model.put reply", &reply) < 0)
                return 1;
        return print_object(c, reply, "model", model_keys);
}

int cmd_model(struct ctx *x)
{
        struct args *a = x->a;
        const char *sub = a->npos >= 2 ? a->pos[1] : "";
        json_t *reply = NULL;
        int r;

        if (a->val[OPT_NAME] && strcmp(sub, "put"))
                return usage_error("%s", "only model put takes --name");
        if (!strcmp(sub, "put"))
                return model_put(x);
        if (!strcmp(sub, "list")) {
                if (a->npos != 2)
                        return usage_error("model list takes no words (\"%s\")", a->pos[2]);
                r = simple_call(x, json_pack("{s:s}", "op", "model.list"), &reply);
                if (r >= 0)
                        return r;
                if (!is_op(reply, "models")) {
                        print_error(reply);
                        json_decref(reply);
                        return 1;
                }
                return print_table(reply, "models", model_keys);
        }
        if (!strcmp(sub, "delete")) {
                if (a->npos != 3)
                        return usage_error("%s", "model delete needs exactly one NAME");
                r = simple_call(x, json_pack("{s:s, s:s}", "op", "model.delete", "name", a->pos[2]), &reply);
                if (r >= 0)
                        return r;
                printf("model %s deleted\n", a->pos[2]);
                json_decref(reply);
                return 0;
        }
        if (!*sub)
                return usage_error("%s", "model needs put, list or delete");
        return usage_error("unknown model command \"%s\": put, list or delete", sub);
}

/* ---- vec ---- */

static int vec_put(struct ctx *x)
{
        struct args *a = x->a;
        const char *metric = a->val[OPT_METRIC];
        char err[512];

        if (a->npos != 5)
                return usage_error("%s", "vec put needs COLL FILE.npy IDS.txt");
        if (metric && strcmp(metric, "cosine") && strcmp(metric, "ip") && strcmp(metric, "l2"))
                return usage_error("--metric must be cosine, ip or l2, not \"%s\"", metric);
        const char *coll = a->pos[2], *npy = a->pos[3], *ids_path = a->pos[4];

        int fd;
        struct ctl_npy h;
        json_t *ids;
        if (ctl_npy_open_f32_matrix(npy, &fd, &h, err, sizeof(err)) < 0) {
                fprintf(stderr, "kilnctl: vectors: %s\n", err);
                return EXIT_USAGE;
        }
        if (ctl_ids_read(ids_path, &ids, err, sizeof(err)) < 0) {
                fprintf(stderr, "kilnctl: %s\n", err);
                close(fd);
                return EXIT_USAGE;
        }
        uint64_t n = h.shape[0], dim = h.shape[1];
        if (json_array_size(ids) != n) {
                fprintf(stderr, "kilnctl: %s holds %" PRIu64 " vectors but %s holds %zu ids: one id per vector\n", npy,
                        n, ids_path, json_array_size(ids));
                json_decref(ids);
                close(fd);
                return EXIT_USAGE;
        }

        int r = conn_open(x);
        struct conn *c = &x->c;
        json_t *reply = NULL;
        size_t batches = 0;
        for (size_t from = 0; !r && from < n;) {
                size_t to = batch_end(ids, from, ids_budget(c, coll));
                int ref = ++c->next_ref;
                uint64_t shape[2] = { to - from, dim };
                struct part_src src = { .path = npy, .fd = fd, .offset = h.data_offset + from * dim * 4,
                                        .total = (to - from) * dim * 4 };
                r = upload_part(c, ref, "vectors", "f32", 2, shape, &src);
                if (r)
                        break;
                json_t *msg = json_pack("{s:s, s:s, s:o}", "op", "vec.put", "collection", coll, "ids",
                                        ids_slice(ids, from, to));
                if (msg && metric)
                        json_object_set_new(msg, "metric", json_string(metric));
                json_decref(reply);
                reply = NULL;
                if (conn_send_ref(c, msg, ref) < 0 || conn_await(c, ref, -1, "the vec.put reply", &reply) < 0) {
                        r = 1;
                        break;
                }
                batches++;
                if (!is_op(reply, "vec")) {
                        if (from)
                                fprintf(stderr, "kilnctl: the first %zu of %" PRIu64 " vectors were stored\n", from, n);
                        break;
                }
                from = to;
        }
        close(fd);
        json_decref(ids);
        if (r) {
                json_decref(reply);
                return r;
        }
        if (batches > 1 && is_op(reply, "vec"))
                fprintf(stderr, "sent as %zu puts: the ids of one put must fit in one message\n", batches);
        return print_object(c, reply, "vec", vec_keys);
}

static int vec_delete(struct ctx *x)
{
        struct args *a = x->a;
        char err[512], why[96];
        json_t *ids = NULL;

        if (a->npos < 3)
                return usage_error("%s", "vec delete needs COLL and ids (ID... or --ids FILE)");
        const char *coll = a->pos[2];
        if (a->val[OPT_IDS] && a->npos > 3)
                return usage_error("%s", "vec delete takes ids as words or from --ids FILE, not both");
        if (!a->val[OPT_IDS] && a->npos == 3)
                return usage_error("%s", "vec delete needs ids: ID... or --ids FILE");
        if (a->val[OPT_IDS]) {
                if (ctl_ids_read(a->val[OPT_IDS], &ids, err, sizeof(err)) < 0) {
                        fprintf(stderr, "kilnctl: %s\n", err);
                        return EXIT_USAGE;
                }
        } else {
                ids = json_array();
                for (int i = 3; ids && i < a->npos; i++) {
                        if (ctl_id_check(a->pos[i], strlen(a->pos[i]), why, sizeof(why)) < 0) {
                                json_decref(ids);
                                return usage_error("the id \"%s\" %s", a->pos[i], why);
                        }
                        if (json_array_append_new(ids, json_string(a->pos[i])) < 0) {
                                json_decref(ids);
                                ids = NULL;
                        }
                }
                if (!ids) {
                        fprintf(stderr, "kilnctl: out of memory\n");
                        return 1;
                }
        }

        int r = conn_open(x);
        struct conn *c = &x->c;
        json_t *reply = NULL;
        size_t n = json_array_size(ids);
        for (size_t from = 0; !r && from < n;) {
                size_t to = batch_end(ids, from, ids_budget(c, coll));
                json_decref(reply);
                reply = NULL;
                json_t *msg = json_pack("{s:s, s:s, s:o}", "op", "vec.delete", "collection", coll, "ids",
                                        ids_slice(ids, from, to));
                if (conn_call(c, msg, "the vec.delete reply", &reply, NULL) < 0) {
                        r = 1;
                        break;
                }
                if (!is_op(reply, "vec"))
                        break;
                from = to;
        }
        json_decref(ids);
        if (r) {
                json_decref(reply);
                return r;
        }
        return print_object(c, reply, "vec", vec_keys);
}

int cmd_vec(struct ctx *x)
{
        struct args *a = x->a;
        const char *sub = a->npos >= 2 ? a->pos[1] : "";
        json_t *reply = NULL;
        int r;

        if (a->val[OPT_METRIC] && strcmp(sub, "put"))
                return usage_error("%s", "only vec put takes --metric");
        if (a->val[OPT_IDS] && strcmp(sub, "delete"))
                return usage_error("%s", "only vec delete takes --ids");
        if ((a->val[OPT_QUERIES] || a->val[OPT_OUT]) && strcmp(sub, "search"))
                return usage_error("%s", "only vec search takes --queries and --out");
        if (!strcmp(sub, "search"))
                return cmd_vec_search(x);
        if (!strcmp(sub, "put"))
                return vec_put(x);
        if (!strcmp(sub, "delete"))
                return vec_delete(x);
        if (!strcmp(sub, "list")) {
                if (a->npos != 2)
                        return usage_error("vec list takes no words (\"%s\")", a->pos[2]);
                r = simple_call(x, json_pack("{s:s}", "op", "vec.list"), &reply);
                if (r >= 0)
                        return r;
                if (!is_op(reply, "collections")) {
                        print_error(reply);
                        json_decref(reply);
                        return 1;
                }
                return print_table(reply, "collections", vec_keys);
        }
        if (!strcmp(sub, "info") || !strcmp(sub, "drop")) {
                if (a->npos != 3)
                        return usage_error("vec %s needs exactly one COLL", sub);
                char op[16];
                snprintf(op, sizeof(op), "vec.%s", sub);
                r = simple_call(x, json_pack("{s:s, s:s}", "op", op, "collection", a->pos[2]), &reply);
                if (r >= 0)
                        return r;
                if (!strcmp(sub, "info"))
                        return print_object(&x->c, reply, "vec", vec_keys);
                printf("collection %s dropped\n", a->pos[2]);
                json_decref(reply);
                return 0;
        }
        if (!*sub)
                return usage_error("%s", "vec needs put, search, info, list, delete or drop");
        return usage_error("unknown vec command \"%s\": put, search, info, list, delete or drop", sub);
}
