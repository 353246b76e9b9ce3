/* kiln-bench: a load generator for any server that speaks kiln's WebSocket
 * protocol (SPEC §2, §5). Options, the run, and the report; the connections live
 * in load.c (and its load_*.c), the jobs in scenario.c, the percentiles in hdr.c.
 *
 * Exit status: 0 when the load ran (errors are counted and reported, not fatal),
 * 1 when no connection could be established, 2 on a usage error. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "util.h"
#include "proto.h"

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: kiln-bench --url ws://HOST:PORT/ws --scenario cached|small|mixed|heavy|score|score-model|relief|jobshop|vec\n"
                "                  [--connections N] [--duration S] [--rate R] [--pipeline P] [--collection C]\n"
                "                  [--model M] [--token T] [--idle N] [--accept-only] [--drain S] [--seed N] [--json]\n"
                "\n"
                "Closed loop by default: each connection keeps --pipeline jobs in flight (1) and\n"
                "latency runs from each submit's send time. With --rate R the load is open loop:\n"
                "R jobs/s in all, on a fixed schedule, latency from each job's scheduled time.\n"
                "Latency is submit to done and all of the job's binary parts; with --accept-only\n"
                "jobs are submitted with watch:false and latency is submit to accepted.\n"
                "--idle N opens N more connections first that only say hello and stay open.\n"
                "\n"
                "  --connections N   load connections (default 1)\n"
                "  --duration S      seconds of load (default 10)\n"
                "  --drain S         after the run, wait at most S s for jobs in flight (default 10)\n"
                "  --json            print one JSON object instead of the text report\n"
                "  --collection C    vec: the stored collection searched (one random query, k 10)\n"
                "  --model M         score-model: the stored model scored (one random row)\n"
                "  --token T         the API token sent in each hello (none by default)\n"
                "  --seed N          seed of the random parameters, for a run that can be repeated\n"
                "  -h, --help        print this summary\n");
}

static int parse_double(const char *s, double min, double max, double *ret)
{
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned *ret)
{
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || *s == '-' || v < min || v > max)
                return -EINVAL;
        *ret = (unsigned)v;
        return 0;
}

static double ms(const struct hdr *h, double pct)
{
        return (double)hdr_value_at(h, pct) / 1000.0;
}

/* The length of the UTF-8 sequence at p (RFC 3629: no overlong form, surrogate
 * or code point past U+10FFFF), 0 when there is none. Reads no further than a
 * byte that cannot continue it (a NUL included). */
static int utf8_len(const unsigned char *p)
{
        unsigned char lo = 0x80, hi = 0xBF;
        int n;

        if (p[0] < 0x80)
                return 1;
        if (p[0] >= 0xC2 && p[0] <= 0xDF)
                n = 2;
        else if (p[0] >= 0xE0 && p[0] <= 0xEF)
                n = 3, lo = p[0] == 0xE0 ? 0xA0 : 0x80, hi = p[0] == 0xED ? 0x9F : 0xBF;
        else if (p[0] >= 0xF0 && p[0] <= 0xF4)
                n = 4, lo = p[0] == 0xF0 ? 0x90 : 0x80, hi = p[0] == 0xF4 ? 0x8F : 0xBF;
        else
                return 0;
        if (p[1] < lo || p[1] > hi)
                return 0;
        for (int i = 2; i < n; i++)
                if ((p[i] & 0xC0) != 0x80)
                        return 0;
        return n;
}

/* s as the body of a JSON string: escaped, and valid UTF-8 whatever s holds (a
 * byte that starts no character becomes U+FFFD). */
static void print_json_text(const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                int n = utf8_len(p);
                if (!n) {
                        fputs("\\ufffd", stdout);
                        p++;
                } else if (*p == '"' || *p == '\\') {
                        printf("\\%c", *p++);
                } else if (*p < 0x20) {
                        printf("\\u%04x", *p++);
                } else {
                        fwrite(p, 1, (size_t)n, stdout);
                        p += n;
                }
        }
}

static void print_json(const struct bench_opts *o, const struct bench_result *r)
{
        const struct hdr *h = &r->latency;
        double jps = o->duration_s > 0 ? (double)r->jobs / o->duration_s : 0;
        printf("{\"scenario\":\"%s\",\"mode\":\"%s\",\"accept_only\":%s,\"connections\":%u,\"connected\":%u,"
               "\"idle\":%u,\"idle_connected\":%u,\"pipeline\":%u,\"rate\":%g,\"duration_s\":%g,"
               "\"jobs\":%llu,\"jobs_total\":%llu,\"jobs_per_s\":%.2f,"
               "\"p50_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,"
               "\"errors\":%llu,\"error_detail\":{\"error_replies\":%llu,\"failed\":%llu,\"bad_results\":%llu,"
               "\"connect\":%llu,\"dropped\":%llu,\"lost_jobs\":%llu,\"unfinished\":%llu},",
               bench_scenario_name(o->scenario), o->rate > 0 ? "open" : "closed", o->accept_only ? "true" : "false",
               o->connections, r->connected, o->idle, r->idle_connected, o->pipeline, o->rate, o->duration_s,
               (unsigned long long)r->jobs, (unsigned long long)r->jobs_total, jps, ms(h, 50), ms(h, 95), ms(h, 99),
               ms(h, 99.9), (double)h->max_us / 1000.0, (unsigned long long)bench_errors(r),
               (unsigned long long)r->err_replies, (unsigned long long)r->err_failed,
               (unsigned long long)r->err_bad_results, (unsigned long long)r->err_connect,
               (unsigned long long)r->err_dropped, (unsigned long long)r->err_lost_jobs,
               (unsigned long long)r->unfinished);
        printf("\"rss_start_kb\":%ld,\"rss_idle_kb\":%ld,\"rss_end_kb\":%ld,\"first_error\":", r->rss_start_kb,
               r->rss_idle_kb, r->rss_end_kb);
        /* The error text is ours or the server's: escape it. */
        putchar('"');
        print_json_text(r->first_error);
        printf("\"}\n");
}

static void print_text(const struct bench_opts *o, const struct bench_result *r)
{
        const struct hdr *h = &r->latency;

        printf("kiln-bench: scenario %s, %u connection(s), ", bench_scenario_name(o->scenario), r->connected);
        if (o->rate > 0)
                printf("open loop at %g jobs/s", o->rate);
        else
                printf("closed loop, %u in flight each", o->pipeline);
        printf(", %g s%s\n", o->duration_s, o->accept_only ? ", submit to accepted" : "");
        if (o->idle)
                printf("idle connections: %u of %u open; this process %ld KiB before, %ld KiB after them\n",
                       r->idle_connected, o->idle, r->rss_start_kb, r->rss_idle_kb);
        printf("jobs:    %llu in %g s = %.1f jobs/s (%llu with the drain)\n", (unsigned long long)r->jobs,
               o->duration_s, (double)r->jobs / o->duration_s, (unsigned long long)r->jobs_total);
        printf("latency: p50 %.3f ms  p95 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n", ms(h, 50), ms(h, 95),
               ms(h, 99), ms(h, 99.9), (double)h->max_us / 1000.0);
        printf("errors:  %llu (error replies %llu, failed jobs %llu, bad results %llu, connect %llu, dropped %llu, "
               "lost jobs %llu, unfinished %llu)\n",
               (unsigned long long)bench_errors(r), (unsigned long long)r->err_replies,
               (unsigned long long)r->err_failed, (unsigned long long)r->err_bad_results,
               (unsigned long long)r->err_connect, (unsigned long long)r->err_dropped,
               (unsigned long long)r->err_lost_jobs, (unsigned long long)r->unfinished);
        if (r->first_error[0])
                printf("first error: %s\n", r->first_error);
}

int main(int argc, char **argv)
{
        enum { OPT_PIPELINE = 256, OPT_IDLE, OPT_ACCEPT_ONLY, OPT_DRAIN, OPT_SEED, OPT_COLLECTION, OPT_MODEL };
        static const struct option longopts[] = {
                { "url", required_argument, NULL, 'u' },
                { "token", required_argument, NULL, 't' },
                { "scenario", required_argument, NULL, 's' },
                { "connections", required_argument, NULL, 'c' },
                { "duration", required_argument, NULL, 'd' },
                { "rate", required_argument, NULL, 'r' },
                { "json", no_argument, NULL, 'j' },
                { "pipeline", required_argument, NULL, OPT_PIPELINE },
                { "idle", required_argument, NULL, OPT_IDLE },
                { "accept-only", no_argument, NULL, OPT_ACCEPT_ONLY },
                { "drain", required_argument, NULL, OPT_DRAIN },
                { "seed", required_argument, NULL, OPT_SEED },
                { "collection", required_argument, NULL, OPT_COLLECTION },
                { "model", required_argument, NULL, OPT_MODEL },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        struct bench_opts o = {
                .connections = 1,
                .pipeline = 1,
                .duration_s = 10,
                .drain_s = 10,
                .scenario = _SCEN_MAX,
        };
        bool json = false, have_seed = false;
        unsigned seed = 0;
        int opt;

        while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                int r = 0;
                switch (opt) {
                case 'u':
                        o.url = optarg;
                        break;
                case 't':
                        o.token = optarg;
                        break;
                case 's':
                        r = bench_scenario_from_name(optarg, &o.scenario);
                        break;
                case 'c':
                        r = parse_uint(optarg, 1, 1000000, &o.connections);
                        break;
                case 'd':
                        r = parse_double(optarg, 0.001, 86400, &o.duration_s);
                        break;
                case 'r':
                        r = parse_double(optarg, 0.001, 1e8, &o.rate);
                        break;
                case 'j':
                        json = true;
                        break;
                case OPT_PIPELINE:
                        r = parse_uint(optarg, 1, 65535, &o.pipeline);
                        break;
                case OPT_IDLE:
                        r = parse_uint(optarg, 0, 1000000, &o.idle);
                        break;
                case OPT_ACCEPT_ONLY:
                        o.accept_only = true;
                        break;
                case OPT_DRAIN:
                        r = parse_double(optarg, 0, 3600, &o.drain_s);
                        break;
                case OPT_SEED:
                        r = parse_uint(optarg, 0, 0xffffffffu, &seed);
                        have_seed = true;
                        break;
                case OPT_COLLECTION:
                        o.collection = optarg;
                        break;
                case OPT_MODEL:
                        o.model = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return kiln_stdout_written("kiln-bench") < 0 ? 1 : 0;
                default:
                        usage(stderr);
                        return 2;
                }
                if (r < 0) {
                        const char *name = "?";
                        for (const struct option *l = longopts; l->name; l++)
                                if (l->val == opt)
                                        name = l->name;
                        fprintf(stderr, "kiln-bench: invalid value for --%s: %s\n", name, optarg);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "kiln-bench: unexpected argument \"%s\"\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        if (!o.url || o.scenario == _SCEN_MAX) {
                fprintf(stderr, "kiln-bench: --url and --scenario are required\n");
                usage(stderr);
                return 2;
        }
        struct kiln_ws_url url;
        int ur = kiln_ws_url_parse(o.url, &url);
        if (ur < 0) {
                fprintf(stderr, "kiln-bench: %s: %s\n",
                        ur == -ERANGE ? "port out of range (1 to 65535)" : "not a ws:// or wss:// URL", o.url);
                return 2;
        }
        if ((o.scenario == SCEN_VEC) != (o.collection != NULL)) {
                fprintf(stderr, "kiln-bench: --collection goes with --scenario vec, and vec needs it\n");
                return 2;
        }
        if (o.scenario == SCEN_VEC) {
                char why[256];
                int vr = bench_vec_setup(&o, why, sizeof(why));
                if (vr < 0) {
                        fprintf(stderr, "kiln-bench: %s\n", why);
                        return vr == -EINVAL ? 2 : 1;
                }
        }
        if ((o.scenario == SCEN_SCORE_MODEL) != (o.model != NULL)) {
                fprintf(stderr, "kiln-bench: --model goes with --scenario score-model, and score-model needs it\n");
                return 2;
        }
        if (o.scenario == SCEN_SCORE_MODEL) {
                char why[256];
                int mr = bench_model_setup(&o, why, sizeof(why));
                if (mr < 0) {
                        fprintf(stderr, "kiln-bench: %s\n", why);
                        return mr == -EINVAL ? 2 : 1;
                }
        }
        if (o.rate > 0 && o.pipeline != 1)
                fprintf(stderr, "kiln-bench: --pipeline applies to the closed loop only; ignored with --rate\n");
        o.seed = have_seed ? seed : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        o.progress = isatty(STDERR_FILENO);

        struct bench_result *res = malloc(sizeof(*res));
        if (!res) {
                fprintf(stderr, "kiln-bench: out of memory\n");
                return 1;
        }
        int r = bench_run(&o, res);
        if (r == -ECONNREFUSED) {
                fprintf(stderr, "kiln-bench: cannot connect to %s: %s\n", o.url,
                        res->first_error[0] ? res->first_error : "no connection succeeded");
                free(res);
                return 1;
        }
        if (r < 0) {
                fprintf(stderr, "kiln-bench: %s\n", strerror(-r));
                free(res);
                return 1;
        }
        if (json)
                print_json(&o, res);
        else
                print_text(&o, res);
        free(res);
        return kiln_stdout_written("kiln-bench") < 0 ? 1 : 0;
}
