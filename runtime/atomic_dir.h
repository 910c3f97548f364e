/* Directories written as a whole (adapter and checkpoint directories).
 *
 * The files go into a hidden sibling, `.NAME.peftc-new.PID`, which is fsync'd and then swapped
 * with NAME in one rename (renameat2 RENAME_EXCHANGE; where the file system refuses it, NAME is
 * first renamed aside to `.NAME.peftc-old.PID`). A reader sees the previous directory or the
 * complete new one, never a mix. Entries of the previous directory that the new one does not
 * write and the caller does not name as replaced (a run's checkpoint-N subdirectories, a user's
 * own files) are kept: regular files are hard-linked into the staged directory before the swap,
 * subdirectories are moved after it.
 *
 * The temporaries of a process that died (its PID no longer runs) are cleaned up by the next
 * pc_dir_begin in the same parent (pc_dir_sweep): a staged directory is removed; an old one is
 * renamed back if NAME is missing (the crash fell between the two renames of the fallback), or
 * its subdirectories are moved into NAME (the crash fell after the swap), then removed. */
#ifndef PEFTC_RUNTIME_ATOMIC_DIR_H
#define PEFTC_RUNTIME_ATOMIC_DIR_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char final[4096]; /* the directory being replaced or created */
    char stage[4096]; /* where the caller writes its files until commit */
    bool active;
} pc_dir_txn;

/* creates the parent directories if needed, sweeps stale temporaries there and makes the staging
 * directory (t->stage) */
int pc_dir_begin(pc_dir_txn *t, const char *dir, char *err, size_t errlen);
/* fsyncs the staged files and swaps them in; `replaced` (NULL-terminated, may be NULL) names the
 * previous directory's entries that must not survive (e.g. a checkpoint's optimizer state when
 * a final adapter replaces it); {"*", NULL} replaces the whole directory. On failure the previous directory is intact and t is aborted. */
int pc_dir_commit(pc_dir_txn *t, const char *const *replaced, char *err, size_t errlen);
/* the same, without renameat2's exchange (tests reach the fallback through this) */
int pc_dir_commit_no_exchange(pc_dir_txn *t, const char *const *replaced, char *err, size_t errlen);
/* removes the staging directory; safe on a committed or never begun txn */
void pc_dir_abort(pc_dir_txn *t);

/* cleans up the temporaries dead processes left in `parent` (see above); 0 or -1 */
int pc_dir_sweep(const char *parent, char *err, size_t errlen);

/* pc_dir_sweep over the parent of `dir` and over `dir` itself (where its subdirectories, e.g. a
 * run's checkpoints, are written): what a run does first with its output directory */
int pc_dir_recover(const char *dir, char *err, size_t errlen);

/* removes a directory tree (no symlinks followed); 0 or -1 with errno set */
int pc_remove_tree(const char *path);

#endif
