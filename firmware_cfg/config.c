/* Loading kiln's configuration: defaults, the INI file, its drop-ins, the environment,
 * with the source of every value remembered for --print-config.
 *
 * The INI reader is our own rather than inih: the Debian inih is built without line
 * numbers for handlers (INI_HANDLER_LINENO 0) and with a 200-byte line limit, and every
 * error here must name its file and line. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "schema.h"
#include "sysmem.h"

enum source_kind { SOURCE_DEFAULT, SOURCE_FILE, SOURCE_ENV };

struct source {
        enum source_kind kind;
        char *name;     /* the file path or the variable name; NULL for a default */
        unsigned line;  /* for SOURCE_FILE */
        char *note;     /* how a value of 0 ("auto") was worked out (--print-config); NULL */
};

struct kiln_config_sources {
        struct source *keys;   /* kiln_cfg_n_keys entries, parallel to kiln_cfg_keys */
        struct source *batch;  /* KILN_CONFIG_MAX_BATCH_KINDS * kiln_cfg_n_batch_keys */
};

/* Where the reader is and what it reads into. */
struct loader {
        struct kiln_config *c;
        const char *const *known_kinds;
        struct kiln_config_error *err;
        const char *file;        /* current file, or NULL while reading the environment */
        unsigned line;
        const char *section;     /* fixed section name, or NULL */
        long batch;              /* index into c->batch for a [batch.KIND] section, or -1 */
        bool in_section;
};

/* Copies src into dst[size], truncating; dst is always terminated. */
static void copy_str(char *dst, size_t size, const char *src)
{
        size_t n;

        if (size == 0)
                return;
        n = strnlen(src, size - 1);
        memcpy(dst, src, n);
        dst[n] = '\0';
}

static void set_error(struct kiln_config_error *err, const char *file, unsigned line,
                      const char *key, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

static void set_error(struct kiln_config_error *err, const char *file, unsigned line,
                      const char *key, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return;
        copy_str(err->file, sizeof(err->file), file ? file : "");
        err->line = line;
        copy_str(err->key, sizeof(err->key), key ? key : "");
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
}

static void source_clear(struct source *s)
{
        free(s->name);
        s->name = NULL;
        free(s->note);
        s->note = NULL;
        s->kind = SOURCE_DEFAULT;
        s->line = 0;
}

static int source_set(struct source *s, enum source_kind kind, const char *name, unsigned line)
{
        char *copy = strdup(name);

        if (!copy)
                return -ENOMEM;
        free(s->name);
        s->kind = kind;
        s->name = copy;
        s->line = line;
        return 0;
}

static struct source *batch_source(const struct kiln_config *c, size_t batch, size_t key)
{
        return &c->sources->batch[batch * kiln_cfg_n_batch_keys + key];
}

static void batch_defaults(struct kiln_batch_config *b, const char *kind)
{
        char msg[256];

        memset(b, 0, sizeof(*b));
        copy_str(b->kind, sizeof(b->kind), kind);
        for (size_t i = 0; i < kiln_cfg_n_batch_keys; i++)
                (void)kiln_cfg_parse_value(&kiln_cfg_batch_keys[i], kiln_cfg_batch_keys[i].def,
                                           b, msg, sizeof(msg));
}

/* Sets how key k's value of 0 ("auto") was worked out, for --print-config ("" or
 * NULL: it was set, no note). */
static void auto_note(struct kiln_config *c, const struct kiln_cfg_key *k, const char *why)
{
        struct source *src = &c->sources->keys[k - kiln_cfg_keys];
        char *note = NULL;

        if (why && *why && asprintf(&note, "auto: %s", why) < 0)
                note = NULL; /* no memory: no note */
        free(src->note);
        src->note = note;
}

/* memory.max_bytes = 0 ("auto"): half of the machine's memory or of its cgroup's
 * limit, kept within the key's range, with the reason noted for --print-config.
 * A figure that was set is left alone. */
static void resolve_memory(struct kiln_config *c)
{
        const struct kiln_cfg_key *k = kiln_cfg_find("memory", "max_bytes");
        struct kiln_sysmem m;
        char why[1200];
        uint64_t v;

        auto_note(c, k, NULL);
        if (c->memory.max_bytes)
                return;
        if (kiln_sysmem_probe("", &m) < 0) {
                v = k->min;
                snprintf(why, sizeof(why), "the machine's memory is unknown: the least allowed");
        } else {
                v = kiln_sysmem_half(&m, why, sizeof(why));
        }
        if (v < k->min)
                v = k->min;
        if (v > k->max)
                v = k->max;
        c->memory.max_bytes = v;
        auto_note(c, k, why);
}

/* memory.objects_cache_bytes = 0 ("auto"): half of memory.max_bytes (resolved
 * first: half of its range is within this key's). A figure that was set is left
 * alone. */
static void resolve_objects_cache(struct kiln_config *c)
{
        const struct kiln_cfg_key *k = kiln_cfg_find("memory", "objects_cache_bytes");

        auto_note(c, k, NULL);
        if (c->memory.objects_cache_bytes)
                return;
        c->memory.objects_cache_bytes = c->memory.max_bytes / 2;
        auto_note(c, k, "half of memory.max_bytes");
}

/* Every key at its schema default, values still as the table has them (0 for
 * memory.max_bytes). */
static struct kiln_config *new_raw_defaults(void)
{
        struct kiln_config *c = calloc(1, sizeof(*c));
        char msg[256];

        if (!c)
                return NULL;
        c->sources = calloc(1, sizeof(*c->sources));
        if (!c->sources)
                goto fail;
        c->sources->keys = calloc(kiln_cfg_n_keys, sizeof(struct source));
        c->sources->batch = calloc(KILN_CONFIG_MAX_BATCH_KINDS * kiln_cfg_n_batch_keys,
                                   sizeof(struct source));
        if (!c->sources->keys || !c->sources->batch)
                goto fail;
        for (size_t i = 0; i < kiln_cfg_n_keys; i++)
                if (kiln_cfg_parse_value(&kiln_cfg_keys[i], kiln_cfg_keys[i].def, c, msg,
                                         sizeof(msg)) < 0)
                        goto fail; /* a schema default that does not parse: a bug */
        return c;
fail:
        kiln_config_free(c);
        return NULL;
}

/* Allocates a configuration with every key at its schema default and no [batch.KIND]
 * sections, memory.max_bytes worked out for this machine. Returns NULL only when out
 * of memory. */
struct kiln_config *kiln_config_new_defaults(void)
{
        struct kiln_config *c = new_raw_defaults();

        if (c) {
                resolve_memory(c);
                resolve_objects_cache(c);
        }
        return c;
}

/* Frees a configuration and its source records; accepts NULL. */
void kiln_config_free(struct kiln_config *c)
{
        if (!c)
                return;
        if (c->sources) {
                if (c->sources->keys)
                        for (size_t i = 0; i < kiln_cfg_n_keys; i++)
                                source_clear(&c->sources->keys[i]);
                if (c->sources->batch)
                        for (size_t i = 0; i < KILN_CONFIG_MAX_BATCH_KINDS * kiln_cfg_n_batch_keys; i++)
                                source_clear(&c->sources->batch[i]);
                free(c->sources->keys);
                free(c->sources->batch);
                free(c->sources);
        }
        free(c);
}

static bool kind_known(const char *const *known_kinds, const char *kind)
{
        for (size_t i = 0; known_kinds && known_kinds[i]; i++)
                if (strcmp(known_kinds[i], kind) == 0)
                        return true;
        return false;
}

/* Finds or adds the [batch.KIND] entry. Returns its index, or -ENOSPC. */
static long batch_index(struct kiln_config *c, const char *kind)
{
        for (size_t i = 0; i < c->n_batch; i++)
                if (strcmp(c->batch[i].kind, kind) == 0)
                        return (long)i;
        if (c->n_batch >= KILN_CONFIG_MAX_BATCH_KINDS)
                return -ENOSPC;
        batch_defaults(&c->batch[c->n_batch], kind);
        return (long)c->n_batch++;
}

/* Checks a [batch.KIND] kind and returns its entry, or fails with err filled. */
static long open_batch(struct loader *l, const char *kind, const char *what)
{
        long idx;

        if (!kind_known(l->known_kinds, kind)) {
                set_error(l->err, l->file ? l->file : "environment", l->line, what,
                          "unknown job kind '%s' in [batch.%s]", kind, kind);
                return -EINVAL;
        }
        if (strlen(kind) >= sizeof(l->c->batch[0].kind)) {
                set_error(l->err, l->file ? l->file : "environment", l->line, what,
                          "job kind name '%s' is too long", kind);
                return -EINVAL;
        }
        idx = batch_index(l->c, kind);
        if (idx < 0)
                set_error(l->err, l->file ? l->file : "environment", l->line, what,
                          "more than %d [batch.KIND] sections", KILN_CONFIG_MAX_BATCH_KINDS);
        return idx < 0 ? -EINVAL : idx;
}

/* Parses a value for k into base and records its source. `what` names the key in
 * errors ("store.sync" or the variable name). */
static int apply(struct loader *l, const struct kiln_cfg_key *k, void *base, struct source *src,
                 const char *value, const char *what, const char *env_name)
{
        char msg[400];
        int r;

        r = kiln_cfg_parse_value(k, value, base, msg, sizeof(msg));
        if (r < 0) {
                if (env_name)
                        set_error(l->err, "environment", 0, env_name, "%s (%s)", msg, what);
                else
                        set_error(l->err, l->file, l->line, what, "%s", msg);
                return -EINVAL;
        }
        r = env_name ? source_set(src, SOURCE_ENV, env_name, 0)
                     : source_set(src, SOURCE_FILE, l->file, l->line);
        if (r < 0)
                set_error(l->err, l->file ? l->file : "environment", l->line, what, "out of memory");
        return r;
}

static char *trim(char *s)
{
        char *end;

        while (*s == ' ' || *s == '\t')
                s++;
        end = s + strlen(s);
        while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
                *--end = '\0';
        return s;
}

/* True when s, after blanks, is empty or a comment. */
static bool only_comment(const char *s)
{
        while (*s == ' ' || *s == '\t')
                s++;
        return *s == '\0' || *s == '#' || *s == ';';
}

static int malformed(struct loader *l, const char *why)
{
        set_error(l->err, l->file, l->line, "", "%s; expected [section], key = value, "
                  "a comment (# or ;) or a blank line", why);
        return -EINVAL;
}

static int handle_section(struct loader *l, char *s)
{
        char *close = strchr(s, ']');
        char *name;
        long idx;

        if (!close)
                return malformed(l, "section header without ']'");
        if (!only_comment(close + 1))
                return malformed(l, "text after a section header");
        *close = '\0';
        name = trim(s + 1);
        if (*name == '\0')
                return malformed(l, "empty section name");
        l->in_section = true;
        l->section = NULL;
        l->batch = -1;
        for (size_t i = 0; kiln_cfg_sections[i]; i++) {
                if (strcmp(kiln_cfg_sections[i], name) == 0) {
                        l->section = kiln_cfg_sections[i];
                        return 0;
                }
        }
        if (strncmp(name, "batch.", 6) == 0) {
                idx = open_batch(l, name + 6, name);
                if (idx < 0)
                        return (int)idx;
                l->batch = idx;
                return 0;
        }
        set_error(l->err, l->file, l->line, name, "unknown section [%s]", name);
        return -EINVAL;
}

/* Extracts the value after '=': a double-quoted string taken as is, or the text up to
 * an inline comment (whitespace then '#' or ';'), trimmed. Returns NULL when malformed. */
static char *extract_value(char *raw, const char **ret_why)
{
        char *t = raw;

        while (*t == ' ' || *t == '\t')
                t++;
        if (*t == '"') {
                char *close = strchr(t + 1, '"');
                if (!close) {
                        *ret_why = "unterminated quoted value";
                        return NULL;
                }
                if (!only_comment(close + 1)) {
                        *ret_why = "text after a quoted value";
                        return NULL;
                }
                *close = '\0';
                return t + 1;
        }
        for (char *p = raw; *p; p++) {
                if ((*p == '#' || *p == ';') && p > raw && (p[-1] == ' ' || p[-1] == '\t')) {
                        *p = '\0';
                        break;
                }
        }
        return trim(raw);
}

static int handle_key(struct loader *l, char *s)
{
        char *eq = strchr(s, '=');
        const char *why = NULL;
        char *key, *value;
        char what[256];

        if (!eq)
                return malformed(l, "line is not key = value");
        *eq = '\0';
        key = trim(s);
        if (*key == '\0')
                return malformed(l, "missing key before '='");
        value = extract_value(eq + 1, &why);
        if (!value)
                return malformed(l, why);
        if (!l->in_section) {
                set_error(l->err, l->file, l->line, key, "key outside any [section]");
                return -EINVAL;
        }
        if (l->batch >= 0) {
                struct kiln_batch_config *b = &l->c->batch[l->batch];
                const struct kiln_cfg_key *k = kiln_cfg_find_batch(key);

                snprintf(what, sizeof(what), "batch.%s.%.128s", b->kind, key);
                if (!k) {
                        set_error(l->err, l->file, l->line, what, "unknown key '%s' in [batch.%s]",
                                  key, b->kind);
                        return -EINVAL;
                }
                return apply(l, k, b, batch_source(l->c, (size_t)l->batch,
                                                   (size_t)(k - kiln_cfg_batch_keys)),
                             value, what, NULL);
        }

        const struct kiln_cfg_key *k = kiln_cfg_find(l->section, key);

        snprintf(what, sizeof(what), "%s.%.128s", l->section, key);
        if (!k) {
                set_error(l->err, l->file, l->line, what, "unknown key '%s' in [%s]", key,
                          l->section);
                return -EINVAL;
        }
        return apply(l, k, l->c, &l->c->sources->keys[k - kiln_cfg_keys], value, what, NULL);
}

static int handle_line(struct loader *l, char *line)
{
        char *s = line;

        while (*s == ' ' || *s == '\t')
                s++;
        if (*s == '\0' || *s == '#' || *s == ';')
                return 0;
        if (*s == '[')
                return handle_section(l, s);
        return handle_key(l, s);
}

int kiln_config_open_file(const char *path, FILE **ret)
{
        struct stat st;
        /* O_NONBLOCK: an open of a FIFO would wait for a writer (a SIGHUP then held
         * the event loop for good); a regular file reads the same either way. */
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY), r;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                return S_ISDIR(st.st_mode) ? -EISDIR : -ENODEV;
        }
        *ret = fdopen(fd, "r");
        if (!*ret) {
                r = -errno;
                close(fd);
                return r;
        }
        return 0;
}

/* Reads one INI file into l->c. A missing file is fine when `optional`. */
static int load_file(struct loader *l, const char *path, bool optional)
{
        char *buf = NULL;
        size_t cap = 0;
        ssize_t len;
        FILE *f;
        int r = kiln_config_open_file(path, &f);

        if (r < 0) {
                if (r == -ENOENT && optional)
                        return 0;
                if (r == -EISDIR || r == -ENODEV)
                        set_error(l->err, path, 0, "", "not a regular file");
                else
                        set_error(l->err, path, 0, "", "cannot open: %s", strerror(-r));
                return r;
        }
        l->file = path;
        l->line = 0;
        l->section = NULL;
        l->batch = -1;
        l->in_section = false;
        errno = 0;
        while ((len = getline(&buf, &cap, f)) >= 0) {
                char *s = buf;

                l->line++;
                while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                        buf[--len] = '\0';
                if (strlen(buf) != (size_t)len) {
                        r = malformed(l, "line contains a NUL byte");
                        break;
                }
                if (l->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
                        s += 3;
                r = handle_line(l, s);
                if (r < 0)
                        break;
                errno = 0;
        }
        if (r == 0 && ferror(f)) {
                r = errno ? -errno : -EIO;
                set_error(l->err, path, l->line + 1, "", "read error: %s", strerror(-r));
        }
        free(buf);
        fclose(f);
        l->file = NULL;
        l->line = 0;
        return r;
}

static int cmp_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_dropin_name(const char *name)
{
        size_t n = strlen(name);

        return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".conf") == 0;
}

/* Reads `<path>.d/ *.conf` in strcmp order; a missing directory is fine. */
static int load_dropins(struct loader *l, const char *path)
{
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        char *dir = NULL;
        DIR *d;
        int r = 0;

        if (asprintf(&dir, "%s.d", path) < 0) {
                set_error(l->err, path, 0, "", "out of memory");
                return -ENOMEM;
        }
        d = opendir(dir);
        if (!d) {
                r = -errno;
                if (r == -ENOENT)
                        r = 0;
                else
                        set_error(l->err, dir, 0, "", "cannot open drop-in directory: %s",
                                  strerror(-r));
                free(dir);
                return r;
        }
        errno = 0;
        while ((de = readdir(d))) {
                if (!is_dropin_name(de->d_name))
                        continue;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        char **grown = realloc(names, ncap * sizeof(*names));
                        if (!grown) {
                                r = -ENOMEM;
                                break;
                        }
                        names = grown;
                        cap = ncap;
                }
                if (asprintf(&names[n], "%s/%s", dir, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        if (r < 0)
                set_error(l->err, dir, 0, "", "out of memory");
        closedir(d);
        if (r == 0) {
                if (n) /* names is NULL for an empty folder: qsort's pointer may not be */
                        qsort(names, n, sizeof(*names), cmp_names);
                for (size_t i = 0; i < n && r == 0; i++)
                        r = load_file(l, names[i], false);
        }
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        free(dir);
        return r;
}

/* KILN_ + upper(section) + _ + upper(key), '.' and '-' as '_'. */
static void env_name(const char *section, const char *key, char *buf, size_t size)
{
        snprintf(buf, size, "KILN_%s_%s", section, key);
        for (char *p = buf; *p; p++) {
                if (*p == '.' || *p == '-')
                        *p = '_';
                else
                        *p = (char)toupper((unsigned char)*p);
        }
}

/* Whether a KILN_* variable is configuration: KILN_ then a section (KILN_SERVER_...,
 * KILN_BATCH_...). Others (kilnctl's KILN_URL and KILN_TOKEN, KILN_PLUGIN_DIR,
 * KILN_POLL_LOOP, KILN_CUDA_FAULT, KILN_TEST_*) belong to someone else and are left
 * alone, while a misspelt key of a real section is still an error. */
static bool env_is_config(const char *name)
{
        char prefix[64];

        for (size_t i = 0; kiln_cfg_sections[i]; i++) {
                env_name(kiln_cfg_sections[i], "", prefix, sizeof(prefix));
                if (strncmp(name, prefix, strlen(prefix)) == 0)
                        return true;
        }
        return strncmp(name, "KILN_BATCH_", 11) == 0;
}

/* Applies one KILN_* variable; `name` is NAME, `value` what follows '='. */
static int apply_env(struct loader *l, const char *name, const char *value)
{
        char want[256], what[256], section[64];

        for (size_t i = 0; i < kiln_cfg_n_keys; i++) {
                const struct kiln_cfg_key *k = &kiln_cfg_keys[i];

                env_name(k->section, k->key, want, sizeof(want));
                if (strcmp(want, name) != 0)
                        continue;
                snprintf(what, sizeof(what), "%s.%s", k->section, k->key);
                return apply(l, k, l->c, &l->c->sources->keys[i], value, what, name);
        }
        for (size_t j = 0; l->known_kinds && l->known_kinds[j]; j++) {
                for (size_t i = 0; i < kiln_cfg_n_batch_keys; i++) {
                        const struct kiln_cfg_key *k = &kiln_cfg_batch_keys[i];
                        long idx;

                        snprintf(section, sizeof(section), "batch.%.32s", l->known_kinds[j]);
                        env_name(section, k->key, want, sizeof(want));
                        if (strcmp(want, name) != 0)
                                continue;
                        idx = open_batch(l, l->known_kinds[j], name);
                        if (idx < 0)
                                return (int)idx;
                        snprintf(what, sizeof(what), "%s.%s", section, k->key);
                        return apply(l, k, &l->c->batch[idx], batch_source(l->c, (size_t)idx, i),
                                     value, what, name);
                }
        }
        set_error(l->err, "environment", 0, name,
                  "unknown variable: no configuration key is named by it");
        return -EINVAL;
}

static int load_env(struct loader *l, char *const *envp)
{
        for (size_t i = 0; envp && envp[i]; i++) {
                const char *eq = strchr(envp[i], '=');
                char *name;
                int r;

                if (!eq || strncmp(envp[i], "KILN_", 5) != 0)
                        continue;
                name = strndup(envp[i], (size_t)(eq - envp[i]));
                if (!name) {
                        set_error(l->err, "environment", 0, "", "out of memory");
                        return -ENOMEM;
                }
                r = env_is_config(name) ? apply_env(l, name, eq + 1) : 0;
                free(name);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Loads defaults, the file, its drop-ins and the environment, then validates; see
 * config.h. A NULL `path` reads no file at all. */
int kiln_config_load(const char *path, bool path_optional, char *const *envp,
                     const char *const *known_kinds, struct kiln_config **ret,
                     struct kiln_config_error *err)
{
        struct kiln_config_error scratch;
        struct loader l = { .known_kinds = known_kinds, .err = err ? err : &scratch, .batch = -1 };
        int r = 0;

        l.c = new_raw_defaults();
        if (!l.c) {
                set_error(l.err, "", 0, "", "out of memory");
                return -ENOMEM;
        }
        if (path) {
                r = load_file(&l, path, path_optional);
                if (r >= 0)
                        r = load_dropins(&l, path);
        }
        if (r >= 0)
                r = load_env(&l, envp);
        if (r >= 0) {
                resolve_memory(l.c);
                resolve_objects_cache(l.c);
                r = kiln_config_validate(l.c, l.err);
        }
        if (r < 0) {
                kiln_config_free(l.c);
                return r;
        }
        *ret = l.c;
        return 0;
}

/* Fills err for a cross-key rule, locating it at the source of `key`. */
static int rule_error(const struct kiln_config *c, struct kiln_config_error *err,
                      const char *section, const char *key, const char *message)
{
        const struct kiln_cfg_key *k = kiln_cfg_find(section, key);
        const struct source *s = NULL;
        char what[128];

        if (k && c->sources)
                s = &c->sources->keys[k - kiln_cfg_keys];
        snprintf(what, sizeof(what), "%s.%s", section, key);
        if (s && s->kind == SOURCE_FILE)
                set_error(err, s->name, s->line, what, "%s", message);
        else if (s && s->kind == SOURCE_ENV)
                set_error(err, "environment", 0, s->name, "%s (%s)", message, what);
        else
                set_error(err, "", 0, what, "%s", message);
        return -EINVAL;
}

/* Checks the rules that involve more than one key; see config.h. */
int kiln_config_validate(const struct kiln_config *c, struct kiln_config_error *err)
{
        char host[128], msg[400];
        uint16_t port;

        if (kiln_config_listen_split(c->server.listen, host, sizeof(host), &port) < 0) {
                snprintf(msg, sizeof(msg), "'%.128s' is not HOST:PORT (port 1..65535, IPv6 in "
                         "brackets as [::1]:8080)", c->server.listen);
                return rule_error(c, err, "server", "listen", msg);
        }
        if (!c->auth.required && !kiln_config_listen_is_loopback(c->server.listen)) {
                snprintf(msg, sizeof(msg), "may be false only when server.listen is a loopback "
                         "address (127.0.0.0/8, ::1, localhost), not %.128s", c->server.listen);
                return rule_error(c, err, "auth", "required", msg);
        }
        if ((c->server.tls_cert[0] == '\0') != (c->server.tls_key[0] == '\0')) {
                /* Named where it was set: the key given alone, with its file and line. */
                const char *key = c->server.tls_cert[0] ? "tls_cert" : "tls_key";
                return rule_error(c, err, "server", key,
                                  "server.tls_cert and server.tls_key must be set together");
        }
        return 0;
}

/* Builds "FILE:LINE: KEY: MESSAGE" with empty parts left out. */
const char *kiln_config_error_format(const struct kiln_config_error *err, char *buf, size_t size)
{
        size_t len = 0;
        int n;

        if (size == 0)
                return buf;
        buf[0] = '\0';
        if (err->file[0]) {
                n = err->line ? snprintf(buf, size, "%s:%u: ", err->file, err->line)
                              : snprintf(buf, size, "%s: ", err->file);
                if (n < 0 || (size_t)n >= size)
                        return buf;
                len = (size_t)n;
        }
        if (err->key[0]) {
                n = snprintf(buf + len, size - len, "%s: ", err->key);
                if (n < 0 || (size_t)n >= size - len)
                        return buf;
                len += (size_t)n;
        }
        snprintf(buf + len, size - len, "%s", err->message);
        return buf;
}

static bool needs_quotes(const char *v)
{
        size_t n = strlen(v);

        return n == 0 || v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t' ||
               strpbrk(v, "#;\"") != NULL;
}

static void print_key(FILE *f, const struct kiln_cfg_key *k, const void *base,
                      const struct source *s, const char *note)
{
        char value[4200];

        kiln_cfg_format_value(k, base, value, sizeof(value));
        if (needs_quotes(value))
                fprintf(f, "%s = \"%s\"", k->key, value);
        else
                fprintf(f, "%s = %s", k->key, value);
        if (!s || s->kind == SOURCE_DEFAULT)
                fprintf(f, "  # default");
        else if (s->kind == SOURCE_FILE)
                fprintf(f, "  # %s:%u", s->name, s->line);
        else
                fprintf(f, "  # env %s", s->name);
        if (note && *note)
                fprintf(f, "; %s", note);
        fputc('\n', f);
}

/* Writes every key as INI with its source as a trailing comment; the output loads back
 * to the same values. */
void kiln_config_print(const struct kiln_config *c, FILE *f)
{
        fprintf(f, "# kiln effective configuration; each value is followed by its source.\n");
        for (size_t si = 0; kiln_cfg_sections[si]; si++) {
                fprintf(f, "\n[%s]\n", kiln_cfg_sections[si]);
                for (size_t i = 0; i < kiln_cfg_n_keys; i++) {
                        if (strcmp(kiln_cfg_keys[i].section, kiln_cfg_sections[si]) != 0)
                                continue;
                        const struct source *src = c->sources ? &c->sources->keys[i] : NULL;
                        print_key(f, &kiln_cfg_keys[i], c, src, src ? src->note : NULL);
                }
        }
        for (size_t b = 0; b < c->n_batch && b < KILN_CONFIG_MAX_BATCH_KINDS; b++) {
                fprintf(f, "\n[batch.%s]\n", c->batch[b].kind);
                for (size_t i = 0; i < kiln_cfg_n_batch_keys; i++)
                        print_key(f, &kiln_cfg_batch_keys[i], &c->batch[b],
                                  c->sources ? batch_source(c, b, i) : NULL, NULL);
        }
}

/* Returns the settings of `kind`, or the schema defaults (with kind set) when no
 * [batch.KIND] section names it. */
struct kiln_batch_config kiln_config_batch(const struct kiln_config *c, const char *kind)
{
        struct kiln_batch_config b;

        for (size_t i = 0; i < c->n_batch && i < KILN_CONFIG_MAX_BATCH_KINDS; i++)
                if (strcmp(c->batch[i].kind, kind) == 0)
                        return c->batch[i];
        batch_defaults(&b, kind);
        return b;
}
