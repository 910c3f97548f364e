/* Shared helpers for the libFuzzer harnesses (tests/fuzz/README.md).
 *
 * The readers under test take a path (they mmap or read the file), so a harness writes each input
 * to one temporary file per process, created on first use and removed at exit. tmpfs (/dev/shm)
 * when available keeps the write cheap. */
#ifndef PEFTC_FUZZ_COMMON_H
#define PEFTC_FUZZ_COMMON_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* a failed oracle: print and abort, which libFuzzer reports as a crash with the input saved */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);         \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char fuzz_dir[256];

static inline void fuzz_cleanup(void) {
    if (!fuzz_dir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
    if (system(cmd)) { /* best effort */
    }
}

/* a private directory for this process's temporary files */
static inline const char *fuzz_tmpdir(void) {
    if (fuzz_dir[0]) return fuzz_dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/peftc-fuzz-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(fuzz_dir)) {
        perror("mkdtemp");
        abort();
    }
    atexit(fuzz_cleanup);
    return fuzz_dir;
}

/* writes data to fuzz_tmpdir()/name (replacing it) and returns the path (static storage per name
 * slot: at most 8 distinct names per harness) */
static inline const char *fuzz_write(const char *name, const void *data, size_t len) {
    static char paths[8][320];
    int slot = -1;
    for (int i = 0; i < 8 && slot < 0; i++) {
        const char *p = strrchr(paths[i], '/');
        if (!paths[i][0] || (p && strcmp(p + 1, name) == 0)) slot = i;
    }
    if (slot < 0) abort();
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fuzz_tmpdir(), name);
    int fd = open(paths[slot], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(paths[slot]);
        abort();
    }
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w <= 0) {
            perror("write");
            abort();
        }
        p += w;
        len -= (size_t)w;
    }
    close(fd);
    return paths[slot];
}

/* whole file into a malloc'd buffer (NULL on error) */
static inline unsigned char *fuzz_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

#endif
