/* kilnctl's command layer, shared by its command files (kilnctl.c: arguments,
 * the session with the server, jobs; objects.c: stored models and collections). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ws.h"

#define EXIT_USAGE 2   /* a usage error, or a local input file kilnctl cannot send */
#define CONNECT_TIMEOUT_MS 10000
#define REPLY_TIMEOUT_MS 60000   /* for a plain reply when --timeout-s is not given */

enum cmd {
        CMD_SUBMIT,
        CMD_STATUS,
        CMD_RESULT,
        CMD_LIST,
        CMD_CANCEL,
        CMD_STATS,
        CMD_WATCH,
        CMD_TOKEN,
        CMD_MODEL,
        CMD_VEC,
        _CMD_MAX,
};

enum opt {
        OPT_URL,
        OPT_TOKEN,
        OPT_JSON,
        OPT_TIMEOUT_S,
        OPT_HELP,
        OPT_PRIORITY,
        OPT_TIMEOUT_MS,
        OPT_KEY,
        OPT_NO_WAIT,
        OPT_OUT,
        OPT_STATE,
        OPT_KIND,
        OPT_LIMIT,
        OPT_AFTER,
        OPT_TOKENS_FILE,
        OPT_NAME,
        OPT_METRIC,
        OPT_IDS,
        OPT_IMAGE,
        OPT_INSTANCE,
        OPT_ROWS,
        OPT_QUERIES,
        _OPT_MAX,
};

/* The parsed command line. */
struct args {
        const char *val[_OPT_MAX];   /* the value, or "" for a given flag; NULL when absent */
        char **pos;
        int npos;
        enum cmd cmd;
};

/* One session with the server. */
struct conn {
        struct ctl_ws *ws;
        const char *out_dir;           /* --out: where result parts are written (NULL: dropped) */
        struct ctl_part_file *rx_part; /* the result part arriving */
        const char *url;
        int next_ref;
        int64_t deadline;     /* from --timeout-s, monotonic ms; -1 when none */
        bool json;
        size_t max_message;   /* welcome.limits.max_message_bytes */
};

struct ctx {
        struct args *a;
        double timeout_s;   /* --timeout-s; 0 when not given */
        struct conn c;
};

/* Prints "kilnctl: ..." and a hint to stderr and returns EXIT_USAGE. */
__attribute__((format(printf, 1, 2))) int usage_error(const char *fmt, ...);

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t now_ms(void);

/* Connects to --url and says hello with --token; remembers the server's
 * max_message_bytes. Every binary message the server sends is a result part: it is
 * written under --out as it arrives, and conn_recv returns it as a binary message
 * whose `sunk` is its struct ctl_part_file (ctl_msg_free discards it when not
 * taken). Returns 0 or an exit code after printing why. */
int conn_open(struct ctx *x);

/* Closes the connection, discarding the parts received but not taken. Accepts a
 * connection that was never opened (zeroed). */
void conn_close(struct conn *c);

/* Receives the next message, bounded by the --timeout-s deadline or by
 * `default_ms` (< 0: none) when there is none. Prints why on failure; returns
 * >= 0 or -errno. */
int conn_recv(struct conn *c, int64_t default_ms, const char *what, struct ctl_msg **ret);

/* Sends `msg` as compact JSON. Returns >= 0 or -errno after printing why. */
int conn_send(struct conn *c, json_t *msg);

/* Sets "ref" on `msg` (stolen) and sends it. Returns >= 0 or -errno after printing why. */
int conn_send_ref(struct conn *c, json_t *msg, int ref);

/* Returns the first text message that echoes `ref` in *ret (new reference),
 * skipping anything else, waiting as conn_recv does. Returns >= 0 or -errno after
 * printing why. */
int conn_await(struct conn *c, int ref, int64_t default_ms, const char *what, json_t **ret);

/* conn_send_ref with a fresh ref (*ret_ref, may be NULL) and conn_await with
 * REPLY_TIMEOUT_MS. */
int conn_call(struct conn *c, json_t *msg, const char *what, json_t **ret, int *ret_ref);

/* A request answered by one reply (status, list, cancel, stats, object ops),
 * `msg` stolen. Returns the exit code, or -1 with the reply in *ret when it is not
 * an error and --json is not given (with --json it has been printed). */
int simple_call(struct ctx *x, json_t *msg, json_t **ret);

bool is_op(const json_t *j, const char *op);

/* Prints an error reply the way every command does: code, field, message on
 * stderr; with --json (print_errors_as_json) also the reply itself on stdout. */
void print_error(const json_t *e);
void print_errors_as_json(bool on);
void print_value(const json_t *v);
void print_json(const json_t *j, size_t flags);

/* A progress bar on stderr (callers show it only on a terminal). */
void progress_show(const char *label, int pct);
void progress_clear(void);

/* `model put|list|delete` and `vec put|info|list|delete|drop` (objects.c). */
int cmd_model(struct ctx *x);
int cmd_vec(struct ctx *x);
/* vec search COLL [KEY=VALUE...] [--queries FILE] [--out DIR] (kilnctl.c): the job
 * `submit vec.search collection=COLL KEY=VALUE...` would submit. */
int cmd_vec_search(struct ctx *x);
