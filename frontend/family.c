/* The model-family registry and the model handle every driver holds. */
#include "frontend/family.h"
#include "ir/ir.h"
#include "runtime/fileio.h"
#include "runtime/hf_checkpoint.h"

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

int pc_decode_begin(pc_graph *g, pc_decode_io *io, int64_t B, int64_t T, int n_layers, int64_t kv_heads,
                    int64_t head_dim) {
    *io = (pc_decode_io){.n_layers = n_layers};
    pc_val *vals = calloc((size_t)(n_layers ? n_layers : 1) * 4, sizeof *vals);
    if (!vals) return -1;
    io->k_cache = vals, io->v_cache = vals + n_layers, io->k_new = vals + 2 * n_layers, io->v_new = vals + 3 * n_layers;
    io->token = pc_input(g, "token", PC_I32, PC_SHAPE(B, 1));
    io->pos = pc_input(g, "pos", PC_I32, PC_SHAPE(1));
    io->mask = pc_input(g, "mask", PC_F32, PC_SHAPE(T + 1));
    char name[64];
    for (int i = 0; i < n_layers; i++) {
        snprintf(name, sizeof name, "k_cache.%d", i);
        io->k_cache[i] = pc_input(g, name, PC_F32, PC_SHAPE(B, T, kv_heads, head_dim));
        snprintf(name, sizeof name, "v_cache.%d", i);
        io->v_cache[i] = pc_input(g, name, PC_F32, PC_SHAPE(B, T, kv_heads, head_dim));
        io->k_new[i] = io->v_new[i] = PC_NONE;
    }
    return 0;
}

void pc_decode_end(pc_graph *g, pc_decode_io *io, pc_val logits) {
    if (!pc_graph_error(g)) {
        pc_set_name(g, logits, "logits");
        pc_mark_output(g, logits);
        char name[64];
        for (int i = 0; i < io->n_layers && !pc_graph_error(g); i++) {
            snprintf(name, sizeof name, "k_new.%d", i);
            if (pc_set_name(g, io->k_new[i], name)) pc_fail(g, PC_HERE, "cannot name %%%s", name);
            snprintf(name, sizeof name, "v_new.%d", i);
            if (pc_set_name(g, io->v_new[i], name)) pc_fail(g, PC_HERE, "cannot name %%%s", name);
            pc_mark_output(g, io->k_new[i]);
            pc_mark_output(g, io->v_new[i]);
        }
    }
    free(io->k_cache);
    *io = (pc_decode_io){0};
}

pc_text_tokenizer *pc_hf_dir_tokenizer(const pc_model *m, char *err, size_t errlen) {
    char path[4200];
    if (errlen) err[0] = 0;
    if (pc_hf_tokenizer_path(m->path, path, sizeof path)) return NULL;
    return pc_text_tokenizer_open(path, m->info.vocab, err, errlen);
}

const pc_model_family *pc_model_family_of(const char *path) {
    for (int i = 0; families[i]; i++)
        if (families[i]->probe(path) == 1) return families[i];
    return NULL;
}

int pc_model_open(pc_model *m, const char *path, const char *family, char *err, size_t errlen) {
    return pc_model_open_labels(m, path, family, 0, err, errlen);
}

int pc_model_open_labels(pc_model *m, const char *path, const char *family, int num_labels, char *err, size_t errlen) {
    *m = (pc_model){.num_labels = num_labels};
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
    if (num_labels > 0 && m->info.num_labels != num_labels) {
        int has = m->info.num_labels;
        pc_model_close(m);
        return pc_errf(err, errlen, "%s: %d labels were asked for, and the model %s", path, num_labels,
                       has ? "has another head" : "has no classification head");
    }
    return 0;
}

void pc_model_close(pc_model *m) {
    if (m->family && m->family->close) m->family->close(m);
    free(m->head_note);
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

const uint16_t *pc_model_weight_bf16(const pc_model *m, const char *key, pc_shape *shape) {
    for (int i = 0; i < m->nover; i++)
        if (strcmp(m->over[i].key, key) == 0) return NULL;
    return m->family->weight_bf16 ? m->family->weight_bf16(m, key, shape) : NULL;
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
