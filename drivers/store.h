/* A store of the tensors a run owns besides the frozen base checkpoint: adapter params
 * (trainable or loaded) and optimizer state, keyed like the graph's params and states.
 * It allocates each buffer once, fills it from a file or from the value's init spec, binds it
 * to an interpreter, and writes selected entries to safetensors. */
#ifndef PEFTC_DRIVERS_STORE_H
#define PEFTC_DRIVERS_STORE_H

#include "backend/exec.h"
#include "backend/ref.h"
#include "peftc/peftc.h"
#include "runtime/safetensors.h"

#include <stdbool.h>

typedef struct {
    pc_val v;
    const char *key; /* owned copy of the param's key */
    unsigned flags;  /* PC_TRAINABLE / PC_FROZEN / PC_STATE */
    pc_shape shape;
    float *data;     /* owned */
    int64_t n;
    bool loaded;     /* filled from a file (else from its init) */
} pc_store_entry;

typedef struct pc_store {
    pc_store_entry *e;
    int n;
} pc_store;

/* Takes every param and state of g whose key `is_base(key)` does not claim (the base model's
 * weights). Each is filled from the first file (of nfiles) holding its key (same shape and f32,
 * else an error naming file and key); otherwise, for trainable params and states, from its init
 * (seeded by `seed` and the key). A frozen adapter param missing from the files is an error. */
int pc_store_init(pc_store *s, const pc_graph *g, int (*is_base)(void *ctx, const char *key), void *ctx,
                  const pc_st_file *const *files, int nfiles, uint64_t seed, char *err, size_t errlen);
/* the same with the tensor of a key found by find (NULL: none; *from: the file it is in, or the
 * file it was looked for in, NULL for none) */
int pc_store_init_find(pc_store *s, const pc_graph *g, int (*is_base)(void *ctx, const char *key), void *ctx,
                       const pc_st_tensor *(*find)(void *fctx, const char *key, const pc_st_file **from), void *fctx,
                       uint64_t seed, char *err, size_t errlen);
void pc_store_free(pc_store *s);
/* the key of the first tensor pc_store_init would need from a file (a frozen adapter param, or
 * one without an init), NULL when every one can start from its init */
const char *pc_store_file_key(const pc_graph *g, int (*is_base)(void *ctx, const char *key), void *ctx);
/* binds every entry to the interpreter (the store must outlive it) */
int pc_store_bind(const pc_store *s, pc_exec *r);
/* the entry with this key, or NULL */
pc_store_entry *pc_store_find(const pc_store *s, const char *key);
/* an entry's data by key (shape into *shape): the pc_tensor_io.get of a store (ctx = the store) */
float *pc_store_tensor(void *store, const char *key, pc_shape *shape);
/* the key of the i-th param entry (adapter params, not optimizer states), NULL past the last:
 * the pc_tensor_io.key_at of a store */
const char *pc_store_param_key(void *store, int i);
/* adds entries whose flags intersect `which` to w (under their keys) */
int pc_store_write(const pc_store *s, unsigned which, pc_st_writer *w, char *err, size_t errlen);
/* copies data of entries with the same key from another store (e.g. train -> eval) by pointer:
 * binds src's buffers to r for every key r's graph shares with src */
int pc_store_bind_shared(const pc_store *src, const pc_graph *g, pc_exec *r);

#endif
