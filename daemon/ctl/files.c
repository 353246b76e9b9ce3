/* kilnctl's local files: NumPy .npy parts, directories, tokens-file entries. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "ctl.h"
#include "tokens.h"

int ctl_write_all(int fd, const void *buf, size_t len)
{
        const uint8_t *p = buf;

        while (len) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static const char *npy_descr(const char *dtype)
{
        if (!strcmp(dtype, "f32"))
                return "<f4";
        if (!strcmp(dtype, "u32"))
                return "<u4";
        if (!strcmp(dtype, "i32"))
                return "<i4";
        if (!strcmp(dtype, "u8") || !strcmp(dtype, "bytes"))
                return "|u1";
        return NULL;
}

int ctl_npy_header(const char *dtype, int ndim, const uint64_t *shape, char hdr[CTL_NPY_HEADER_MAX])
{
        const char *descr = npy_descr(dtype);
        char dims[256] = "";
        size_t dl = 0;

        if (!descr || ndim < 1 || ndim > 4)
                return -EINVAL;
        for (int i = 0; i < ndim; i++)
                dl += (size_t)snprintf(dims + dl, sizeof(dims) - dl, "%s%" PRIu64, i ? ", " : "", shape[i]);
        /* The preamble (magic 6, version 2, length 2, dict) is padded with spaces
         * to a multiple of 64 bytes and ends in '\n'. */
        int n = snprintf(hdr + 10, CTL_NPY_HEADER_MAX - 10,
                         "{'descr': '%s', 'fortran_order': False, 'shape': (%s%s), }", descr, dims,
                         ndim == 1 ? "," : "");
        size_t total = (10 + (size_t)n + 1 + 63) / 64 * 64;
        memset(hdr + 10 + n, ' ', total - 10 - (size_t)n - 1);
        hdr[total - 1] = '\n';
        memcpy(hdr, "\x93NUMPY\x01\x00", 8);
        hdr[8] = (char)((total - 10) & 0xff);
        hdr[9] = (char)((total - 10) >> 8);
        return (int)total;
}

int ctl_mkdir_p(const char *path)
{
        char *p = strdup(path);
        int r = 0;

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; r >= 0; s++) {
                if (*s && *s != '/')
                        continue;
                char c = *s;
                *s = '\0';
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        r = -errno;
                *s = c;
                if (!c)
                        break;
        }
        struct stat st;
        if (r >= 0 && stat(path, &st) < 0)
                r = -errno;
        else if (r >= 0 && !S_ISDIR(st.st_mode))
                r = -ENOTDIR;
        free(p);
        return r;
}

int ctl_valid_name(const char *s)
{
        size_t n = strlen(s);

        if (n < 1 || n > 63)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
                        return 0;
        return 1;
}

static void hex(const uint8_t *b, size_t n, char *ret)
{
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                ret[2 * i] = digits[b[i] >> 4];
                ret[2 * i + 1] = digits[b[i] & 15];
        }
        ret[2 * n] = '\0';
}

/* Whether an existing tokens file already has a line for `name`; -errno on read errors. */
static int file_names(int fd, const char *name)
{
        FILE *f = fdopen(dup(fd), "r");
        char line[1024], first[128];
        int found = 0;

        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "%127s", first) == 1 && first[0] != '#' && !strcmp(first, name))
                        found = 1;
        fclose(f);
        return found;
}

static bool valid_role(const char *role)
{
        for (int i = 0; i <= AUTH_ROLE_ADMIN; i++)
                if (!strcmp(role, auth_role_name((enum auth_role)i)))
                        return true;
        return false;
}

int ctl_tokens_check(const char *tokens_file, const char *name, char *why, size_t size)
{
        struct auth_tokens *t = NULL;
        unsigned line = 0;
        /* kilnd takes a file of root's or of its own user: kiln, as packaged. */
        const struct passwd *kiln = getpwnam("kiln");
        int r = auth_tokens_read(tokens_file, kiln ? (long)kiln->pw_uid : -1, &t, &line);

        if (r < 0) {
                auth_tokens_error(tokens_file, NULL, r, line, why, size);
                return r;
        }
        r = auth_tokens_has_name(t, name) ? -EEXIST : 0;
        auth_tokens_free(t);
        if (r < 0)
                snprintf(why, size, "%s already has a token named \"%s\"", tokens_file, name);
        return r;
}

int ctl_token_make(char *ret_token)
{
        uint8_t raw[32];

        for (size_t got = 0; got < sizeof(raw);) {
                ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                got += (size_t)n;
        }
        hex(raw, sizeof(raw), ret_token);
        return 0;
}

int ctl_token_add(const char *name, const char *tenant, const char *role, const char *tokens_file,
                  const char *token)
{
        if (!ctl_valid_name(name) || !ctl_valid_name(tenant) || !valid_role(role))
                return -EINVAL;

        uint8_t digest[SHA256_DIGEST_LENGTH];
        char digest_hex[2 * SHA256_DIGEST_LENGTH + 1];
        SHA256((const unsigned char *)token, strlen(token), digest);
        hex(digest, sizeof(digest), digest_hex);

        int fd = open(tokens_file, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd >= 0) {
                /* Ours: as the package makes it (0640 root:kiln), so that the service
                 * (user kiln) reads it and nobody but root writes it. */
                const struct group *g = getgrnam("kiln");
                if ((g && geteuid() == 0 && fchown(fd, (uid_t)-1, g->gr_gid) < 0) || fchmod(fd, 0640) < 0) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
        } else if (errno == EEXIST) {
                fd = open(tokens_file, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
        }
        if (fd < 0)
                return -errno;

        int r = file_names(fd, name);
        if (r > 0)
                r = -EEXIST;
        /* Start on a fresh line when the file does not end in one. */
        char line[300];
        int len = 0;
        off_t end = r >= 0 ? lseek(fd, 0, SEEK_END) : 0;
        if (end > 0) {
                char last;
                if (pread(fd, &last, 1, end - 1) == 1 && last != '\n')
                        line[len++] = '\n';
        }
        len += snprintf(line + len, sizeof(line) - (size_t)len, "%s %s %s %s\n", name, tenant, role, digest_hex);
        if (r >= 0)
                r = ctl_write_all(fd, line, (size_t)len);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        return r < 0 ? r : 0;
}

/* See ctl.h: walks up to the nearest part of the path that exists. */
int ctl_out_dir_usable(const char *dir)
{
        char *p = strdup(dir);
        struct stat st;
        int e = 0;

        if (!p || !*p) {
                free(p);
                return p ? EINVAL : ENOMEM;
        }
        for (;;) {
                if (stat(p, &st) == 0) {
                        e = !S_ISDIR(st.st_mode) ? ENOTDIR : access(p, W_OK | X_OK) < 0 ? errno : 0;
                        break;
                }
                if (errno != ENOENT) {
                        e = errno;
                        break;
                }
                char *slash = strrchr(p, '/');
                while (slash && slash > p && slash[1] == '\0') { /* "a/b/" */
                        *slash = '\0';
                        slash = strrchr(p, '/');
                }
                if (!slash) {
                        if (!strcmp(p, ".")) { /* the current folder is gone */
                                e = ENOENT;
                                break;
                        }
                        strcpy(p, "."); /* a relative path's first folder goes in the current one */
                        continue;
                }
                slash[slash == p ? 1 : 0] = '\0'; /* "/a" -> "/" */
        }
        free(p);
        return e;
}
