/* Directories written as a whole: stage in a hidden sibling, swap in with one rename (see the
 * header for the protocol and how a crashed run's temporaries are recovered). */
#include "runtime/atomic_dir.h"
#include "runtime/adapter_io.h"
#include "runtime/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STAGE_TAG ".peftc-new."
#define OLD_TAG ".peftc-old."
/* left in the previous directory just before the exchange: after it, the staging name holds
 * the previous contents, and this marker tells a later sweep so */
#define OLD_MARKER ".peftc-old"

/* Test hook: PEFTC_CRASH_AT=POINT:NAME kills the process (SIGKILL, as a crash would) when the
 * commit of a directory whose last component is NAME reaches POINT (staged, swapped, moved-aside,
 * carried). The kill test in tests/crash drives every point through it. */
static void crash_point(const pc_dir_txn *t, const char *point) {
    const char *spec = getenv("PEFTC_CRASH_AT");
    if (!spec) return;
    size_t n = strlen(point);
    const char *base = strrchr(t->final, '/');
    base = base ? base + 1 : t->final;
    if (strncmp(spec, point, n) == 0 && spec[n] == ':' && strcmp(spec + n + 1, base) == 0) raise(SIGKILL);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int pc_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void fsync_path(const char *path, int flags) {
    int fd = open(path, flags | O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    fsync(fd); /* some file systems refuse fsync on directories: durability is best effort there */
    close(fd);
}

/* splits `dir` (trailing slashes ignored) into parent and last component */
static int split_path(const char *dir, char *parent, size_t plen, char *name, size_t nlen) {
    char buf[4096];
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, dir, n);
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    const char *base = slash ? slash + 1 : buf;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) return -1;
    if ((size_t)snprintf(name, nlen, "%s", base) >= nlen) return -1;
    if (!slash) return snprintf(parent, plen, ".") >= (int)plen ? -1 : 0;
    if (slash == buf) return snprintf(parent, plen, "/") >= (int)plen ? -1 : 0;
    *slash = 0;
    return (size_t)snprintf(parent, plen, "%s", buf) >= plen ? -1 : 0;
}

/* dir/name into buf; false when it does not fit */
static bool join(char *buf, size_t len, const char *dir, const char *name) {
    int n = snprintf(buf, len, "%s/%s", dir, name);
    return n >= 0 && (size_t)n < len;
}

static bool in_list(const char *name, const char *const *list) {
    if (list && list[0] && strcmp(list[0], "*") == 0) return true;
    for (; list && *list; list++)
        if (strcmp(name, *list) == 0) return true;
    return false;
}

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* moves the subdirectories of `from` that `to` lacks (and, with files, its regular files too)
 * into `to`, except the names in `skip` */
static int carry_entries(const char *from, const char *to, bool files, const char *const *skip) {
    DIR *d = opendir(from);
    if (!d) return -1;
    int rc = 0;
    char src[8192], dst[8192];
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || strcmp(e->d_name, OLD_MARKER) == 0) continue;
        if (in_list(e->d_name, skip)) continue;
        struct stat st;
        if (!join(src, sizeof src, from, e->d_name) || !join(dst, sizeof dst, to, e->d_name)) continue;
        if (lstat(src, &st) || exists(dst)) continue;
        if (!S_ISDIR(st.st_mode) && !files) continue;
        if (rename(src, dst)) rc = -1;
    }
    closedir(d);
    return rc;
}

/* hard-links the previous directory's regular files that the staged one lacks into it, so
 * they survive the swap; what cannot be linked is moved after the swap instead */
static void link_kept_files(const pc_dir_txn *t, const char *const *replaced) {
    DIR *d = opendir(t->final);
    if (!d) return;
    char src[8192], dst[8192];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || strcmp(e->d_name, "..") == 0 || strcmp(e->d_name, OLD_MARKER) == 0)) continue;
        if (in_list(e->d_name, replaced)) continue;
        struct stat st;
        if (!join(src, sizeof src, t->final, e->d_name) || !join(dst, sizeof dst, t->stage, e->d_name)) continue;
        if (lstat(src, &st) || !S_ISREG(st.st_mode) || exists(dst)) continue;
        if (link(src, dst) == 0) fsync_path(dst, 0);
    }
    closedir(d);
}

static void fsync_tree_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    char path[8192];
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        struct stat st;
        if (!join(path, sizeof path, dir, e->d_name)) continue;
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) fsync_path(path, 0);
    }
    closedir(d);
    fsync_path(dir, O_DIRECTORY);
}

/* a temporary's owner: the PID after the tag, or 0 when the name is not one of ours */
static long temp_owner(const char *entry, const char *tag, char *name, size_t nlen) {
    if (entry[0] != '.') return 0;
    const char *p = strstr(entry + 1, tag);
    if (!p) return 0;
    const char *digits = p + strlen(tag);
    char *end;
    long pid = strtol(digits, &end, 10);
    if (end == digits || *end || pid <= 0) return 0;
    size_t n = (size_t)(p - entry - 1);
    if (n == 0 || n >= nlen) return 0;
    memcpy(name, entry + 1, n);
    name[n] = 0;
    return pid;
}

static bool process_gone(long pid) {
    return pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* one pass over the parent for one kind of temporary (old ones first: see pc_dir_sweep) */
static int sweep_kind(const char *parent, const char *tag, char *err, size_t errlen) {
    DIR *d = opendir(parent);
    if (!d) return errno == ENOENT ? 0 : pc_errf(err, errlen, "%s: %s", parent, strerror(errno));
    int rc = 0;
    char name[1024], tmp[8192], final[8192], marker[8300];
    for (struct dirent *e; (e = readdir(d)) && !rc;) {
        long pid = temp_owner(e->d_name, tag, name, sizeof name);
        if (!pid || !process_gone(pid)) continue;
        if (!join(tmp, sizeof tmp, parent, e->d_name) || !join(final, sizeof final, parent, name) ||
            !join(marker, sizeof marker, tmp, OLD_MARKER))
            continue;
        bool previous = strcmp(tag, OLD_TAG) == 0 || exists(marker);
        if (previous && !exists(final)) {
            /* the swap never completed: the previous directory comes back */
            unlink(marker);
            if (rename(tmp, final)) rc = pc_errf(err, errlen, "%s: cannot restore it from %s: %s", final, tmp, strerror(errno));
            continue;
        }
        if (previous) carry_entries(tmp, final, false, NULL);
        else {
            /* staged but never swapped in: the previous directory may carry the marker */
            if (join(marker, sizeof marker, final, OLD_MARKER)) unlink(marker);
        }
        if (pc_remove_tree(tmp)) rc = pc_errf(err, errlen, "%s: cannot remove a crashed run's temporary: %s", tmp, strerror(errno));
    }
    closedir(d);
    return rc;
}

int pc_dir_sweep(const char *parent, char *err, size_t errlen) {
    /* old directories first: restoring one must happen before its staged sibling goes */
    if (sweep_kind(parent, OLD_TAG, err, errlen)) return -1;
    return sweep_kind(parent, STAGE_TAG, err, errlen);
}

int pc_dir_recover(const char *dir, char *err, size_t errlen) {
    char parent[4096], name[1024];
    if (split_path(dir, parent, sizeof parent, name, sizeof name)) return pc_errf(err, errlen, "%s: not a usable directory name", dir);
    if (pc_dir_sweep(parent, err, errlen)) return -1;
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? pc_dir_sweep(dir, err, errlen) : 0;
}

int pc_dir_begin(pc_dir_txn *t, const char *dir, char *err, size_t errlen) {
    *t = (pc_dir_txn){0};
    char parent[4096], name[1024];
    if (!dir || split_path(dir, parent, sizeof parent, name, sizeof name))
        return pc_errf(err, errlen, "%s: not a usable directory name", dir ? dir : "(null)");
    struct stat st;
    if (lstat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) return pc_errf(err, errlen, "%s: exists and is not a directory", dir);
    if (pc_mkdirs(parent, err, errlen) || pc_dir_sweep(parent, err, errlen)) return -1;
    if ((size_t)snprintf(t->final, sizeof t->final, "%s/%s", parent, name) >= sizeof t->final ||
        (size_t)snprintf(t->stage, sizeof t->stage, "%s/.%s" STAGE_TAG "%ld", parent, name, (long)getpid()) >= sizeof t->stage)
        return pc_errf(err, errlen, "%s: path too long", dir);
    /* a stage of ours left by an earlier failed commit in this process */
    pc_remove_tree(t->stage);
    if (mkdir(t->stage, 0777)) return pc_errf(err, errlen, "%s: cannot create %s: %s", dir, t->stage, strerror(errno));
    t->active = true;
    return 0;
}

static int commit(pc_dir_txn *t, const char *const *replaced, bool exchange, char *err, size_t errlen) {
    if (!t->active) return pc_errf(err, errlen, "%s: no staged directory to commit", t->final);
    crash_point(t, "staged");
    char parent[4096], name[1024], old[8192], marker[8300];
    split_path(t->final, parent, sizeof parent, name, sizeof name);
    bool had_previous = exists(t->final);
    if (had_previous) link_kept_files(t, replaced);
    fsync_tree_files(t->stage);
    if (!had_previous) {
        if (rename(t->stage, t->final)) {
            int e = errno;
            pc_dir_abort(t);
            return pc_errf(err, errlen, "%s: cannot rename %s into place: %s", t->final, t->stage, strerror(e));
        }
        t->active = false;
        fsync_path(parent, O_DIRECTORY);
        return 0;
    }
    snprintf(marker, sizeof marker, "%s/%s", t->final, OLD_MARKER);
    const char *prev = t->stage; /* where the previous contents end up */
    bool swapped = false;
    if (exchange) {
        int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
            swapped = renameat2(AT_FDCWD, t->stage, AT_FDCWD, t->final, RENAME_EXCHANGE) == 0;
            if (!swapped) unlink(marker);
        }
    }
    if (swapped) {
        crash_point(t, "swapped");
    } else {
        snprintf(old, sizeof old, "%s/.%s" OLD_TAG "%ld", parent, name, (long)getpid());
        pc_remove_tree(old);
        if (rename(t->final, old)) {
            int e = errno;
            pc_dir_abort(t);
            return pc_errf(err, errlen, "%s: cannot move it aside to %s: %s", t->final, old, strerror(e));
        }
        crash_point(t, "moved-aside");
        if (rename(t->stage, t->final)) {
            int e = errno;
            rename(old, t->final); /* put the previous one back */
            pc_dir_abort(t);
            return pc_errf(err, errlen, "%s: cannot rename %s into place: %s", t->final, t->stage, strerror(e));
        }
        prev = old;
    }
    t->active = false;
    fsync_path(parent, O_DIRECTORY);
    /* what could not be linked, and the subdirectories, move over from the previous contents */
    carry_entries(prev, t->final, true, replaced);
    crash_point(t, "carried");
    fsync_path(t->final, O_DIRECTORY);
    if (pc_remove_tree(prev))
        return pc_errf(err, errlen, "%s: written, but the previous contents stay in %s: %s", t->final, prev, strerror(errno));
    return 0;
}

int pc_dir_commit(pc_dir_txn *t, const char *const *replaced, char *err, size_t errlen) {
    return commit(t, replaced, true, err, errlen);
}

int pc_dir_commit_no_exchange(pc_dir_txn *t, const char *const *replaced, char *err, size_t errlen) {
    return commit(t, replaced, false, err, errlen);
}

void pc_dir_abort(pc_dir_txn *t) {
    if (t->active) pc_remove_tree(t->stage);
    t->active = false;
}
