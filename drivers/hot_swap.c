/* Hot swap of a named adapter's weights (see hot_swap.h). */
#include "drivers/hot_swap.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the IR text of the small evaluation graph adapter k builds (NULL on error) */
static char *graph_text(pc_session *s, int k, char *err, size_t errlen) {
    int was = s->active;
    bool mixed = s->mixed;
    s->mixed = false;
    pc_session_set_active(s, s->named[k].name, err, errlen);
    const pc_model_info *mi = &s->model.info;
    pc_build_req req = {.task = mi->encoder ? PC_TASK_SEQ_CLASSIFY : PC_TASK_LM, .batch = 1, .seq = 2,
                        .mode = PC_ADAPT_EVAL};
    pc_graph *g = pc_session_build(s, &req, false, err, errlen);
    char *text = g ? pc_print(g, (pc_print_opts){0}) : NULL;
    pc_graph_free(g);
    pc_session_set_active(s, was < 0 ? PC_BASE_ADAPTER_NAME : s->named[was].name, NULL, 0);
    s->mixed = mixed;
    return text;
}

int pc_session_replace_adapter(pc_session *s, const char *name, const char *path, char *err, size_t errlen) {
    int k = pc_session_adapter_index(s, name);
    if (k < 0 || k == s->nnamed) return pc_errf(err, errlen, "no adapter is named '%s' to replace", name);
    pc_named_adapter *a = &s->named[k];
    pc_adapter_files fresh = {0};
    const char *custom[64];
    size_t nc = pc_registry_custom_types(s->reg, custom, 64);
    if (pc_adapter_load_ex(path, &fresh, custom, nc, err, errlen)) return -1;
    if (!fresh.weights) {
        pc_adapter_close(&fresh);
        return pc_errf(err, errlen, "replacing adapter '%s': %s has no trained tensors", name, path);
    }
    char *old_text = graph_text(s, k, err, errlen), *new_text = NULL;
    /* the candidate in the slot, through the same config checks as a new adapter */
    pc_named_adapter keep = *a;
    char *src = strdup(path);
    a->files = fresh, a->source = src;
    int was = s->active;
    pc_session_set_active(s, name, NULL, 0);
    int rc = !old_text || !src ? -1 : pc_session_find_method(s, err, errlen);
    a->method = s->method;
    if (!rc && a->method != keep.method)
        rc = pc_errf(err, errlen, "replacing adapter '%s': %s is %s, not %s", name, path, a->method->name,
                     keep.method->name);
    if (!rc) rc = pc_session_check_adapter(s, k, err, errlen);
    if (!rc && !(new_text = graph_text(s, k, err, errlen))) rc = -1;
    if (!rc && strcmp(old_text, new_text))
        rc = pc_errf(err, errlen, "replacing adapter '%s': %s builds another graph than %s (a hot swap changes "
                     "tensor values only: the same targets, ranks and scales)", name, path, keep.source);
    if (rc) { /* put the old one back */
        pc_adapter_close(&a->files);
        free(a->source);
        *a = keep;
    } else {
        pc_adapter_close(&keep.files);
        free(keep.source);
    }
    pc_session_set_active(s, was < 0 ? PC_BASE_ADAPTER_NAME : s->named[was].name, NULL, 0);
    free(old_text);
    free(new_text);
    return rc;
}

int pc_session_refresh_inference(const pc_session *s, const pc_build_req *req, const pc_graph *g, pc_store *st,
                                 pc_folded *f, pc_exec *r, char *err, size_t errlen) {
    pc_store st2 = {0};
    pc_folded f2 = {0};
    pc_graph *g2 = pc_session_inference_graph(s, req, &st2, &f2, err, errlen);
    int rc = g2 ? 0 : -1;
    char *a = g2 ? pc_print(g, (pc_print_opts){0}) : NULL, *b = g2 ? pc_print(g2, (pc_print_opts){0}) : NULL;
    if (!rc && (!a || !b || strcmp(a, b) || st2.n != st->n || f2.n != f->n))
        rc = pc_errf(err, errlen, "the session now builds another graph: compile it anew");
    for (int i = 0; i < st->n && !rc; i++) {
        const pc_store_entry *e = pc_store_find(&st2, st->e[i].key);
        if (!e || e->n != st->e[i].n) { rc = pc_errf(err, errlen, "%s: changed shape", st->e[i].key); break; }
        memcpy(st->e[i].data, e->data, (size_t)e->n * sizeof *e->data);
    }
    for (int i = 0; i < f->n && !rc; i++) {
        pc_val v = pc_lookup_key(g, f->keys[i]);
        if (v == PC_NONE || strcmp(f->keys[i], f2.keys[i])) { rc = pc_errf(err, errlen, "folded values differ"); break; }
        memcpy(f->data[i], f2.data[i], (size_t)pc_shape_numel(pc_val_shape(g, v)) * sizeof(float));
    }
    if (!rc) rc = pc_session_bind_inference(s, g, st, f, r, err, errlen); /* a bind reorders again */
    free(a);
    free(b);
    pc_graph_free(g2);
    pc_store_free(&st2);
    pc_folded_free(&f2);
    return rc;
}
