/* File helpers: whole-file reads, read-only mmap, atomic writes (temp + fsync + rename). */
#include "runtime/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int pc_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

const char *pc_file_kind(mode_t mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "not a regular file";
}

/* Opens a regular file for reading and fstat's it. O_NONBLOCK because open() itself blocks on a
 * FIFO until a writer appears (and may on some devices): the type is checked on the descriptor,
 * so a FIFO, device or directory is refused at once and without a stat/open race. Reads of a
 * regular file ignore O_NONBLOCK, but it is cleared anyway so the descriptor is an ordinary one. */
static int open_regular(const char *path, struct stat *st, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return pc_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return pc_errf(err, errlen, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return pc_errf(err, errlen, "%s: not a regular file (it is %s)", path, pc_file_kind(st->st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

long pc_read_head(const char *path, void *buf, size_t n) {
    struct stat st;
    int fd = open_regular(path, &st, NULL, 0);
    if (fd < 0) return -1;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    return (long)got;
}

int pc_read_file(const char *path, char **data, size_t *len, char *err, size_t errlen) {
    return pc_read_file_max(path, SIZE_MAX - 1, data, len, err, errlen);
}

int pc_read_file_max(const char *path, size_t max, char **data, size_t *len, char *err, size_t errlen) {
    *data = NULL;
    *len = 0;
    struct stat st;
    int fd = open_regular(path, &st, err, errlen);
    if (fd < 0) return -1;
    if ((uint64_t)st.st_size > (uint64_t)max) {
        close(fd);
        return pc_errf(err, errlen, "%s: file too large (%lld bytes, the limit is %zu)", path, (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return pc_errf(err, errlen, "%s: out of memory reading the file (%zu bytes)", path, n + 1);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return pc_errf(err, errlen, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break; /* file shrank while reading: keep what we have */
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return 0;
}

int pc_mmap_open(pc_mmap *m, const char *path, char *err, size_t errlen) {
    m->data = NULL;
    m->len = 0;
    struct stat st;
    int fd = open_regular(path, &st, err, errlen);
    if (fd < 0) return -1;
    if (st.st_size == 0) { /* mmap of length 0 is an error; an empty mapping is not */
        close(fd);
        return 0;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (p == MAP_FAILED)
        return pc_errf(err, errlen, "%s: mapping the file (%lld bytes) failed: %s", path, (long long)st.st_size,
                       strerror(e));
    m->data = p;
    m->len = (size_t)st.st_size;
    return 0;
}

void pc_pages_drop(const void *p, size_t bytes) {
    long ps = sysconf(_SC_PAGESIZE);
    if (!p || ps <= 0) return;
    uintptr_t a = (uintptr_t)p, e = a + bytes, pg = (uintptr_t)ps;
    uintptr_t lo = (a + pg - 1) / pg * pg, hi = e / pg * pg;
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void pc_mmap_close(pc_mmap *m) {
    if (m && m->data) munmap((void *)m->data, m->len);
    if (m) {
        m->data = NULL;
        m->len = 0;
    }
}

struct pc_atomic_file {
    FILE *fp;
    char *path;
    char *tmp;
    int write_errno; /* first failed write, 0 if none */
};

pc_atomic_file *pc_atomic_open(const char *path, char *err, size_t errlen) {
    pc_atomic_file *f = calloc(1, sizeof *f);
    size_t plen = strlen(path);
    if (f) {
        f->path = strdup(path);
        f->tmp = malloc(plen + 32);
    }
    if (!f || !f->path || !f->tmp) {
        pc_atomic_abort(f);
        pc_errf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    /* a random suffix instead of mkstemp so the file gets 0666 & ~umask like a plain open() */
    int fd = -1, e = 0;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
            r = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)f ^
                (uint64_t)attempt;
        snprintf(f->tmp, plen + 32, "%s.tmp.%016llx", path, (unsigned long long)r);
        fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        e = errno;
        if (fd < 0 && e != EEXIST) break;
    }
    if (fd < 0) {
        pc_errf(err, errlen, "%s: cannot create temporary file %s: %s", path, f->tmp, strerror(e));
        free(f->tmp);
        f->tmp = NULL; /* nothing to unlink */
        pc_atomic_abort(f);
        return NULL;
    }
    f->fp = fdopen(fd, "wb");
    if (!f->fp) {
        pc_errf(err, errlen, "%s: fdopen failed: %s", path, strerror(errno));
        close(fd);
        pc_atomic_abort(f);
        return NULL;
    }
    return f;
}

int pc_atomic_write(pc_atomic_file *f, const void *data, size_t len) {
    if (f->write_errno) return -1;
    if (len == 0) return 0;
    if (fwrite(data, 1, len, f->fp) != len) {
        f->write_errno = errno ? errno : EIO;
        return -1;
    }
    return 0;
}

void pc_atomic_abort(pc_atomic_file *f) {
    if (!f) return;
    if (f->fp) fclose(f->fp);
    if (f->tmp) unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    free(f);
}

/* makes the rename durable; failures are ignored since some file systems refuse directory fsync */
static void fsync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (!dir) return;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
}

int pc_atomic_commit(pc_atomic_file *f, char *err, size_t errlen) {
    int rc = 0;
    if (f->write_errno) {
        rc = pc_errf(err, errlen, "%s: write failed: %s", f->path, strerror(f->write_errno));
    } else if (fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0) {
        rc = pc_errf(err, errlen, "%s: flush failed: %s", f->path, strerror(errno));
    } else {
        FILE *fp = f->fp;
        f->fp = NULL;
        if (fclose(fp) != 0) {
            rc = pc_errf(err, errlen, "%s: close failed: %s", f->path, strerror(errno));
        } else if (rename(f->tmp, f->path) != 0) {
            rc = pc_errf(err, errlen, "%s: rename from %s failed: %s", f->path, f->tmp,
                         strerror(errno));
        } else {
            fsync_parent_dir(f->path);
            free(f->tmp);
            f->tmp = NULL; /* renamed: nothing left to unlink */
        }
    }
    pc_atomic_abort(f);
    return rc;
}

int pc_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    pc_atomic_file *f = pc_atomic_open(path, err, errlen);
    if (!f) return -1;
    pc_atomic_write(f, data, len);
    return pc_atomic_commit(f, err, errlen);
}
