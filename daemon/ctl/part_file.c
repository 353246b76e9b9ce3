/* A result part received into its file as the KLNB frame arrives (ctl.h).
 *
 * The frame is "KLNB" | u32 LE header length | header JSON | payload. The prefix,
 * the header and the payload's first four bytes (a mesh's "glTF" says .glb) are
 * held in memory; every later byte goes from the receive buffer to the file.
 *
 * The file is made without a name (O_TMPFILE) where the filesystem can, so that a
 * kilnctl stopped by any signal, SIGKILL included, leaves nothing behind: at commit
 * it is linked under a unique hidden name in the same directory and at once renamed
 * over the part's name (only a stop between those two calls leaves the hidden
 * file). Elsewhere it has that hidden name from the start, created with O_EXCL. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "ctl.h"
#include "kind.h"
#include "part_file_internal.h"
#include "proto.h"

bool ctl_part_file_named_from_start;

#define HEADER_MAX (64u << 10)  /* the server's headers are a few dozen bytes */
#define SNIFF 4                 /* payload bytes that tell a .glb from an .stl */

struct ctl_part_file {
        char *dir;              /* NULL: checked and dropped */
        uint8_t *head;          /* prefix, header and the first payload bytes */
        size_t head_len;
        size_t head_need;       /* what head must hold before the next step */
        bool have_header;
        struct proto_frame f;   /* once have_header */
        bool writing;           /* head is complete; the payload goes to fd */
        uint64_t got;           /* payload bytes received */
        int fd;
        char *path;             /* DIR/NAME.ext */
        char *tmp;              /* its hidden name while not committed; NULL while unnamed */
        int failed;             /* first failure: -EPROTO or -errno */
        bool committed;
        char err[256];
};

__attribute__((format(printf, 3, 4))) static void fail(struct ctl_part_file *p, int r, const char *fmt, ...)
{
        va_list ap;

        if (p->failed)
                return;
        p->failed = r;
        va_start(ap, fmt);
        vsnprintf(p->err, sizeof(p->err), fmt, ap);
        va_end(ap);
}

int ctl_part_file_new(const char *dir, struct ctl_part_file **ret)
{
        struct ctl_part_file *p = calloc(1, sizeof(*p));

        if (!p || (dir && !(p->dir = strdup(dir))) || !(p->head = malloc(PROTO_KLNB_PREFIX))) {
                if (p)
                        free(p->dir);
                free(p);
                return -ENOMEM;
        }
        p->head_need = PROTO_KLNB_PREFIX;
        p->fd = -1;
        *ret = p;
        return 0;
}

/* DIR/.NAME.ext. and six random letters and digits, in p->tmp. */
static int hidden_name(struct ctl_part_file *p)
{
        static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
        uint8_t rnd[6];
        char *slash = strrchr(p->path, '/');

        free(p->tmp);
        p->tmp = NULL;
        ssize_t n = getrandom(rnd, sizeof(rnd), 0);
        if (n != (ssize_t)sizeof(rnd))
                return n < 0 ? -errno : -EIO;
        if (asprintf(&p->tmp, "%.*s/.%s.XXXXXX", (int)(slash - p->path), p->path, slash + 1) < 0) {
                p->tmp = NULL;
                return -ENOMEM;
        }
        char *x = p->tmp + strlen(p->tmp) - sizeof(rnd);
        for (size_t i = 0; i < sizeof(rnd); i++)
                x[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
        return 0;
}

/* Creates the file, unnamed where the filesystem allows (and /proc, through which
 * it is named at commit, is there). Returns >= 0 or -errno. */
static int create_file(struct ctl_part_file *p)
{
        if (!ctl_part_file_named_from_start && access("/proc/self/fd", X_OK) == 0) {
                p->fd = open(p->dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
                if (p->fd >= 0)
                        return 0;
                if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
                        return -errno;
        }
        for (int tries = 0; tries < 100; tries++) {
                int r = hidden_name(p);
                if (r < 0)
                        return r;
                p->fd = open(p->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (p->fd >= 0 || errno != EEXIST)
                        break;
        }
        if (p->fd >= 0)
                return 0;
        int r = -errno;
        free(p->tmp);
        p->tmp = NULL;
        return r;
}

/* Opens the file and writes what head holds past the header. */
static void start_file(struct ctl_part_file *p)
{
        const uint8_t *payload = p->head + p->head_len - p->got;
        char npy[CTL_NPY_HEADER_MAX];
        int npy_len = 0;
        const char *ext = "npy";
        int r;

        p->writing = true;
        if (!p->dir)
                return;
        if (p->f.dtype == KILN_DTYPE_BYTES && !strcmp(p->f.part, "mesh"))
                ext = p->got >= SNIFF && !memcmp(payload, "glTF", SNIFF) ? "glb" : "stl";
        else if ((npy_len = ctl_npy_header(kiln_dtype_name(p->f.dtype), p->f.ndim, p->f.shape, npy)) < 0) {
                fail(p, -EPROTO, "part \"%s\" has a dtype a .npy file cannot hold", p->f.part);
                return;
        }
        if ((r = ctl_mkdir_p(p->dir)) < 0) {
                fail(p, r, "cannot create %s: %s", p->dir, strerror(-r));
                return;
        }
        size_t dl = strlen(p->dir);
        while (dl > 1 && p->dir[dl - 1] == '/') /* "maps/" names "maps/kappa.npy", not "maps//kappa.npy" */
                dl--;
        if (asprintf(&p->path, "%.*s/%s.%s", (int)dl, p->dir, p->f.part, ext) < 0) {
                p->path = NULL;
                fail(p, -ENOMEM, "%s", "out of memory");
                return;
        }
        if ((r = create_file(p)) >= 0 && (r = ctl_write_all(p->fd, npy, (size_t)npy_len)) >= 0)
                r = ctl_write_all(p->fd, payload, (size_t)p->got);
        if (r < 0)
                fail(p, r, "cannot write %s: %s", p->path, strerror(-r));
}

/* head holds the prefix and header: decodes them and says how much of the
 * payload head must hold before the file is opened. */
static void take_header(struct ctl_part_file *p)
{
        struct proto_error e;

        p->have_header = true;
        if (proto_frame_decode_head(p->head, p->head_len, &p->f, &e) < 0) {
                fail(p, -EPROTO, "the server sent a bad part frame (%s: %s)", e.field, e.message);
                return;
        }
        if (p->f.has_offset) {
                fail(p, -EPROTO, "the server sent part \"%s\" in pieces", p->f.part);
                return;
        }
        uint64_t sniff = p->f.part_bytes < SNIFF ? p->f.part_bytes : SNIFF;
        uint8_t *h = realloc(p->head, p->head_len + sniff);
        if (!h) {
                fail(p, -ENOMEM, "%s", "out of memory");
                return;
        }
        p->head = h;
        p->head_need = p->head_len + sniff;
}

/* head holds the prefix: makes room for the header. */
static void take_prefix(struct ctl_part_file *p)
{
        uint32_t hlen;
        uint8_t *h;

        if (proto_frame_prefix(p->head, &hlen) < 0)
                fail(p, -EPROTO, "%s", "the server sent a part frame that does not start with \"KLNB\"");
        else if (hlen > HEADER_MAX)
                fail(p, -EPROTO, "the server sent a part header of %u bytes", hlen);
        else if (!(h = realloc(p->head, PROTO_KLNB_PREFIX + hlen)))
                fail(p, -ENOMEM, "%s", "out of memory");
        else {
                p->head = h;
                p->head_need = PROTO_KLNB_PREFIX + hlen;
        }
}

/* Moves bytes into head until head_need, then takes the next step; returns how
 * many it took. */
static size_t fill_head(struct ctl_part_file *p, const uint8_t *buf, size_t len)
{
        size_t n = p->head_need - p->head_len < len ? p->head_need - p->head_len : len;

        memcpy(p->head + p->head_len, buf, n);
        p->head_len += n;
        if (p->have_header)
                p->got += n;
        if (p->head_len < p->head_need)
                return n;
        if (p->have_header) {
                start_file(p);
                return n;
        }
        if (p->head_need == PROTO_KLNB_PREFIX) {
                take_prefix(p);
                if (p->failed || p->head_len < p->head_need)
                        return n;
        }
        take_header(p);
        if (!p->failed && p->head_len == p->head_need)
                start_file(p);  /* an empty part */
        return n;
}

void ctl_part_file_feed(struct ctl_part_file *p, const uint8_t *buf, size_t len)
{
        while (len && !p->writing && !p->failed) {
                size_t n = fill_head(p, buf, len);
                buf += n;
                len -= n;
        }
        if (!len)
                return;
        if (p->failed || !p->writing) {
                p->got += len;  /* a failed frame is read to its end and dropped */
                return;
        }
        if (p->f.part_bytes - p->got < len) {
                fail(p, -EPROTO, "the server sent more than the %llu bytes of part \"%s\"",
                     (unsigned long long)p->f.part_bytes, p->f.part);
                return;
        }
        p->got += len;
        int r = p->fd >= 0 ? ctl_write_all(p->fd, buf, len) : 0;
        if (r < 0)
                fail(p, r, "cannot write %s: %s", p->path, strerror(-r));
}

int ctl_part_file_finish(struct ctl_part_file *p)
{
        if (!p->failed && !p->have_header)
                fail(p, -EPROTO, "the server sent a part frame of %zu bytes, which ends inside its header",
                     p->head_len);
        if (!p->failed && p->got != p->f.part_bytes)
                fail(p, -EPROTO, "the server sent %llu of the %llu bytes of part \"%s\"", (unsigned long long)p->got,
                     (unsigned long long)p->f.part_bytes, p->f.part);
        return p->failed;
}

const char *ctl_part_file_name(const struct ctl_part_file *p)
{
        return p->have_header ? p->f.part : NULL;
}

/* Gives an unnamed file its hidden name. Returns >= 0 or -errno. */
static int name_file(struct ctl_part_file *p)
{
        char self[64];

        snprintf(self, sizeof(self), "/proc/self/fd/%d", p->fd);
        for (int tries = 0; tries < 100; tries++) {
                int r = hidden_name(p);
                if (r < 0)
                        return r;
                if (linkat(AT_FDCWD, self, AT_FDCWD, p->tmp, AT_SYMLINK_FOLLOW) == 0)
                        return 0;
                if (errno != EEXIST)
                        break;
        }
        int r = -errno;
        free(p->tmp);
        p->tmp = NULL;
        return r;
}

int ctl_part_file_commit(struct ctl_part_file *p, const char **ret_path)
{
        const char *step = "move the part to";

        *ret_path = NULL;
        if (ctl_part_file_finish(p) < 0 || p->fd < 0)
                return p->failed;  /* failed, or dropped (no directory) */
        int r = p->tmp ? 0 : name_file(p);  /* before the close, which ends an unnamed file */
        if (close(p->fd) < 0 && r >= 0) {
                r = -errno;     /* a write the filesystem could not finish */
                step = "write";
        }
        p->fd = -1;
        if (r >= 0 && rename(p->tmp, p->path) < 0)
                r = -errno;
        if (r < 0) {
                fail(p, r, "cannot %s %s: %s", step, p->path, strerror(-r));
                return r;
        }
        p->committed = true;
        *ret_path = p->path;
        return 0;
}

const char *ctl_part_file_error(const struct ctl_part_file *p)
{
        return p->err;
}

void ctl_part_file_free(struct ctl_part_file *p)
{
        if (!p)
                return;
        if (p->fd >= 0)
                close(p->fd);
        if (p->tmp && !p->committed)
                unlink(p->tmp);
        proto_frame_clear(&p->f);
        free(p->tmp);
        free(p->path);
        free(p->head);
        free(p->dir);
        free(p);
}
