/* kilnd: wiring, command line, signals, recovery, and the systemd protocol. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <systemd/sd-daemon.h>

#include "auth.h"
#include "cache.h"
#include "config.h"
#include "daemon.h"
#include "hotcache.h"
#include "jobs.h"
#include "kind.h"
#include "listen.h"
#include "log.h"
#include "mailbox.h"
#include "membudget.h"
#include "objects.h"
#include "scheduler.h"
#include "server.h"
#include "session.h"
#include "store.h"
#include "storeq.h"
#include "util.h"

extern char **environ;

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: kilnd [--config FILE] [--check-config | --print-config] [--version]\n"
                "\n"
                "  -c, --config FILE   configuration file (default " KILN_CONFIG_DEFAULT_PATH
                ", optional;\n"
                "                      drop-ins are read from FILE.d/*.conf)\n"
                "      --check-config  validate the configuration and exit\n"
                "      --print-config  print the effective configuration with each value's source\n"
                "      --version       print the version and exit\n"
                "  -h, --help          print this summary and exit\n");
}

static const char *const *kind_names(void)
{
        static const char *names[64];
        size_t n = 0;
        for (; kiln_kinds[n] && n < 63; n++)
                names[n] = kiln_kinds[n]->name;
        names[n] = NULL;
        return names;
}

/* ---- signals: a thread turns them into flags the loop reads ---- */

static pthread_t signal_tid;
/* The mailbox the signal thread wakes the loop through, while it exists (set after
 * mailbox_new, cleared before mailbox_free: the thread outlives both). */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mailbox *wake_mailbox;

static void set_wake_mailbox(struct mailbox *mb)
{
        pthread_mutex_lock(&wake_lock);
        wake_mailbox = mb;
        pthread_mutex_unlock(&wake_lock);
}

/* Runs only in a thread that does not block the signals (one a library started
 * before main set the mask): hands the signal to the signal thread, which blocks
 * it and takes it with sigwait. pthread_kill is async-signal-safe. */
static void forward_signal(int sig)
{
        int saved = errno;
        pthread_kill(signal_tid, sig);
        errno = saved;
}

static void *signal_thread(void *arg)
{
        struct kilnd *d = arg;
        sigset_t set;

        pthread_setname_np(pthread_self(), "kiln-signal");
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        for (;;) {
                int sig;
                if (sigwait(&set, &sig))
                        continue;
                if (sig == SIGHUP)
                        atomic_store(&d->sig_hup, true);
                else
                        atomic_store(&d->sig_term, true);
                /* The loop may not exist yet (start-up), or be going (server_stop):
                 * the mailbox wakes it only while its context lives; it reads the
                 * flags when it runs. */
                pthread_mutex_lock(&wake_lock);
                if (wake_mailbox)
                        mailbox_wake(wake_mailbox);
                pthread_mutex_unlock(&wake_lock);
                if (sig != SIGHUP && atomic_load(&d->sig_term) && d->quit)
                        break;
        }
        return NULL;
}

/* The files the configuration names, read as kilnd will read them: the tokens
 * file (its tokens into *ret_tokens, or freed when it is NULL) and the TLS
 * certificate and key. Returns >= 0, or -1 with why ("FILE: KEY: reason"). */
/* The TLS certificate chain and key read as OpenSSL will (PEM), and that they go
 * together: a file that is not one failed only when the listener was made, as
 * "cannot listen". Returns 0, or -1 with why set. */
static int check_tls(const struct kiln_config *c, char *why, size_t size)
{
        FILE *f = fopen(c->server.tls_cert, "r");
        X509 *cert = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
        if (f)
                fclose(f);
        if (!cert) {
                snprintf(why, size, "%.700s: server.tls_cert: not a PEM certificate", c->server.tls_cert);
                return -1;
        }
        f = fopen(c->server.tls_key, "r");
        EVP_PKEY *key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
        if (f)
                fclose(f);
        int r = 0;
        if (!key) {
                snprintf(why, size, "%.700s: server.tls_key: not a PEM private key (or one with a passphrase)",
                         c->server.tls_key);
                r = -1;
        } else if (X509_check_private_key(cert, key) != 1) {
                snprintf(why, size, "%.500s: server.tls_key: not the key of the certificate in %.300s",
                         c->server.tls_key, c->server.tls_cert);
                r = -1;
        }
        EVP_PKEY_free(key);
        X509_free(cert);
        ERR_clear_error();
        return r;
}

/* A directory the configuration names: absent is fine where kilnd makes it
 * (`may_be_absent`), anything but a directory is not. */
static int check_dir(const char *path, const char *key, bool may_be_absent, char *why, size_t size)
{
        struct stat st;
        if (stat(path, &st) < 0) {
                if (errno == ENOENT && may_be_absent)
                        return 0;
                snprintf(why, size, "%.700s: %s: %s", path, key, strerror(errno));
                return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
                snprintf(why, size, "%.700s: %s: not a directory", path, key);
                return -1;
        }
        return 0;
}

/* --check-config only (the start resolves it once, as it listens): whether the host
 * of server.listen resolves. Returns 0, or -1 with why set. */
static int check_listen_host(const struct kiln_config *c, char *why, size_t size)
{
        char host[128];
        uint16_t port;
        struct sockaddr_storage sa;
        socklen_t sa_len;
        if (kiln_config_listen_split(c->server.listen, host, sizeof(host), &port) < 0) { /* validated before */
                snprintf(why, size, "server.listen: '%.200s' is not HOST:PORT", c->server.listen);
                return -1;
        }
        return listen_resolve(host, port, &sa, &sa_len, why, size) < 0 ? -1 : 0;
}

/* The web UI's folder: without it kilnd serves the API, and / answers 404. A
 * warning (written by the caller), not an error. Returns whether there is one. */
static bool web_root_missing(const struct kiln_config *c, char *why, size_t size)
{
        return check_dir(c->server.web_root, "server.web_root", false, why, size) < 0;
}

static int check_files(const struct kiln_config *c, struct auth_tokens **ret_tokens, char *why, size_t size)
{
        const char *keys[] = { "server.tls_cert", "server.tls_key" };
        const char *paths[] = { c->server.tls_cert, c->server.tls_key };
        struct auth_tokens *t = NULL;
        unsigned bad = 0;
        int r = auth_tokens_load(c->auth.tokens_file, &t, &bad);

        if (r < 0) {
                auth_tokens_error(c->auth.tokens_file, "auth.tokens_file", r, bad, why, size);
                return -1;
        }
        for (size_t i = 0; i < 2; i++) {
                FILE *f;
                if (!paths[i][0])
                        continue;
                r = kiln_config_open_file(paths[i], &f);
                if (r < 0) {
                        snprintf(why, size, "%.700s: %s: %s", paths[i], keys[i],
                                 r == -EISDIR || r == -ENODEV ? "not a regular file" : strerror(-r));
                        auth_tokens_free(t);
                        return -1;
                }
                fclose(f);
        }
        /* What would otherwise fail only when the listener is made. */
        if ((c->server.tls_cert[0] && check_tls(c, why, size) < 0) ||
            check_dir(c->store.path, "store.path", true, why, size) < 0) {
                auth_tokens_free(t);
                return -1;
        }
        if (ret_tokens)
                *ret_tokens = t;
        else
                auth_tokens_free(t);
        return 0;
}

/* ---- start and stop ---- */

/* A compiled object is released: the backends drop their device copies of it. */
static void release_on_devices(void *ctx, const struct kiln_object *obj)
{
        sched_object_released(ctx, obj);
}

static void teardown(struct kilnd *d)
{
        /* Running jobs stop without finishing: they stay queued in the store. */
        if (d->jobs)
                jobs_stop_all(d->jobs);
        if (d->objects) /* the devices' copies go with the backends */
                objects_set_release_hook(d->objects, NULL, NULL);
        sched_free(d->sched);
        d->sched = NULL;
        objects_stop(d->objects); /* uploads being checked post their mail, drained below */
        if (d->jobs)
                jobs_set_sched(d->jobs, NULL);
        if (d->storeq)
                storeq_flush(d->storeq);
        store_writer_stop(d->writer); /* every queued write is committed first */
        d->writer = NULL;
        if (d->mailbox)
                mailbox_drain(d->mailbox);
        server_stop(d);
        jobs_free(d->jobs);
        d->jobs = NULL;
        storeq_free(d->storeq);
        d->storeq = NULL;
        hotcache_clear(); /* jobs still holding copies keep them until they go */
        free(d->sessions);
        objects_free(d->objects);
        membudget_free(d->mem); /* after everything that takes from it */
        set_wake_mailbox(NULL);
        mailbox_free(d->mailbox);
        store_close(d->store);
        auth_tokens_free(d->tokens);
        kiln_config_free(d->cfg);
}

#define KILN_MMAP_THRESHOLD (1 << 20)

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, 'C' },
                { "print-config", no_argument, NULL, 'P' },
                { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        /* Static: the signal thread, detached, may still look at it while the
         * process exits. */
        static struct kilnd daemon = { .config_path = KILN_CONFIG_DEFAULT_PATH, .config_path_optional = true };
        struct kilnd *d = &daemon;
        bool check = false, print = false, version = false;

        /* Results and inputs of a MiB and more get pages of their own, given back to
         * the system when freed: glibc would otherwise raise its mmap threshold after
         * the first big free and keep later ones in its arenas, so that kilnd's
         * resident memory stayed at its high-water mark long after memory.max_bytes
         * had been given back. */
        mallopt(M_MMAP_THRESHOLD, KILN_MMAP_THRESHOLD);
        int c, r;

        while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        if (!*optarg) {
                                fprintf(stderr, "kilnd: --config needs a file name\n");
                                return 2;
                        }
                        d->config_path = optarg;
                        d->config_path_optional = false;
                        break;
                case 'C':
                        check = true;
                        break;
                case 'P':
                        print = true;
                        break;
                case 'V':
                        version = true; /* once every option is known good */
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "kilnd: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        if (version) {
                printf("kilnd %s\n", KILN_VERSION);
                return kiln_stdout_written("kilnd") < 0 ? 1 : 0;
        }

        struct kiln_config_error err;
        r = kiln_config_load(d->config_path, d->config_path_optional, environ, kind_names(), &d->cfg, &err);
        if (r < 0) {
                char line[1024];
                fprintf(stderr, "kilnd: %s\n", kiln_config_error_format(&err, line, sizeof(line)));
                return 1;
        }
        char why[1024];
        if (check || print) {
                r = 0;
                if (print) {
                        kiln_config_print(d->cfg, stdout);
                } else if (check_files(d->cfg, NULL, why, sizeof(why)) < 0 ||
                           check_listen_host(d->cfg, why, sizeof(why)) < 0) {
                        fprintf(stderr, "kilnd: %s\n", why);
                        r = 1;
                } else {
                        if (web_root_missing(d->cfg, why, sizeof(why)))
                                fprintf(stderr, "kilnd: warning: %s (the web UI will answer 404)\n", why);
                        printf("kilnd: configuration is valid\n");
                }
                kiln_config_free(d->cfg);
                if (kiln_stdout_written("kilnd") < 0)
                        r = 1;
                return r;
        }

        kiln_log_init(d->cfg->log.target, d->cfg->log.level);
        if (check_files(d->cfg, &d->tokens, why, sizeof(why)) < 0) {
                log_error("%s", why);
                kiln_config_free(d->cfg);
                return 1;
        }
        if (web_root_missing(d->cfg, why, sizeof(why)))
                log_warning("%s: the web UI will answer 404", why);
        d->started_mono = kiln_mono_ms();

        /* Signals are taken by one thread; every other thread inherits the mask. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);
        /* A store write past the file size limit (LimitFSIZE=) fails, and the store
         * takes it for no room, rather than the signal ending kilnd. */
        signal(SIGXFSZ, SIG_IGN);
        pthread_create(&signal_tid, NULL, signal_thread, d);
        pthread_detach(signal_tid);
        /* Threads that libraries start before main (a BLAS's pool) do not have the
         * mask: a signal the kernel hands one of them is forwarded here. */
        struct sigaction sa = { .sa_handler = forward_signal };
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);

        if (d->cfg->auth.required && !auth_tokens_count(d->tokens))
                log_warning("auth.required is on but %s holds no token: no client can sign in "
                            "(create one with `kilnctl token new`)",
                            d->cfg->auth.tokens_file);

        r = mailbox_new(&d->mailbox);
        if (r < 0)
                goto fail;
        set_wake_mailbox(d->mailbox);
        /* One budget for inputs, results and output buffers (memory.max_bytes, worked
         * out by the configuration when 0); SIGHUP changes its limit. */
        r = membudget_new(d->cfg->memory.max_bytes, &d->mem);
        if (r < 0)
                goto fail;
        enum store_sync_mode sync = d->cfg->store.sync == KILN_SYNC_FULL    ? STORE_SYNC_FULL
                                    : d->cfg->store.sync == KILN_SYNC_BATCH ? STORE_SYNC_BATCH
                                                                            : STORE_SYNC_OFF;
        r = store_open(d->cfg->store.path, (uint64_t)d->cfg->store.map_size_gb << 30, sync, &d->store);
        if (r == -EBUSY) {
                long pid = store_holder(d->cfg->store.path);
                char by[40] = "";
                if (pid > 0)
                        snprintf(by, sizeof(by), " (pid %ld)", pid);
                log_error("cannot open the job store in %s: another kilnd%s has it open (store.path; its lock "
                          "is %s/" STORE_LOCK_FILE ")", d->cfg->store.path, by, d->cfg->store.path);
                goto fail;
        }
        if (r < 0) {
                log_error("cannot open the job store in %s: %s", d->cfg->store.path, strerror(-r));
                goto fail;
        }
        /* A map set below what the store holds: LMDB takes the store's size as the
         * map, which leaves no room at all, not even to delete. */
        struct store_room room;
        uint64_t map = (uint64_t)d->cfg->store.map_size_gb << 30;
        if (store_room(d->store, &room) >= 0 && room.used > map) {
                log_error("store.map_size_gb = %u is less than the store in %s already holds (%.2f GiB): set it "
                          "to %llu or more",
                          d->cfg->store.map_size_gb, d->cfg->store.path, (double)room.used / (1 << 30),
                          (unsigned long long)((room.used + (1ull << 30) - 1) >> 30) + 1);
                goto fail;
        }
        if (store_orphan_error(d->store))
                log_warning("the store's pieces of inputs whose job was never stored could not be deleted now (%s): "
                            "they are tried again at the next start",
                            strerror(-store_orphan_error(d->store)));
        if (store_orphan_pieces(d->store))
                log_notice("the store held %zu pieces of inputs whose job was never stored (a stop in the middle "
                           "of a big submission): deleted", store_orphan_pieces(d->store));
        r = store_writer_start(d->store, &d->writer);
        if (r < 0) {
                log_error("cannot start the store writer: %s", strerror(-r));
                goto fail;
        }
        r = storeq_new(d->writer, &d->storeq);
        if (r < 0)
                goto fail;
        r = objects_new(d->store, d->mailbox, &d->objects);
        if (r < 0) {
                log_error("cannot read the stored models and collections: %s", strerror(-r));
                goto fail;
        }
        objects_set_cache_limits(d->objects, d->cfg->memory.objects_cache_bytes, OBJECTS_IDLE_MAX_ENTRIES);
        struct jobs_deps deps = {
                .cfg = d->cfg,
                .store = d->store,
                .objects = d->objects,
                .storeq = d->storeq,
                .mailbox = d->mailbox,
                .mem = d->mem,
                .events = sessions_job_events(d),
        };
        r = jobs_new(&deps, &d->jobs);
        if (r < 0)
                goto fail;
        r = sched_new(d->cfg, jobs_sched_sink(d->jobs), d->mem, &d->sched);
        if (r < 0) {
                log_error("cannot start the backends and workers: %s", strerror(-r));
                goto fail;
        }
        jobs_set_sched(d->jobs, d->sched);
        objects_set_release_hook(d->objects, release_on_devices, d->sched);
        unsigned queued = 0, bad = 0;
        r = jobs_recover(d->jobs, d->store, &queued, &bad);
        if (r < 0) {
                log_error("cannot read queued jobs from the store: %s", strerror(-r));
                goto fail;
        }
        if (queued || bad)
                log_notice("recovered %u queued jobs from the store (%u unusable)", queued, bad);
        struct store_policy policy;
        cache_policy(d->cfg, &policy);
        store_writer_set_policy(d->writer, &policy);
        r = server_start(d);
        if (r < 0) {
                if (r != -EADDRNOTAVAIL && r != -EPERM) /* else said */
                        log_error("cannot listen on %s (is the port in use or the address invalid?)",
                                  d->cfg->server.listen);
                goto fail;
        }
        log_notice("kilnd %s serving http://%s/ (store %s, %u CPU threads, memory budget %llu MiB, auth %s)",
                   KILN_VERSION, d->cfg->server.listen, d->cfg->store.path, sched_threads(d->sched),
                   (unsigned long long)(d->cfg->memory.max_bytes >> 20), d->cfg->auth.required ? "required" : "off");
        sd_notifyf(0, "READY=1\nSTATUS=Serving on %s\nMAINPID=%lu", d->cfg->server.listen, (unsigned long)getpid());

        server_run(d);

        log_notice("stopped serving; flushing the store");
        teardown(d);
        return 0;
fail:
        teardown(d);
        return 1;
}
