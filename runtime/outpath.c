/* Output paths checked against inputs before the work (see outpath.h). */
#include "runtime/outpath.h"
#include "runtime/fileio.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* what a path leads to: an existing file or directory (st), or the nearest existing directory
 * it would be created under (anc). bad: a component in the way (not a directory, a dangling
 * link, no permission to look), with its path in where. */
typedef struct {
    bool exists;
    struct stat st;
    char real[PATH_MAX]; /* exists: a spelling of it that works today ("new/.." does not) */
    char anc[PATH_MAX];
    int bad;
    char where[PATH_MAX];
} resolved;

/* dir/name; false when it does not fit */
static bool join(char *out, size_t n, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    int k = snprintf(out, n, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", name);
    return k >= 0 && (size_t)k < n;
}

/* The path as the writer will see it: after mkdir -p of the missing part, "new/../x" is "x", so
 * components that do not exist yet are resolved by name ("new/.." cancels), the existing part
 * by the file system (symbolic links, ".." of a real directory). */
static void resolve(const char *path, resolved *r) {
    memset(r, 0, sizeof *r);
    if (stat(path, &r->st) == 0) {
        r->exists = true;
        snprintf(r->real, sizeof r->real, "%s", path);
        return;
    }
    if (errno != ENOENT && errno != ENOTDIR) {
        r->bad = errno;
        snprintf(r->where, sizeof r->where, "%s", path);
        return;
    }
    char cur[PATH_MAX], buf[PATH_MAX], cand[PATH_MAX];
    snprintf(cur, sizeof cur, "%s", path[0] == '/' ? "/" : ".");
    snprintf(buf, sizeof buf, "%s", path);
    char *comp[PATH_MAX / 2];
    int nc = 0;
    for (char *save = NULL, *c = strtok_r(buf, "/", &save); c && nc < PATH_MAX / 2; c = strtok_r(NULL, "/", &save))
        if (strcmp(c, ".")) comp[nc++] = c;
    int np = 0; /* components below the existing part, not created yet */
    for (int i = 0; i < nc; i++) {
        const char *c = comp[i];
        if (np) { /* below a directory that does not exist yet */
            np += strcmp(c, "..") ? 1 : -1;
            continue;
        }
        if (!join(cand, sizeof cand, cur, c)) {
            r->bad = ENAMETOOLONG;
            snprintf(r->where, sizeof r->where, "%s", path);
            return;
        }
        struct stat st;
        if (stat(cand, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                snprintf(cur, sizeof cur, "%s", cand);
                continue;
            }
            if (i == nc - 1) { /* "new/../file": the file, once new exists */
                r->exists = true;
                r->st = st;
                snprintf(r->real, sizeof r->real, "%s", cand);
                return;
            }
            r->bad = ENOTDIR; /* a file where a directory is needed */
            snprintf(r->where, sizeof r->where, "%s", cand);
            return;
        }
        if (errno != ENOENT || lstat(cand, &st) == 0) { /* unreadable, or a dangling link */
            r->bad = errno == ENOENT ? ELOOP : errno;
            snprintf(r->where, sizeof r->where, "%s", cand);
            return;
        }
        np++;
    }
    if (np == 0) { /* "new/..": the path is cur itself */
        r->exists = stat(cur, &r->st) == 0;
        if (!r->exists) r->bad = errno, snprintf(r->where, sizeof r->where, "%s", cur);
        snprintf(r->real, sizeof r->real, "%s", cur);
        return;
    }
    snprintf(r->anc, sizeof r->anc, "%s", cur);
}

static bool same(const struct stat *a, const struct stat *b) { return a->st_dev == b->st_dev && a->st_ino == b->st_ino; }

/* the directory a file path is written in, by name ("a/b" -> "a", "b" -> ".", "/b" -> "/") */
static void parent_of(const char *path, char *out, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    while (len > 0 && path[len - 1] != '/') len--;
    while (len > 1 && path[len - 1] == '/') len--;
    if (len == 0) snprintf(out, n, ".");
    else snprintf(out, n, "%.*s", (int)len, path);
}

/* an input that exists, with what it is */
typedef struct {
    const pc_in *in;
    struct stat st;
} input;

static int refuse_alias(const pc_out *o, const char *what, const input *x, char *err, size_t errlen) {
    bool dir = S_ISDIR(x->st.st_mode);
    return pc_errf(err, errlen, "%s %s: %s the %s given as %s %s: refusing to %s an input; write the output elsewhere",
                   o->flag, o->path, what, dir ? "directory" : "file", x->in->flag, x->in->path,
                   dir ? "write into" : "replace");
}

/* an input inside the directory d (at any depth), or inside the subdirectory of d that
 * o->replaces_subdir names; checked on the input's real path, walking up */
static int inside(const pc_out *o, const struct stat *d, const input *x, char *err, size_t errlen) {
    char real[PATH_MAX], child[PATH_MAX] = "";
    if (!realpath(x->in->path, real)) return 0;
    for (int depth = 0;; depth++) {
        char *slash = strrchr(real, '/');
        if (!slash) return 0;
        snprintf(child, sizeof child, "%s", slash + 1);
        if (slash == real) slash[1] = 0;
        else *slash = 0;
        struct stat st;
        if (stat(real, &st)) return 0;
        if (same(&st, d)) {
            if (o->replaced)
                return pc_errf(err, errlen, "%s %s: %s %s lies inside it, and this directory is replaced as a whole: "
                               "refusing to delete an input; write the output elsewhere", o->flag, o->path, x->in->flag,
                               x->in->path);
            if (o->replaces_subdir && child[0] && o->replaces_subdir(child, o->ctx))
                return pc_errf(err, errlen, "%s %s: %s %s %s %s/%s, which this run writes again: refusing to "
                               "replace an input; write the output elsewhere", o->flag, o->path, x->in->flag,
                               x->in->path, depth ? "lies inside" : "is", o->path, child);
        }
        if (!strcmp(real, "/")) return 0;
    }
}

static int check_alias(const pc_out *o, const resolved *r, const input *xs, int nx, char *err, size_t errlen) {
    for (int i = 0; i < nx; i++)
        if (r->exists && same(&r->st, &xs[i].st))
            return refuse_alias(o, "is", &xs[i], err, errlen);
    if (o->kind != PC_OUT_DIR || !r->exists || !S_ISDIR(r->st.st_mode)) return 0;
    for (const char *const *n = o->names; n && *n; n++) {
        char p[PATH_MAX];
        struct stat st;
        if (!join(p, sizeof p, r->real, *n) || stat(p, &st)) continue;
        for (int i = 0; i < nx; i++)
            if (same(&st, &xs[i].st)) {
                char what[PATH_MAX + 300];
                snprintf(what, sizeof what, "writing %s would replace", p);
                return refuse_alias(o, what, &xs[i], err, errlen);
            }
    }
    if (o->replaced || o->replaces_subdir)
        for (int i = 0; i < nx; i++)
            if (inside(o, &r->st, &xs[i], err, errlen)) return -1;
    return 0;
}

/* the directory d (existing, or the nearest existing one below which it is created) must be a
 * writable directory */
static int check_writable(const pc_out *o, const char *d, char *err, size_t errlen) {
    if (access(d, W_OK | X_OK) == 0) return 0;
    return pc_errf(err, errlen, "%s %s: cannot write in %s: %s", o->flag, o->path, d, strerror(errno));
}

static int check_bad(const pc_out *o, const resolved *r, char *err, size_t errlen) {
    if (!r->bad) return 0;
    if (r->bad == ENOTDIR)
        return pc_errf(err, errlen, "%s %s: %s is not a directory, so the output cannot be created below it", o->flag,
                       o->path, r->where);
    if (r->bad == ELOOP)
        return pc_errf(err, errlen, "%s %s: %s is a symbolic link to nothing (or a loop)", o->flag, o->path, r->where);
    return pc_errf(err, errlen, "%s %s: %s: %s", o->flag, o->path, r->where, strerror(r->bad));
}

static int check_one(const pc_out *o, const input *xs, int nx, char *err, size_t errlen) {
    if (!o->path[0]) return pc_errf(err, errlen, "%s: an empty path", o->flag);
    resolved r;
    resolve(o->path, &r);
    if (check_alias(o, &r, xs, nx, err, errlen) || check_bad(o, &r, err, errlen)) return -1;
    if (o->kind == PC_OUT_DIR) {
        if (r.exists && !S_ISDIR(r.st.st_mode))
            return pc_errf(err, errlen, "%s %s: exists and is %s, but a directory is written there", o->flag, o->path,
                           pc_file_kind(r.st.st_mode));
        if (!r.exists) return check_writable(o, r.anc, err, errlen);
        /* a directory is written as a whole (runtime/atomic_dir.h, compile's OUT.weights): staged
         * beside it and renamed into place, so its parent is written; one that is kept (a run's
         * output) also receives subdirectories (checkpoint-N) staged inside it */
        char real[PATH_MAX], dir[PATH_MAX];
        if (!o->replaced && check_writable(o, r.real, err, errlen)) return -1;
        if (!realpath(r.real, real)) return 0;
        parent_of(real, dir, sizeof dir);
        return check_writable(o, dir, err, errlen);
    }
    if (r.exists && S_ISDIR(r.st.st_mode))
        return pc_errf(err, errlen, "%s %s: is a directory, but a file is written there", o->flag, o->path);
    if (r.exists && !S_ISREG(r.st.st_mode)) /* renaming over /dev/null would replace the device */
        return pc_errf(err, errlen, "%s %s: is %s, not a regular file: refusing to replace it", o->flag, o->path,
                       pc_file_kind(r.st.st_mode));
    /* the file is written beside itself (temporary + rename): its directory must be writable */
    char dir[PATH_MAX];
    parent_of(o->path, dir, sizeof dir);
    resolved p;
    resolve(dir, &p);
    if (check_bad(o, &p, err, errlen)) return -1;
    if (p.exists && !S_ISDIR(p.st.st_mode))
        return pc_errf(err, errlen, "%s %s: %s is not a directory, so the output cannot be created below it", o->flag,
                       o->path, dir);
    return check_writable(o, p.exists ? p.real : p.anc, err, errlen);
}

int pc_check_outputs(const pc_out *outs, int nouts, const pc_in *ins, int nins, char *err, size_t errlen) {
    input *xs = calloc((size_t)nins + 1, sizeof *xs);
    if (!xs) return pc_errf(err, errlen, "out of memory checking the output paths");
    int nx = 0;
    for (int i = 0; i < nins; i++) {
        if (!ins[i].path || !strcmp(ins[i].path, "-")) continue;
        xs[nx].in = &ins[i];
        if (stat(ins[i].path, &xs[nx].st) == 0) nx++;
    }
    int rc = 0;
    for (int i = 0; i < nouts && !rc; i++)
        if (outs[i].path && strcmp(outs[i].path, "-")) rc = check_one(&outs[i], xs, nx, err, errlen);
    free(xs);
    return rc;
}

int pc_make_parents(const char *path, char *err, size_t errlen) {
    char dir[PATH_MAX];
    parent_of(path, dir, sizeof dir);
    struct stat st;
    if (stat(dir, &st) == 0) return 0; /* the writer reports what else could be wrong */
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(dir, 0777) && errno != EEXIST)
            return pc_errf(err, errlen, "%s: cannot create directory %s: %s", path, dir, strerror(errno));
        *p = c;
        if (!c) break;
    }
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return pc_errf(err, errlen, "%s: %s is not a directory", path, dir);
    return 0;
}
