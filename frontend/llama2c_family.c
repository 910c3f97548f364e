/* The llama2.c checkpoint family: a Llama read from a llama2.c legacy checkpoint, its weights
 * under Hugging Face names, merged models written back as llama2.c checkpoints. */
#include "frontend/llama.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    pc_l2c_model *ckpt;
    pc_llama_config cfg;
} l2c_impl;

/* a llama2.c checkpoint has no magic number: any file other families do not name by extension */
static int l2c_probe(const char *path) {
    static const char *const others[] = {".gguf", ".safetensors", ".json"};
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        size_t k = strlen(others[i]);
        if (n >= k && strcmp(path + n - k, others[i]) == 0) return 0;
    }
    return 1;
}

static int l2c_open(pc_model *m, const char *path, char *err, size_t errlen) {
    l2c_impl *x = calloc(1, sizeof *x);
    if (!x) return pc_errf(err, errlen, "out of memory");
    if (!(x->ckpt = pc_l2c_open(path, err, errlen))) { free(x); return -1; }
    x->cfg = pc_llama_config_from_l2c(&x->ckpt->cfg);
    if (pc_llama_config_check(&x->cfg, err, errlen)) {
        pc_l2c_close(x->ckpt);
        free(x);
        return -1;
    }
    m->impl = x;
    pc_llama_describe(m, &x->cfg);
    return 0;
}

static void l2c_close(pc_model *m) {
    l2c_impl *x = m->impl;
    if (!x) return;
    pc_l2c_close(x->ckpt);
    free(x);
    m->impl = NULL;
}

const pc_llama_config *pc_llama2c_config(const pc_model *m) {
    return m && m->family == &pc_family_llama2c ? &((const l2c_impl *)m->impl)->cfg : NULL;
}

static pc_graph *l2c_build(const pc_model *m, const pc_build_req *req, const pc_site_hook *hook, char *err,
                           size_t errlen) {
    return pc_llama_build(pc_llama2c_config(m), req, hook, err, errlen);
}

static const float *l2c_weight(const pc_model *m, const char *key, pc_shape *shape) {
    const pc_l2c_tensor *t = pc_l2c_find(((const l2c_impl *)m->impl)->ckpt, key);
    if (!t) return NULL;
    if (shape) *shape = t->shape;
    return t->data;
}

static int l2c_nweights(const pc_model *m) { return ((const l2c_impl *)m->impl)->ckpt->n_tensors; }
static const char *l2c_weight_key(const pc_model *m, int i) { return ((const l2c_impl *)m->impl)->ckpt->tensors[i].name; }

static int l2c_write(const pc_model *m, const char *path, const pc_weight *rep, int n, char *err, size_t errlen) {
    const pc_l2c_model *ck = ((const l2c_impl *)m->impl)->ckpt;
    pc_l2c_tensor *t = malloc((size_t)ck->n_tensors * sizeof *t);
    if (!t) return pc_errf(err, errlen, "out of memory");
    int nt = 0;
    for (int i = 0; i < ck->n_tensors; i++) {
        /* a tied classifier is the embedding: the writer takes it from there */
        if (ck->cfg.shared_classifier && strcmp(ck->tensors[i].name, "lm_head.weight") == 0) continue;
        t[nt] = ck->tensors[i];
        for (int j = 0; j < n; j++)
            if (strcmp(rep[j].key, t[nt].name) == 0) t[nt].data = rep[j].data;
        nt++;
    }
    int rc = pc_l2c_write(path, &ck->cfg, t, nt, ck->freq_cis_real, ck->freq_cis_imag, err, errlen);
    free(t);
    return rc;
}

/* q/k projections rotate adjacent pairs of each head's rows */
static int l2c_rotary_rows(const pc_model *m, const char *module) {
    size_t n = strlen(module);
    if (n < 6 || (strcmp(module + n - 6, "q_proj") && strcmp(module + n - 6, "k_proj"))) return 0;
    return m->info.dim / m->info.n_heads;
}

/* llama2.c keeps its tokenizer beside the checkpoint: tok<vocab>.bin (stories260K's tok512.bin),
 * else tokenizer.bin (the 32000-token Llama 2 vocabulary) */
static pc_text_tokenizer *l2c_tokenizer(const pc_model *m, char *err, size_t errlen) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s", m->path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    char tok[64];
    snprintf(tok, sizeof tok, "tok%d.bin", m->info.vocab);
    const char *names[] = {tok, "tokenizer.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (access(path, R_OK) == 0) return pc_text_tokenizer_open(path, m->info.vocab, err, errlen);
    }
    if (errlen) err[0] = 0;
    return NULL;
}

const pc_model_family pc_family_llama2c = {
    .name = "llama2c",
    .model_type = "llama",
    .format = "llama2.c checkpoint",
    .probe = l2c_probe,
    .open = l2c_open,
    .close = l2c_close,
    .build = l2c_build,
    .weight = l2c_weight,
    .nweights = l2c_nweights,
    .weight_key = l2c_weight_key,
    .write = l2c_write,
    .rotary_rows = l2c_rotary_rows,
    .tokenizer = l2c_tokenizer,
};
