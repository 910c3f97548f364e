/* Small file helpers shared by the checkpoint and tokenizer readers/writers.
 *
 * All functions return 0 on success, -1 on error, and write a message naming the file and the
 * reason into err (errlen bytes, always NUL-terminated when errlen > 0). */
#ifndef PEFTC_RUNTIME_FILEIO_H
#define PEFTC_RUNTIME_FILEIO_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

/* snprintf into err, tolerating err == NULL / errlen == 0; returns -1 so callers can
 * `return pc_errf(err, errlen, ...)` */
int pc_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Reads a whole file into a malloc'd buffer (one extra NUL byte is appended, not counted in len,
 * so text can be used as a C string). Caller frees *data. Only regular files are read: a FIFO,
 * device or directory is refused without blocking (every reader and pc_mmap_open below). */
int pc_read_file(const char *path, char **data, size_t *len, char *err, size_t errlen);
/* the same, refusing (before reading) a file of more than max bytes */
int pc_read_file_max(const char *path, size_t max, char **data, size_t *len, char *err, size_t errlen);

/* The first n bytes of a regular file (fewer if it is shorter) into buf, for probing a file's
 * kind: bytes read, or -1 when it cannot be opened or is not a regular file (a FIFO would block
 * a plain open). */
long pc_read_head(const char *path, void *buf, size_t n);

/* "a regular file", "a directory", "a FIFO", ... for messages */
const char *pc_file_kind(mode_t mode);

/* A read-only mapping of a whole regular file. An empty file maps to data == NULL, len == 0. */
typedef struct {
    const void *data;
    size_t len;
} pc_mmap;

int pc_mmap_open(pc_mmap *m, const char *path, char *err, size_t errlen);
void pc_mmap_close(pc_mmap *m); /* safe on a zeroed or already closed pc_mmap */

/* Gives the whole pages strictly inside [p, p + bytes) back to the system (madvise DONTNEED):
 * a file mapping reads them from the file again when touched, anonymous memory (malloc) reads
 * zeros, so only for data nobody reads again or that lives in a file mapping. */
void pc_pages_drop(const void *p, size_t bytes);

/* Atomic replacement of `path`: data goes to a temporary file in the same directory, which is
 * fsync'd and renamed over `path` on commit (then the directory is fsync'd). Readers see either
 * the old file or the complete new one. Abort (or a failed commit) removes the temporary. */
typedef struct pc_atomic_file pc_atomic_file;

pc_atomic_file *pc_atomic_open(const char *path, char *err, size_t errlen);
/* buffered; the first write error is remembered and reported by commit */
int pc_atomic_write(pc_atomic_file *f, const void *data, size_t len);
int pc_atomic_commit(pc_atomic_file *f, char *err, size_t errlen); /* always frees f */
void pc_atomic_abort(pc_atomic_file *f);                           /* frees f; NULL is fine */

/* one-shot form of the above */
int pc_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

#endif
