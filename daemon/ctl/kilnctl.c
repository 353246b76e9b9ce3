/* kilnctl: the command-line client of kilnd (SPEC §5). It speaks the WebSocket
 * protocol of SPEC §2 like any other client.
 *
 * Exit codes: 0 success; 1 a failed/cancelled/expired job, an error reply, a
 * connection failure or a timeout; 2 a usage error or a local input file that
 * cannot be sent (a .npy of another dtype, an ids file of the wrong length). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl.h"
#include "tokens.h"
#include "util.h"
#include "kilnctl.h"
#include "kind.h"
#include "proto.h"
#include "ws.h"

#define IMAGE_FRAME_CAP (16u << 20)     /* payload bytes of one frame of --image at most */

static const char *const cmd_names[_CMD_MAX] = {
        [CMD_SUBMIT] = "submit", [CMD_STATUS] = "status", [CMD_RESULT] = "result", [CMD_LIST] = "list",
        [CMD_CANCEL] = "cancel", [CMD_STATS] = "stats",   [CMD_WATCH] = "watch",   [CMD_TOKEN] = "token",
        [CMD_MODEL] = "model",   [CMD_VEC] = "vec",
};

#define ALL_CMDS ((1u << _CMD_MAX) - 1)
#define BIT(c) (1u << (c))

static const struct {
        const char *name;
        bool has_arg;
        unsigned cmds;   /* the commands that take it */
} opt_table[_OPT_MAX] = {
        [OPT_URL] = { "url", true, ALL_CMDS },
        [OPT_TOKEN] = { "token", true, ALL_CMDS },
        [OPT_JSON] = { "json", false, ALL_CMDS },
        [OPT_TIMEOUT_S] = { "timeout-s", true, ALL_CMDS },
        [OPT_HELP] = { "help", false, ALL_CMDS },
        [OPT_PRIORITY] = { "priority", true, BIT(CMD_SUBMIT) },
        [OPT_TIMEOUT_MS] = { "timeout-ms", true, BIT(CMD_SUBMIT) },
        [OPT_KEY] = { "key", true, BIT(CMD_SUBMIT) },
        [OPT_NO_WAIT] = { "no-wait", false, BIT(CMD_SUBMIT) },
        [OPT_OUT] = { "out", true, BIT(CMD_SUBMIT) | BIT(CMD_RESULT) | BIT(CMD_WATCH) | BIT(CMD_VEC) },
        [OPT_STATE] = { "state", true, BIT(CMD_LIST) },
        [OPT_KIND] = { "kind", true, BIT(CMD_LIST) },
        [OPT_LIMIT] = { "limit", true, BIT(CMD_LIST) },
        [OPT_AFTER] = { "after", true, BIT(CMD_LIST) },
        [OPT_TOKENS_FILE] = { "tokens-file", true, BIT(CMD_TOKEN) },
        [OPT_NAME] = { "name", true, BIT(CMD_MODEL) },
        [OPT_METRIC] = { "metric", true, BIT(CMD_VEC) },
        [OPT_IDS] = { "ids", true, BIT(CMD_VEC) },
        [OPT_IMAGE] = { "image", true, BIT(CMD_SUBMIT) },
        [OPT_INSTANCE] = { "instance", true, BIT(CMD_SUBMIT) },
        [OPT_ROWS] = { "rows", true, BIT(CMD_SUBMIT) },
        [OPT_QUERIES] = { "queries", true, BIT(CMD_SUBMIT) | BIT(CMD_VEC) },
};

static const char usage_text[] =
        "usage: kilnctl [--url ws://HOST:PORT/ws] [--token T] [--json] [--timeout-s S] COMMAND ...\n"
        "\n"
        "commands:\n"
        "  submit KIND KEY=VALUE... [--priority P] [--timeout-ms N] [--key K] [--no-wait] [--out DIR]\n"
        "         [--image FILE] [--instance FILE] [--rows FILE] [--queries FILE]\n"
        "                      submit a job, print its id, wait for it and print its scalars;\n"
        "                      --out DIR writes each binary part as DIR/NAME.npy (a mesh as\n"
        "                      DIR/mesh.stl or DIR/mesh.glb); --image FILE sends FILE (PNG,\n"
        "                      JPEG) as the part `image` (image.relief); --instance FILE sends\n"
        "                      FILE (OR-Library text or JSON) as the part `instance`\n"
        "                      (sched.jobshop); --rows FILE sends FILE.npy (float32\n"
        "                      [n][features]) or FILE.csv (empty or nan = missing) as the\n"
        "                      part `rows` (risk.score); --queries FILE sends FILE.npy\n"
        "                      (float32 [q][dim]) or FILE.csv as the part `queries`\n"
        "                      (vec.search: kilnctl submit vec.search collection=C k=10\n"
        "                      --queries q.npy prints the ids; --out DIR writes\n"
        "                      scores.npy; query_id=ID instead of --queries searches\n"
        "                      from the vector of a stored item)\n"
        "  status JOB          show a job's state\n"
        "  result JOB [--out DIR]\n"
        "                      print a finished job's result (waits if it is still running)\n"
        "  watch JOB [--out DIR]\n"
        "                      wait for a job to finish, then print its result\n"
        "  list [--state S] [--kind K] [--limit N] [--after JOB]\n"
        "                      list your jobs, newest first\n"
        "  cancel JOB          cancel a queued or running job\n"
        "  stats               print the server's statistics\n"
        "  token new NAME TENANT ROLE [--tokens-file FILE]\n"
        "                      add a token (ROLE: read, submit, writer, admin) to FILE\n"
        "                      (default /etc/kiln/tokens) and print it once\n"
        "  model put FILE [--name N]\n"
        "                      store an XGBoost JSON model for risk.score (N: default the\n"
        "                      file's name without .json; a new version when N exists)\n"
        "  model list          list your tenant's models\n"
        "  model delete N      delete model N\n"
        "  vec put COLL FILE.npy IDS.txt [--metric cosine|ip|l2]\n"
        "                      add or replace vectors in collection COLL (created with\n"
        "                      --metric): FILE.npy a float32 array [n][dim], IDS.txt n ids,\n"
        "                      one per line\n"
        "  vec search COLL [k=K] (--queries FILE | query_id=ID) [--out DIR]\n"
        "                      search collection COLL (submit vec.search collection=COLL\n"
        "                      ...): prints the ids; --out DIR writes scores.npy\n"
        "  vec info COLL       show a collection's version, count, dim and metric\n"
        "  vec list            list your tenant's collections\n"
        "  vec delete COLL ID... | vec delete COLL --ids FILE\n"
        "                      remove vectors by id\n"
        "  vec drop COLL       delete a whole collection\n"
        "\n"
        "KEY=VALUE: numbers, integers and booleans as such, string sets comma-separated\n"
        "(maps=kappa,psi), nested objects with dotted keys (source.x_arcsec=0.5).\n"
        "\n"
        "options:\n"
        "  --url URL           server (default $KILN_URL, else ws://127.0.0.1:8080/ws)\n"
        "  --token T           API token (default $KILN_TOKEN)\n"
        "  --json              print the server's JSON replies as they are\n"
        "  --timeout-s S       give up after S seconds (default: wait for jobs without limit)\n"
        "\n"
        "exit status: 0 success, 1 failed job or error reply or connection failure, 2 usage error\n"
        "or an input file that cannot be sent\n";

__attribute__((format(printf, 1, 2))) int usage_error(const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "kilnctl: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'kilnctl --help'.\n");
        return EXIT_USAGE;
}

/* Parses argv into *a. Options may come before or after the command's words;
 * "--" ends the options. Returns 0; -1 after printing --help; or an exit code
 * (> 0) after printing a usage error. */
static int parse_args(int argc, char **argv, struct args *a)
{
        a->pos = calloc((size_t)argc + 1, sizeof(char *));
        if (!a->pos)
                return 1;
        bool opts_done = false;
        for (int i = 1; i < argc; i++) {
                char *s = argv[i];
                if (opts_done || s[0] != '-' || !s[1]) {
                        a->pos[a->npos++] = s;
                        continue;
                }
                if (!strcmp(s, "--")) {
                        opts_done = true;
                        continue;
                }
                if (!strcmp(s, "-h")) {
                        a->val[OPT_HELP] = "";
                        continue;
                }
                if (s[1] != '-')
                        return usage_error("unknown option %s", s);
                char *name = s + 2, *eq = strchr(name, '=');
                size_t nl = eq ? (size_t)(eq - name) : strlen(name);
                int o;
                for (o = 0; o < _OPT_MAX; o++)
                        if (strlen(opt_table[o].name) == nl && !strncmp(opt_table[o].name, name, nl))
                                break;
                if (o == _OPT_MAX)
                        return usage_error("unknown option %s", s);
                if (!opt_table[o].has_arg) {
                        if (eq)
                                return usage_error("option %s takes no value", s);
                        a->val[o] = "";
                } else if (eq) {
                        a->val[o] = eq + 1;
                } else if (i + 1 < argc) {
                        a->val[o] = argv[++i];
                } else {
                        return usage_error("option %s needs a value", s);
                }
        }
        if (a->val[OPT_HELP]) {
                fputs(usage_text, stdout);
                return -1;
        }
        if (!a->npos)
                return usage_error("%s", "no command given");
        int c;
        for (c = 0; c < _CMD_MAX; c++)
                if (!strcmp(a->pos[0], cmd_names[c]))
                        break;
        if (c == _CMD_MAX)
                return usage_error("unknown command \"%s\"", a->pos[0]);
        a->cmd = (enum cmd)c;
        for (int o = 0; o < _OPT_MAX; o++)
                if (a->val[o] && !(opt_table[o].cmds & BIT(c))) {
                        fprintf(stderr, "kilnctl: %s takes no --%s\nTry 'kilnctl --help'.\n", cmd_names[c],
                                opt_table[o].name);
                        return EXIT_USAGE;
                }
        return 0;
}

static bool parse_int(const char *s, long long min, long long max, long long *ret)
{
        char *end;

        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (!*s || *end || errno || v < min || v > max)
                return false;
        *ret = v;
        return true;
}

/* ---- results ---- */

void print_value(const json_t *v)
{
        if (json_is_integer(v)) {
                printf("%lld\n", (long long)json_integer_value(v));
        } else if (json_is_real(v)) {
                printf("%.10g\n", json_real_value(v));
        } else if (json_is_string(v)) {
                printf("%s\n", json_string_value(v));
        } else {
                char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                printf("%s\n", s ? s : "?");
                free(s);
        }
}

void print_json(const json_t *j, size_t flags)
{
        char *s = json_dumps(j, flags | JSON_PRESERVE_ORDER);
        if (s)
                puts(s);
        free(s);
}

void progress_show(const char *label, int pct)
{
        static const int width = 30;
        pct = pct < 0 ? 0 : pct > 100 ? 100 : pct; /* whatever the server says */
        int fill = pct * width / 100;
        char bar[32];

        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(width - fill));
        bar[width] = '\0';
        fprintf(stderr, "\r%s [%s] %3d%%", label, bar, pct);
        fflush(stderr);
}

void progress_clear(void)
{
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
}

/* Takes the binary frames of a `done`: each was written under --out (or dropped)
 * while it arrived (conn_open); checks it is the part `done` names next and moves
 * its file into place. Returns >= 0 or -errno after printing. */
static int receive_parts(struct conn *c, const json_t *done)
{
        const json_t *parts = json_object_get(done, "parts");
        size_t n = json_array_size(parts);
        int r = 0;

        for (size_t i = 0; i < n && r >= 0; i++) {
                const char *want = json_string_value(json_object_get(json_array_get(parts, i), "name"));
                struct ctl_msg *m = NULL;
                do {
                        ctl_msg_free(m);
                        m = NULL;
                        r = conn_recv(c, -1, "the result's parts", &m);
                        if (r < 0)
                                return r;
                } while (!m->binary);   /* text in between (progress of other jobs): skip */

                struct ctl_part_file *f = m->sunk;  /* conn_open's sink took every binary message */
                const char *path;
                m->sunk = NULL;
                ctl_msg_free(m);
                if (!f) {
                        fprintf(stderr, "kilnctl: a result part arrived that was not received\n");
                        return -EPROTO;
                }
                if ((r = ctl_part_file_finish(f)) < 0) {
                        fprintf(stderr, "kilnctl: %s\n", ctl_part_file_error(f));
                } else if (!want || strcmp(want, ctl_part_file_name(f))) {
                        r = -EPROTO;
                        fprintf(stderr, "kilnctl: expected part \"%s\", the server sent \"%s\"\n",
                                want ? want : "?", ctl_part_file_name(f));
                } else if ((r = ctl_part_file_commit(f, &path)) < 0) {
                        fprintf(stderr, "kilnctl: %s\n", ctl_part_file_error(f));
                } else if (path) {
                        fprintf(stderr, "wrote %s\n", path);
                }
                ctl_part_file_free(f);
        }
        return r;
}

/* Waits for the `done` of `job` (replies to `ref` may come first: an "ok", or an
 * error that ends the wait), receives its parts and prints the outcome. Returns
 * the exit code. `first` (stolen, may be NULL) is a message already received. */
static int wait_done(struct conn *c, const char *job, int ref, json_t *first)
{
        bool bar = isatty(STDERR_FILENO) && !getenv("KILNCTL_NO_PROGRESS");
        bool bar_shown = false;
        json_t *done = NULL, *j = first;

        while (!done) {
                if (!j) {
                        struct ctl_msg *m;
                        int k = conn_recv(c, -1, "the job to finish", &m);
                        if (k < 0) {
                                if (bar_shown)
                                        progress_clear();
                                /* With --json the job's id must reach stdout all the
                                 * same: it goes on in kilnd, to watch or cancel. */
                                if (c->json) {
                                        json_t *e = json_pack(
                                                "{s:s, s:s, s:s, s:s}", "op", "error", "code",
                                                k == -ETIMEDOUT ? "timeout" : "unavailable", "job", job, "message",
                                                k == -ETIMEDOUT ? "kilnctl stopped waiting (--timeout-s); the job "
                                                                  "goes on in kilnd"
                                                                : "the connection was lost; the job goes on in kilnd");
                                        print_json(e, JSON_COMPACT);
                                        json_decref(e);
                                }
                                return 1;
                        }
                        j = m->binary ? NULL : json_loadb((const char *)m->data, m->len, 0, NULL);
                        ctl_msg_free(m);
                }
                const char *jid = json_string_value(json_object_get(j, "job"));
                bool mine = jid && !strcasecmp(jid, job);
                json_t *jref = json_object_get(j, "ref");
                if (is_op(j, "error") && json_is_integer(jref) && json_integer_value(jref) == ref) {
                        if (bar_shown)
                                progress_clear();
                        print_error(j);
                        json_decref(j);
                        return 1;
                } else if (is_op(j, "progress") && mine && bar) {
                        json_int_t pct = json_integer_value(json_object_get(j, "pct"));
                        progress_show(job, pct < 0 ? 0 : pct > 100 ? 100 : (int)pct);
                        bar_shown = true;
                } else if (is_op(j, "done") && mine) {
                        done = j;
                        j = NULL;
                }
                json_decref(j);
                j = NULL;
        }
        if (bar_shown)
                progress_clear();

        const char *state = json_string_value(json_object_get(done, "state"));
        bool ok = state && !strcmp(state, "done");
        int r = ok ? receive_parts(c, done) : 0;

        if (r) {
                /* Its parts did not all arrive or could not be saved (said on
                 * stderr): no result is printed as if it were whole. */
        } else if (c->json) {
                json_object_del(done, "ref");
                print_json(done, JSON_COMPACT);
        } else if (ok) {
                const char *name;
                json_t *v;
                json_object_foreach(json_object_get(done, "result"), name, v) {
                        printf("%s = ", name);
                        print_value(v);
                }
        }
        if (!ok) {
                const json_t *e = json_object_get(done, "error");
                const char *code = json_string_value(json_object_get(e, "code"));
                const char *msg = json_string_value(json_object_get(e, "message"));
                if (code && state && !strcmp(code, state))
                        code = NULL; /* "cancelled: cancelled" says it once */
                fprintf(stderr, "kilnctl: job %s %s%s%s%s%s\n", job, state ? state : "ended", code || msg ? ": " : "",
                        code ? code : "", code && msg ? ": " : "", msg ? msg : "");
        }
        json_decref(done);
        fflush(stdout);
        return ok && r >= 0 ? 0 : 1;
}

/* ---- commands ---- */

/* Sends the file open at fd (`bytes` long) as the bytes part `part` (`image`,
 * `instance`) of the message that will carry `ref`, in frames within the server's
 * max_message_bytes. Returns 0 or an exit code after printing why. */
static int send_file_part(struct conn *c, int ref, const char *part, const char *path, int fd, uint64_t bytes)
{
        uint64_t shape[1] = { bytes };
        size_t chunk;
        bool multi;
        int r = ctl_frame_plan(ref, part, "bytes", 1, shape, bytes, c->max_message, IMAGE_FRAME_CAP, &chunk,
                               &multi);
        uint8_t *buf = r >= 0 ? malloc(chunk) : NULL;
        if (!buf) {
                fprintf(stderr, "kilnctl: cannot send %s: %s\n", path,
                        r == -EMSGSIZE ? "the server's max_message_bytes leaves no room for a frame" : "out of memory");
                return 1;
        }
        for (uint64_t off = 0; off < bytes && r >= 0;) {
                size_t n = bytes - off < chunk ? (size_t)(bytes - off) : chunk;
                uint8_t *prefix = NULL;
                size_t plen = 0;
                if ((r = ctl_pread_all(fd, buf, n, off)) < 0) {
                        fprintf(stderr, "kilnctl: cannot read %s: %s\n", path,
                                r == -ENODATA ? "it got shorter while being sent" : strerror(-r));
                        break;
                }
                r = ctl_frame_prefix(ref, part, "bytes", 1, shape, multi ? (int64_t)off : -1, &prefix, &plen);
                if (r >= 0) {
                        struct iovec iov[2] = { { prefix, plen }, { buf, n } };
                        r = ctl_ws_send_binary(c->ws, iov, 2);
                        free(prefix);
                }
                if (r >= 0)
                        r = ctl_ws_drain(c->ws, c->deadline < 0 ? -1 : c->deadline - now_ms());
                if (r < 0)
                        fprintf(stderr, "kilnctl: cannot send %s to %s: %s\n", path, c->url,
                                r == -ETIMEDOUT ? "timed out" : ctl_ws_error(c->ws));
                off += n;
        }
        free(buf);
        return r < 0 ? 1 : 0;
}

/* Sends rows[n][cols] (from --rows or --queries) as the f32 part `part` of the
 * message that will carry `ref`, in frames within the server's max_message_bytes.
 * Returns 0 or an exit code after printing why. */
static int send_rows_part(struct conn *c, int ref, const char *part, const char *path, const float *rows, uint64_t n,
                          uint64_t cols)
{
        uint64_t shape[2] = { n, cols }, bytes = n * cols * sizeof(float);
        size_t chunk;
        bool multi;
        int r = ctl_frame_plan(ref, part, "f32", 2, shape, bytes, c->max_message, IMAGE_FRAME_CAP, &chunk, &multi);

        for (uint64_t off = 0; r >= 0 && off < bytes; off += chunk) {
                size_t len = bytes - off < chunk ? (size_t)(bytes - off) : chunk;
                uint8_t *prefix = NULL;
                size_t plen = 0;
                r = ctl_frame_prefix(ref, part, "f32", 2, shape, multi ? (int64_t)off : -1, &prefix, &plen);
                if (r >= 0) {
                        struct iovec iov[2] = { { prefix, plen }, { (uint8_t *)rows + off, len } };
                        r = ctl_ws_send_binary(c->ws, iov, 2);
                        free(prefix);
                }
                if (r >= 0)
                        r = ctl_ws_drain(c->ws, c->deadline < 0 ? -1 : c->deadline - now_ms());
        }
        if (r < 0)
                fprintf(stderr, "kilnctl: cannot send %s to %s: %s\n", path, c->url,
                        r == -EMSGSIZE ? "the server's max_message_bytes leaves no room for a frame"
                        : r == -ETIMEDOUT ? "timed out" : ctl_ws_error(c->ws));
        return r < 0 ? 1 : 0;
}

/* Opens the file of --image or --instance: a non-empty regular file. Returns its descriptor, or -1
 * after printing why. */
static int open_image(const char *path, uint64_t *ret_bytes)
{
        struct stat st;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "kilnctl: cannot open %s: %s\n", path, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        if (!S_ISREG(st.st_mode) || st.st_size == 0) {
                fprintf(stderr, "kilnctl: %s %s\n", path, S_ISREG(st.st_mode) ? "is empty" : "is not a regular file");
                close(fd);
                return -1;
        }
        *ret_bytes = (uint64_t)st.st_size;
        return fd;
}

static int cmd_submit(struct ctx *x)
{
        struct args *a = x->a;
        long long timeout_ms = 0;

        if (a->npos < 2)
                return usage_error("%s", "submit needs a KIND");
        if (a->val[OPT_PRIORITY]) {
                static const char *const prios[] = { "critical", "high", "normal", "low", "batch" };
                bool ok = false;
                for (size_t i = 0; i < 5; i++)
                        ok |= !strcmp(a->val[OPT_PRIORITY], prios[i]);
                if (!ok)
                        return usage_error("--priority must be critical, high, normal, low or batch, not \"%s\"",
                                           a->val[OPT_PRIORITY]);
        }
        if (a->val[OPT_TIMEOUT_MS] && !parse_int(a->val[OPT_TIMEOUT_MS], 1, INT64_MAX, &timeout_ms))
                return usage_error("--timeout-ms needs a positive integer, not \"%s\"", a->val[OPT_TIMEOUT_MS]);

        char err[256];
        json_t *params;
        int r = ctl_params_from_words(a->pos[1], a->pos + 2, a->npos - 2, &params, err, sizeof(err));
        if (r == -EINVAL)
                return usage_error("%s", err);
        if (r < 0) {
                fprintf(stderr, "kilnctl: %s\n", err);
                return 1;
        }
        bool wait = !a->val[OPT_NO_WAIT];
        if (!wait && a->val[OPT_OUT]) {
                json_decref(params);
                return usage_error("%s", "--out writes the result's parts, which --no-wait does not wait for "
                                         "(get them later with: kilnctl result JOB --out DIR)");
        }
        json_t *msg = json_pack("{s:s, s:s, s:o, s:b}", "op", "submit", "kind", a->pos[1], "params", params,
                                "watch", wait);
        if (msg && a->val[OPT_PRIORITY])
                json_object_set_new(msg, "priority", json_string(a->val[OPT_PRIORITY]));
        if (msg && timeout_ms)
                json_object_set_new(msg, "timeout_ms", json_integer(timeout_ms));
        if (msg && a->val[OPT_KEY])
                json_object_set_new(msg, "key", json_string(a->val[OPT_KEY]));

        int image_fd = -1, instance_fd = -1;
        uint64_t image_bytes = 0, instance_bytes = 0, n_rows = 0, n_cols = 0;
        float *rows = NULL;
        /* --rows (risk.score) and --queries (vec.search) are both f32 matrices. */
        const char *rows_part = a->val[OPT_QUERIES] ? "queries" : "rows";
        const char *rows_path = a->val[OPT_QUERIES] ? a->val[OPT_QUERIES] : a->val[OPT_ROWS];
        if (a->val[OPT_ROWS] && a->val[OPT_QUERIES]) {
                json_decref(msg);
                return usage_error("%s", "--rows and --queries go to different kinds: give one");
        }
        if (rows_path && ctl_rows_read(rows_path, &rows, &n_rows, &n_cols, err, sizeof(err)) < 0) {
                fprintf(stderr, "kilnctl: --%s: %s\n", rows_part, err);
                json_decref(msg);
                return EXIT_USAGE;
        }
        if (a->val[OPT_IMAGE] && (image_fd = open_image(a->val[OPT_IMAGE], &image_bytes)) < 0) {
                json_decref(msg);
                free(rows);
                return EXIT_USAGE;
        }
        if (a->val[OPT_INSTANCE] && (instance_fd = open_image(a->val[OPT_INSTANCE], &instance_bytes)) < 0) {
                json_decref(msg);
                free(rows);
                if (image_fd >= 0)
                        close(image_fd);
                return EXIT_USAGE;
        }
        if ((r = conn_open(x)) != 0) {
                json_decref(msg);
                free(rows);
                if (image_fd >= 0)
                        close(image_fd);
                if (instance_fd >= 0)
                        close(instance_fd);
                return r;
        }
        json_t *reply;
        int ref = ++x->c.next_ref;
        if (rows) {
                r = send_rows_part(&x->c, ref, rows_part, rows_path, rows, n_rows, n_cols);
                free(rows);
                if (r) {
                        json_decref(msg);
                        if (image_fd >= 0)
                                close(image_fd);
                        if (instance_fd >= 0)
                                close(instance_fd);
                        return r;
                }
        }
        if (image_fd >= 0) {
                r = send_file_part(&x->c, ref, "image", a->val[OPT_IMAGE], image_fd, image_bytes);
                close(image_fd);
                if (r) {
                        json_decref(msg);
                        if (instance_fd >= 0)
                                close(instance_fd);
                        return r;
                }
        }
        if (instance_fd >= 0) {
                r = send_file_part(&x->c, ref, "instance", a->val[OPT_INSTANCE], instance_fd, instance_bytes);
                close(instance_fd);
                if (r) {
                        json_decref(msg);
                        return r;
                }
        }
        if (conn_send_ref(&x->c, msg, ref) < 0 ||
            conn_await(&x->c, ref, REPLY_TIMEOUT_MS, "the submission's reply", &reply) < 0)
                return 1;
        if (!is_op(reply, "accepted") || !json_is_string(json_object_get(reply, "job"))) {
                print_error(reply);
                json_decref(reply);
                return 1;
        }
        char job[64];
        snprintf(job, sizeof(job), "%s", json_string_value(json_object_get(reply, "job")));
        if (x->c.json && !wait) {
                json_object_del(reply, "ref");
                print_json(reply, JSON_COMPACT);
        } else if (!x->c.json) {
                printf("%s\n", job);
        }
        fflush(stdout);
        json_decref(reply);
        if (!wait)
                return 0;
        return wait_done(&x->c, job, ref, NULL);
}

static int need_job(struct args *a, const char *what)
{
        uint8_t id[16];

        if (a->npos != 2) {
                fprintf(stderr, "kilnctl: %s needs exactly one job id\nTry 'kilnctl --help'.\n", what);
                return EXIT_USAGE;
        }
        if (kiln_uuid_parse(a->pos[1], id) < 0)
                return usage_error("\"%s\" is not a job id", a->pos[1]);
        return 0;
}

/* `result` and `watch`: the reply is the `done` itself (finished job, `result`),
 * or "ok" followed by the `done` when it comes. */
static int cmd_result(struct ctx *x)
{
        struct args *a = x->a;
        int r = need_job(a, cmd_names[a->cmd]);
        if (r)
                return r;
        if ((r = conn_open(x)) != 0)
                return r;
        json_t *reply;
        int ref;
        json_t *msg = json_pack("{s:s, s:s}", "op", cmd_names[a->cmd], "job", a->pos[1]);
        if (conn_call(&x->c, msg, "the reply", &reply, &ref) < 0)
                return 1;
        if (is_op(reply, "ok")) {
                json_decref(reply);
                reply = NULL;
        }
        return wait_done(&x->c, a->pos[1], ref, reply);
}

int simple_call(struct ctx *x, json_t *msg, json_t **ret)
{
        int r = conn_open(x);
        if (r) {
                json_decref(msg);
                return r;
        }
        json_t *reply;
        if (conn_call(&x->c, msg, "the reply", &reply, NULL) < 0)
                return 1;
        if (is_op(reply, "error")) {
                print_error(reply);
                json_decref(reply);
                return 1;
        }
        json_object_del(reply, "ref");
        if (x->c.json) {
                print_json(reply, JSON_COMPACT);
                json_decref(reply);
                return 0;
        }
        *ret = reply;
        return -1;
}

int cmd_vec_search(struct ctx *x)
{
        struct args *a = x->a, sub = *a;

        if (a->npos < 3)
                return usage_error("%s", "vec search needs COLL, then --queries FILE or query_id=ID");
        char coll[512];
        if ((size_t)snprintf(coll, sizeof(coll), "collection=%s", a->pos[2]) >= sizeof(coll))
                return usage_error("%s", "vec search: COLL is too long");
        for (int i = 3; i < a->npos; i++)
                if (!strncmp(a->pos[i], "collection=", 11))
                        return usage_error("vec search names its collection once, as COLL (not \"%s\")", a->pos[i]);
        char **pos = malloc((size_t)a->npos * sizeof(*pos));
        if (!pos) {
                fprintf(stderr, "kilnctl: out of memory\n");
                return 1;
        }
        pos[0] = "submit";
        pos[1] = "vec.search";
        pos[2] = coll;
        for (int i = 3; i < a->npos; i++)
                pos[i] = a->pos[i];
        sub.pos = pos;
        sub.cmd = CMD_SUBMIT;
        x->a = &sub;
        int r = cmd_submit(x);
        x->a = a;
        free(pos);
        return r;
}

static int cmd_status(struct ctx *x)
{
        json_t *reply = NULL;
        int r = need_job(x->a, "status");
        if (r)
                return r;
        r = simple_call(x, json_pack("{s:s, s:s}", "op", "status", "job", x->a->pos[1]), &reply);
        if (r >= 0)
                return r;
        const char *key;
        json_t *v;
        json_object_foreach(reply, key, v) {
                if (!strcmp(key, "op"))
                        continue;
                printf("%-10s ", key);
                print_value(v);
        }
        json_decref(reply);
        return 0;
}

static int cmd_cancel(struct ctx *x)
{
        json_t *reply = NULL;
        int r = need_job(x->a, "cancel");
        if (r)
                return r;
        r = simple_call(x, json_pack("{s:s, s:s}", "op", "cancel", "job", x->a->pos[1]), &reply);
        if (r >= 0)
                return r;
        /* The state the cancel found (`was`; a server without it: the state after)
         * and the state after: a queued job ends at once, a running one when its
         * kind next looks, a finished one is left as it was. */
        const char *state = json_string_value(json_object_get(reply, "state"));
        const char *was = json_string_value(json_object_get(reply, "was"));
        if (!was)
                was = state && !strcmp(state, "cancelled") ? "queued" : state;
        if (!was || !strcmp(was, "running"))
                printf("%s running: cancel requested, it ends cancelled when it next checks\n", x->a->pos[1]);
        else if (!strcmp(was, "queued"))
                printf("%s cancelled\n", x->a->pos[1]);
        else
                printf("%s %s: already finished, nothing cancelled\n", x->a->pos[1], was);
        json_decref(reply);
        return 0;
}

static int cmd_list(struct ctx *x)
{
        struct args *a = x->a;
        long long limit = 0;
        uint8_t id[16];

        if (a->npos != 1)
                return usage_error("list takes no words, only options (\"%s\")", a->pos[1]);
        if (a->val[OPT_LIMIT] && !parse_int(a->val[OPT_LIMIT], 1, 1000, &limit))
                return usage_error("--limit needs an integer 1..1000, not \"%s\"", a->val[OPT_LIMIT]);
        if (a->val[OPT_AFTER] && kiln_uuid_parse(a->val[OPT_AFTER], id) < 0)
                return usage_error("--after needs a job id, not \"%s\"", a->val[OPT_AFTER]);
        json_t *msg = json_pack("{s:s}", "op", "list");
        if (msg && a->val[OPT_STATE])
                json_object_set_new(msg, "state", json_string(a->val[OPT_STATE]));
        if (msg && a->val[OPT_KIND])
                json_object_set_new(msg, "kind", json_string(a->val[OPT_KIND]));
        if (msg && limit)
                json_object_set_new(msg, "limit", json_integer(limit));
        if (msg && a->val[OPT_AFTER])
                json_object_set_new(msg, "after", json_string(a->val[OPT_AFTER]));

        json_t *reply = NULL;
        int r = simple_call(x, msg, &reply);
        if (r >= 0)
                return r;
        json_t *jobs = json_object_get(reply, "jobs"), *e;
        size_t i;
        int kw = 4, sw = 5;
        json_array_foreach(jobs, i, e) {
                const char *k = json_string_value(json_object_get(e, "kind"));
                const char *s = json_string_value(json_object_get(e, "state"));
                if (k && (int)strlen(k) > kw)
                        kw = (int)strlen(k);
                if (s && (int)strlen(s) > sw)
                        sw = (int)strlen(s);
        }
        printf("%-36s  %-*s  %-*s  %s\n", "JOB", kw, "KIND", sw, "STATE", "SUBMITTED");
        json_array_foreach(jobs, i, e) {
                const char *j = json_string_value(json_object_get(e, "job"));
                const char *k = json_string_value(json_object_get(e, "kind"));
                const char *s = json_string_value(json_object_get(e, "state"));
                const char *t = json_string_value(json_object_get(e, "submitted"));
                printf("%-36s  %-*s  %-*s  %s\n", j ? j : "?", kw, k ? k : "?", sw, s ? s : "?", t ? t : "-");
        }
        /* The next page: the same list, after its last job. */
        const char *next = json_string_value(json_object_get(reply, "next"));
        if (next)
                fprintf(stderr, "more: kilnctl%s%s list%s%s%s%s%s%s --after %s\n", a->val[OPT_URL] ? " --url " : "",
                        a->val[OPT_URL] ? a->val[OPT_URL] : "", a->val[OPT_STATE] ? " --state " : "",
                        a->val[OPT_STATE] ? a->val[OPT_STATE] : "", a->val[OPT_KIND] ? " --kind " : "",
                        a->val[OPT_KIND] ? a->val[OPT_KIND] : "", limit ? " --limit " : "",
                        limit ? a->val[OPT_LIMIT] : "", next);
        json_decref(reply);
        return 0;
}

static int cmd_stats(struct ctx *x)
{
        json_t *reply = NULL;

        if (x->a->npos != 1)
                return usage_error("stats takes no words (\"%s\")", x->a->pos[1]);
        int r = simple_call(x, json_pack("{s:s}", "op", "stats"), &reply);
        if (r >= 0)
                return r;
        json_object_del(reply, "op");
        print_json(reply, JSON_INDENT(2));
        json_decref(reply);
        return 0;
}

static int cmd_token(struct ctx *x)
{
        struct args *a = x->a;
        const char *file = a->val[OPT_TOKENS_FILE] ? a->val[OPT_TOKENS_FILE] : "/etc/kiln/tokens";
        char token[65];

        if (a->npos < 2 || strcmp(a->pos[1], "new"))
                return usage_error("%s", "usage: kilnctl token new NAME TENANT ROLE [--tokens-file FILE]");
        if (a->npos != 5)
                return usage_error("%s", "token new needs NAME TENANT ROLE");
        if (!ctl_valid_name(a->pos[2]))
                return usage_error("invalid NAME \"%s\": use 1..63 of A-Z a-z 0-9 _ . -", a->pos[2]);
        if (!ctl_valid_name(a->pos[3]))
                return usage_error("invalid TENANT \"%s\": use 1..63 of A-Z a-z 0-9 _ . -", a->pos[3]);
        bool role_ok = false;
        for (int i = 0; i <= AUTH_ROLE_ADMIN; i++)
                role_ok |= !strcmp(a->pos[4], auth_role_name((enum auth_role)i));
        if (!role_ok)
                return usage_error("invalid ROLE \"%s\": one of read, submit, writer, admin", a->pos[4]);
        /* A file kilnd would refuse gets no line: the token would sign in nowhere. */
        char why[900];
        int r = ctl_tokens_check(file, a->pos[2], why, sizeof(why));
        if (r < 0) {
                fprintf(stderr, "kilnctl: %s%s; nothing was added\n", why,
                        r == -EEXIST ? "" : " (kilnd would refuse this tokens file)");
                return 1;
        }
        if ((r = ctl_token_make(token)) < 0) {
                fprintf(stderr, "kilnctl: cannot make a token: %s\n", strerror(-r));
                return 1;
        }
        /* Shown first: a token added but never seen would be a credential nobody holds. */
        if (printf("%s\n", token) < 0 || fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "kilnctl: cannot write the token to standard output: %s; nothing was added\n",
                        strerror(errno));
                return 1;
        }
        r = ctl_token_add(a->pos[2], a->pos[3], a->pos[4], file, token);
        if (r == -EEXIST) {
                fprintf(stderr, "kilnctl: %s already has a token named \"%s\"; the token above was not added\n",
                        file, a->pos[2]);
                return 1;
        }
        if (r < 0) {
                fprintf(stderr, "kilnctl: cannot add the token to %s: %s; the token above was not added\n", file,
                        strerror(-r));
                return 1;
        }
        fprintf(stderr, "added token \"%s\" (tenant %s, role %s) to %s; it is shown only this once\n", a->pos[2],
                a->pos[3], a->pos[4], file);
        return 0;
}

int main(int argc, char **argv)
{
        struct args a = { 0 };
        struct ctx x = { .a = &a };
        int r;

        signal(SIGPIPE, SIG_IGN);
        if ((r = parse_args(argc, argv, &a)) != 0) {
                free(a.pos);
                return r >= 0 ? r : kiln_stdout_written("kilnctl") < 0 ? 1 : 0; /* --help: 0 */
        }
        if (!a.val[OPT_URL]) {
                const char *env = getenv("KILN_URL");
                a.val[OPT_URL] = env && *env ? env : "ws://127.0.0.1:8080/ws";
        }
        if (!a.val[OPT_TOKEN]) {
                const char *env = getenv("KILN_TOKEN");
                a.val[OPT_TOKEN] = env && *env ? env : NULL;
        }
        double timeout_s = 0;
        if (a.val[OPT_TIMEOUT_S]) {
                char *end;
                timeout_s = strtod(a.val[OPT_TIMEOUT_S], &end);
                if (!*a.val[OPT_TIMEOUT_S] || *end || !(timeout_s > 0) || !isfinite(timeout_s)) {
                        free(a.pos);
                        return usage_error("--timeout-s needs a positive number, not \"%s\"", a.val[OPT_TIMEOUT_S]);
                }
        }
        x.timeout_s = timeout_s;
        /* --out is checked before anything is submitted: a job must not run for a
         * folder its parts cannot go to. It is made (with its parents) only when
         * the first part is written. */
        if (a.val[OPT_OUT]) {
                int e = ctl_out_dir_usable(a.val[OPT_OUT]);
                if (e) {
                        free(a.pos);
                        return usage_error("--out \"%s\": %s", a.val[OPT_OUT],
                                           *a.val[OPT_OUT] ? strerror(e) : "needs a folder");
                }
        }

        static int (*const run[_CMD_MAX])(struct ctx *) = {
                [CMD_SUBMIT] = cmd_submit, [CMD_STATUS] = cmd_status, [CMD_RESULT] = cmd_result,
                [CMD_LIST] = cmd_list,     [CMD_CANCEL] = cmd_cancel, [CMD_STATS] = cmd_stats,
                [CMD_WATCH] = cmd_result,  [CMD_TOKEN] = cmd_token,   [CMD_MODEL] = cmd_model,
                [CMD_VEC] = cmd_vec,
        };
        r = run[a.cmd](&x);
        conn_close(&x.c);
        free(a.pos);
        if (kiln_stdout_written("kilnctl") < 0 && r == 0)
                r = 1;
        return r;
}
