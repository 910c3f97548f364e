/* Checks of a verb's output paths against its inputs, made before any work.
 *
 * An output must not replace an input (merge --out = --model would replace the base model;
 * run G.pir -o G.pir the graph; train --out = the adapter directory it loads from would
 * overwrite or delete its files), must be of the right kind (a file where a file is written, a
 * directory where one is), and must be creatable: the nearest existing directory on its path
 * must be writable. Paths are compared by what they resolve to (st_dev/st_ino), so symbolic
 * links, "..", and an output that does not exist yet but whose path leads into an input
 * ("new/../model.bin") are caught too.
 *
 * Missing directories on an output's path are not created here: outputs are written (with their
 * missing parents, mkdir -p) only once the work has succeeded, so a failed run leaves nothing
 * behind. pc_make_parents does that for file outputs. */
#ifndef PEFTC_RUNTIME_OUTPATH_H
#define PEFTC_RUNTIME_OUTPATH_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    PC_OUT_FILE, /* a file replaced atomically (temporary file + rename in its directory) */
    PC_OUT_DIR,  /* a directory that files are written into */
} pc_out_kind;

typedef struct {
    const char *flag; /* how the user gave it, for messages: "--out", "-o" */
    const char *path; /* NULL: no such output this run (skipped) */
    pc_out_kind kind;
    /* PC_OUT_DIR: the names written (or removed) in it, NULL-terminated; an input among them is
     * refused. NULL: none known. */
    const char *const *names;
    /* PC_OUT_DIR replaced as a whole: no input may lie anywhere inside it */
    bool replaced;
    /* PC_OUT_DIR: a subdirectory of it that this run replaces (train's checkpoint-N), by name;
     * NULL: none */
    bool (*replaces_subdir)(const char *name, void *ctx);
    void *ctx;
} pc_out;

typedef struct {
    const char *flag; /* "--model", "FILE", ... */
    const char *path; /* NULL or "-" (stdin): skipped; a path that does not exist is skipped too
                       * (its reader reports it) */
} pc_in;

/* 0, or -1 with a message naming the flag, the path and the reason (which input it would
 * replace, what is in the way, which directory is not writable). */
int pc_check_outputs(const pc_out *outs, int nouts, const pc_in *ins, int nins, char *err, size_t errlen);

/* creates the missing directories above a file path (mkdir -p of its directory); 0 or -1 */
int pc_make_parents(const char *path, char *err, size_t errlen);

#endif
