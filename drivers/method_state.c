/* A method's own training state in checkpoints (drivers/method_state.h). */
#include "drivers/method_state.h"
#include "runtime/fileio.h"

#include <stdlib.h>
#include <string.h>

int pc_st_put_tensor(void *put_ctx, const char *key, pc_shape shape, const float *data) {
    pc_st_put *p = put_ctx;
    size_t n = (size_t)pc_shape_numel(shape);
    float **c = realloc(p->copies, (size_t)(p->n + 1) * sizeof *c), *copy = malloc((n ? n : 1) * sizeof *copy);
    if (c) p->copies = c;
    if (!c || !copy) { free(copy); return -1; }
    memcpy(copy, data, n * sizeof *copy);
    p->copies[p->n++] = copy;
    char msg[256];
    return pc_st_writer_add(p->w, key, PC_F32, shape, copy, msg, sizeof msg);
}

void pc_st_put_free(pc_st_put *p) {
    for (int i = 0; i < p->n; i++) free(p->copies[i]);
    free(p->copies);
    p->copies = NULL, p->n = 0;
}

int pc_method_state_save(pc_adapt_ctx *cx, pc_store *store, pc_st_put *p, char *err, size_t errlen) {
    const pc_adapter_method *m = pc_adapt_method(cx);
    if (!m->save_state) return 0;
    pc_tensor_io io = {pc_store_tensor, pc_st_put_tensor, store, p, pc_store_param_key, NULL, NULL};
    char msg[1024] = "";
    if (m->save_state(cx, pc_adapt_state(cx), &io, msg, sizeof msg) == 0) return 0;
    return pc_errf(err, errlen, "saving the %s adapter's training state: %s", m->name, msg[0] ? msg : "failed");
}

typedef struct {
    pc_store *store;
    const pc_st_file *f;
} state_src;

/* the run's params first, then the checkpoint's F32 tensors (read-only: load_state reads them) */
static float *state_get(void *ctx, const char *key, pc_shape *shape) {
    state_src *s = ctx;
    float *p = pc_store_tensor(s->store, key, shape);
    if (p) return p;
    const pc_st_tensor *t = pc_st_find(s->f, key);
    if (!t || t->dtype != PC_F32) return NULL;
    *shape = t->shape;
    return (float *)(uintptr_t)t->data;
}

static const char *state_key_at(void *ctx, int i) { return pc_store_param_key(((state_src *)ctx)->store, i); }

int pc_method_state_load(pc_adapt_ctx *cx, pc_store *store, const pc_st_file *f, char *err, size_t errlen) {
    const pc_adapter_method *m = pc_adapt_method(cx);
    if (!m->load_state) return 0;
    state_src src = {store, f};
    pc_tensor_io io = {state_get, NULL, &src, NULL, state_key_at, NULL, NULL};
    char msg[1024] = "";
    if (m->load_state(cx, pc_adapt_state(cx), &io, msg, sizeof msg) == 0) return 0;
    return pc_errf(err, errlen, "%s: the %s adapter's training state: %s", pc_st_path(f), m->name,
                   msg[0] ? msg : "cannot be restored");
}
