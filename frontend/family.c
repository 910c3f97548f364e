/* The model-family registry and the model handle every driver holds. */
#include "frontend/family.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const pc_model_family pc_family_llama2c, pc_family_hf_llama, pc_family_gguf_llama, pc_family_hf_bert,
    pc_family_hf_gpt2;

/* one line per family; probed in this order (llama2.c, which has no magic number, last) */
static const pc_model_family *const families[] = {
    &pc_family_hf_bert,
    &pc_family_hf_gpt2,
    &pc_family_hf_llama,
    &pc_family_gguf_llama,
    &pc_family_llama2c,
    NULL,
};

pc_val pc_emit_site(const pc_site_hook *h, pc_site *s) {
    if (!s->g || pc_graph_error(s->g) || s->value == PC_NONE) return PC_NONE;
    if (!h || !h->fn) return s->value;
    char msg[1024] = "";
    if (h->fn(h->ctx, s, msg, sizeof msg)) {
        if (!pc_graph_error(s->g)) pc_fail(s->g, s->loc, "%s: %s", s->module, msg[0] ? msg : "adapter failed");
        return PC_NONE;
    }
    return s->value;
}

int pc_model_open(pc_model *m, const char *path, const char *family, char *err, size_t errlen) {
    *m = (pc_model){0};
    const pc_model_family *f = NULL;
    for (int i = 0; families[i] && !f; i++)
        if (family ? strcmp(families[i]->name, family) == 0 : families[i]->probe(path) == 1) f = families[i];
    if (!f) {
        if (family) return pc_errf(err, errlen, "unknown model family '%s'", family);
        return pc_errf(err, errlen,
                       "%s: no model family reads this (known: llama2.c checkpoints; Hugging Face directories of "
                       "Llama, GPT-2, BERT and RoBERTa models; GGUF Llama files)", path);
    }
    m->family = f;
    if (!(m->path = strdup(path))) return pc_errf(err, errlen, "out of memory");
    if (f->open(m, path, err, errlen)) {
        free(m->path);
        *m = (pc_model){0};
        return -1;
    }
    return 0;
}

void pc_model_close(pc_model *m) {
    if (m->family && m->family->close) m->family->close(m);
    free(m->over);
    free(m->over_buf);
    free(m->path);
    *m = (pc_model){0};
}

const float *pc_model_weight(const pc_model *m, const char *key, pc_shape *shape) {
    for (int i = 0; i < m->nover; i++)
        if (strcmp(m->over[i].key, key) == 0) {
            if (shape) *shape = m->over[i].shape;
            return m->over[i].data;
        }
    return m->family->weight(m, key, shape);
}

pc_graph *pc_model_build(const pc_model *m, const pc_build_req *req, const pc_site_hook *hook, char *err,
                         size_t errlen) {
    return m->family->build(m, req, hook, err, errlen);
}

void pc_model_set_replaced(pc_model *m, pc_weight *w, int n, float *buf) {
    free(m->over);
    free(m->over_buf);
    m->over = w;
    m->nover = n;
    m->over_buf = buf;
}
