/* Adapter and optimizer tensors owned by a run. */
#include "drivers/store.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t key_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

typedef struct {
    const pc_st_file *const *files;
    int nfiles;
} file_list;

/* the first of the files holding key (*from: that file, else the first file, for messages) */
static const pc_st_tensor *in_files(void *ctx, const char *key, const pc_st_file **from) {
    const file_list *l = ctx;
    *from = l->nfiles > 0 ? l->files[0] : NULL;
    for (int fi = 0; fi < l->nfiles; fi++)
        if (l->files[fi]) {
            const pc_st_tensor *t = pc_st_find(l->files[fi], key);
            if (t) return *from = l->files[fi], t;
        }
    return NULL;
}

int pc_store_init(pc_store *s, const pc_graph *g, int (*is_base)(void *ctx, const char *key), void *ctx,
                  const pc_st_file *const *files, int nfiles, uint64_t seed, char *err, size_t errlen) {
    file_list l = {files, nfiles};
    return pc_store_init_find(s, g, is_base, ctx, in_files, &l, seed, err, errlen);
}

int pc_store_init_find(pc_store *s, const pc_graph *g, int (*is_base)(void *ctx, const char *key), void *ctx,
                       const pc_st_tensor *(*find)(void *fctx, const char *key, const pc_st_file **from), void *fctx,
                       uint64_t seed, char *err, size_t errlen) {
    *s = (pc_store){0};
    int cap = 0;
    for (pc_val v = 0; v < g->nvals; v++) {
        const pc_value *x = pc_v(g, v);
        if ((x->op != PC_OP_param && x->op != PC_OP_state) || !x->key) continue;
        if (is_base && is_base(ctx, x->key)) continue;
        if (x->dtype != PC_F32) { pc_store_free(s); return pc_errf(err, errlen, "%s: only f32 adapter tensors are supported", x->key); }
        if (s->n == cap) {
            cap = cap ? 2 * cap : 16;
            pc_store_entry *e = realloc(s->e, (size_t)cap * sizeof *e);
            if (!e) { pc_store_free(s); return pc_errf(err, errlen, "out of memory"); }
            s->e = e;
        }
        pc_store_entry *e = &s->e[s->n];
        *e = (pc_store_entry){.v = v, .key = strdup(x->key), .flags = x->flags & (PC_TRAINABLE | PC_FROZEN | PC_STATE),
                              .shape = x->shape, .n = pc_shape_numel(x->shape)};
        e->data = calloc((size_t)(e->n ? e->n : 1), sizeof(float));
        s->n++;
        if (!e->key || !e->data) {
            /* the size says whether the shape (a rank, a vocabulary) or the machine is at fault */
            char shape[96];
            pc_shape_str(x->shape, shape, sizeof shape);
            unsigned long long bytes = (unsigned long long)(e->n ? e->n : 1) * sizeof(float); /* e dies below */
            pc_store_free(s);
            return pc_errf(err, errlen, "out of memory allocating %llu bytes for %s \"%s\" (f32%s)", bytes,
                           (x->flags & PC_STATE) ? "optimizer state" : "adapter tensor", x->key, shape);
        }
        const pc_st_file *from = NULL;
        const pc_st_tensor *t = find(fctx, x->key, &from);
        if (t) {
            /* PEFT saves an adapter in its model's dtype: f16, bf16 and f64 files convert to f32 */
            bool floating = t->dtype == PC_F32 || t->dtype == PC_BF16 || strcmp(t->dtype_name, "F16") == 0 ||
                            strcmp(t->dtype_name, "F64") == 0;
            if (!floating || !pc_shape_eq(t->shape, x->shape)) {
                char want[96], got[96], dt[16] = "";
                pc_shape_str(x->shape, want, sizeof want);
                pc_shape_str(t->shape, got, sizeof got);
                for (size_t i = 0; t->dtype_name[i] && i + 1 < sizeof dt; i++)
                    dt[i] = (char)(t->dtype_name[i] >= 'A' && t->dtype_name[i] <= 'Z' ? t->dtype_name[i] + 32 : t->dtype_name[i]), dt[i + 1] = 0;
                pc_store_free(s);
                return pc_errf(err, errlen, "%s: tensor \"%s\" is %s%s, expected f32%s", pc_st_path(from), x->key, dt,
                               got, want);
            }
            char msg[256];
            if (pc_st_to_f32(from, t, e->data, msg, sizeof msg)) {
                pc_store_free(s);
                return pc_errf(err, errlen, "%s", msg);
            }
            e->loaded = true;
        } else if (x->init.kind != PC_INIT_NONE && !(x->flags & PC_FROZEN)) {
            /* trainable params and optimizer state may start from their init; a frozen adapter
             * param is a trained adapter's tensor and must come from its file */
            int64_t fan_in = x->shape.rank ? x->shape.dim[x->shape.rank - 1] : 1;
            pc_init_fill(e->data, e->n, x->init, fan_in, seed, key_hash(x->key));
        } else {
            pc_store_free(s);
            if (from)
                return pc_errf(err, errlen, "%s: no tensor \"%s\"%s", pc_st_path(from), x->key,
                               (x->flags & PC_FROZEN) ? "" : " and no init for it");
            return pc_errf(err, errlen, "no adapter weights hold tensor \"%s\" (a config alone has no trained tensors)", x->key);
        }
    }
    return 0;
}

const char *pc_store_file_key(const pc_graph *g, int (*is_base)(void *ctx, const char *key), void *ctx) {
    for (pc_val v = 0; v < g->nvals; v++) {
        const pc_value *x = pc_v(g, v);
        if ((x->op != PC_OP_param && x->op != PC_OP_state) || !x->key) continue;
        if (is_base && is_base(ctx, x->key)) continue;
        /* pc_store_init's rule: only trainable params and states with an init may start without */
        if (x->init.kind == PC_INIT_NONE || (x->flags & PC_FROZEN)) return x->key;
    }
    return NULL;
}

void pc_store_free(pc_store *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->e[i].data);
        free((char *)s->e[i].key);
    }
    free(s->e);
    *s = (pc_store){0};
}

int pc_store_bind(const pc_store *s, pc_exec *r) {
    for (int i = 0; i < s->n; i++)
        if (pc_exec_bind(r, s->e[i].v, s->e[i].data)) return -1;
    return 0;
}

pc_store_entry *pc_store_find(const pc_store *s, const char *key) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->e[i].key, key) == 0) return &s->e[i];
    return NULL;
}

float *pc_store_tensor(void *store, const char *key, pc_shape *shape) {
    pc_store_entry *e = pc_store_find(store, key);
    if (e && shape) *shape = e->shape;
    return e ? e->data : NULL;
}

const char *pc_store_param_key(void *store, int i) {
    const pc_store *s = store;
    for (int k = 0; k < s->n; k++)
        if (!(s->e[k].flags & PC_STATE) && i-- == 0) return s->e[k].key;
    return NULL;
}

int pc_store_write(const pc_store *s, unsigned which, pc_st_writer *w, char *err, size_t errlen) {
    for (int i = 0; i < s->n; i++)
        if ((s->e[i].flags & which) && pc_st_writer_add(w, s->e[i].key, PC_F32, s->e[i].shape, s->e[i].data, err, errlen))
            return -1;
    return 0;
}

int pc_store_bind_shared(const pc_store *src, const pc_graph *g, pc_exec *r) {
    for (pc_val v = 0; v < g->nvals; v++) {
        const pc_value *x = pc_v(g, v);
        if ((x->op != PC_OP_param && x->op != PC_OP_state) || !x->key) continue;
        pc_store_entry *e = pc_store_find(src, x->key);
        if (e && pc_shape_eq(e->shape, x->shape) && pc_exec_bind(r, v, e->data)) return -1;
    }
    return 0;
}
