/* The GGUF Llama family: a llama.cpp GGUF file of the "llama" architecture (SmolLM2, Llama 2/3,
 * ...), its tensors dequantized to f32 at load and named by their Hugging Face keys, q/k rows
 * turned back from llama.cpp's permuted order into Hugging Face's (as transformers' GGUF loader
 * does), so an adapter PEFT made on the HF model applies unchanged. A merge writes a GGUF file
 * again: the same metadata, every tensor in F32 under its GGUF name, q/k permuted back. */
#include "frontend/llama.h"
#include "ir/ir.h"
#include "runtime/fileio.h"
#include "runtime/gguf.h"
#include "runtime/gguf_tokenizer.h"
#include "runtime/gguf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char key[96];
    pc_shape shape;
    float *data;
} gguf_weight;

typedef struct {
    pc_llama_config cfg;
    gguf_weight *w;
    int n;
} gguf_impl;

/* pc_read_head: a FIFO given as the model must not block the probe (fopen would) */
static int gguf_probe(const char *path) {
    char magic[4] = {0};
    return pc_read_head(path, magic, 4) == 4 && memcmp(magic, "GGUF", 4) == 0;
}

/* the Hugging Face key of a GGUF tensor name, or "" for one peftc's Llama does not use */
static void hf_key(const char *name, char *key, size_t len) {
    static const struct { const char *gguf, *hf; } top[] = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output_norm.weight", "model.norm.weight"},
        {"output.weight", "lm_head.weight"},
    };
    static const struct { const char *gguf, *hf; } blk[] = {
        {"attn_norm.weight", "input_layernorm.weight"},        {"attn_q.weight", "self_attn.q_proj.weight"},
        {"attn_k.weight", "self_attn.k_proj.weight"},          {"attn_v.weight", "self_attn.v_proj.weight"},
        {"attn_output.weight", "self_attn.o_proj.weight"},     {"ffn_norm.weight", "post_attention_layernorm.weight"},
        {"ffn_gate.weight", "mlp.gate_proj.weight"},           {"ffn_up.weight", "mlp.up_proj.weight"},
        {"ffn_down.weight", "mlp.down_proj.weight"},
    };
    key[0] = 0;
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (strcmp(name, top[i].gguf) == 0) { snprintf(key, len, "%s", top[i].hf); return; }
    int layer, used = 0;
    if (sscanf(name, "blk.%d.%n", &layer, &used) != 1 || used == 0) return;
    for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++)
        if (strcmp(name + used, blk[i].gguf) == 0) { snprintf(key, len, "model.layers.%d.%s", layer, blk[i].hf); return; }
}

static int meta_int(const pc_gguf *g, const char *key, int64_t dflt, bool required, int *out, char *err, size_t errlen) {
    int64_t v = dflt;
    if (pc_gguf_kv_type(g, key) >= 0 || required) {
        if (pc_gguf_get_int(g, key, &v, err, errlen)) return -1;
    }
    if (v <= 0 || v > (1 << 30)) return pc_errf(err, errlen, "%s: metadata key '%s': %lld is not a usable size", pc_gguf_path(g), key, (long long)v);
    *out = (int)v;
    return 0;
}

static int read_config(const pc_gguf *g, pc_llama_config *c, char *err, size_t errlen) {
    const char *arch;
    size_t alen;
    if (pc_gguf_get_str(g, "general.architecture", &arch, &alen, err, errlen)) return -1;
    if (strcmp(arch, "llama") != 0)
        return pc_errf(err, errlen, "%s: metadata key 'general.architecture': \"%s\" is not an architecture peftc reads "
                       "(llama is)", pc_gguf_path(g), arch);
    uint64_t ntok = 0;
    pc_gguf_vtype et;
    if (pc_gguf_kv_type(g, "tokenizer.ggml.tokens") >= 0 && pc_gguf_get_array(g, "tokenizer.ggml.tokens", &et, &ntok, err, errlen))
        return -1;
    if (meta_int(g, "llama.embedding_length", 0, true, &c->dim, err, errlen) ||
        meta_int(g, "llama.feed_forward_length", 0, true, &c->hidden_dim, err, errlen) ||
        meta_int(g, "llama.block_count", 0, true, &c->n_layers, err, errlen) ||
        meta_int(g, "llama.attention.head_count", 0, true, &c->n_heads, err, errlen) ||
        meta_int(g, "llama.context_length", 2048, false, &c->seq_len, err, errlen) ||
        meta_int(g, "llama.vocab_size", (int64_t)ntok, ntok == 0, &c->vocab_size, err, errlen))
        return -1;
    if (meta_int(g, "llama.attention.head_count_kv", c->n_heads, false, &c->n_kv_heads, err, errlen)) return -1;
    int rot = 0;
    if (c->dim % c->n_heads == 0 && meta_int(g, "llama.rope.dimension_count", c->dim / c->n_heads, false, &rot, err, errlen))
        return -1;
    if (c->dim % c->n_heads == 0 && rot != c->dim / c->n_heads)
        return pc_errf(err, errlen, "%s: metadata key 'llama.rope.dimension_count': %d; peftc rotates whole heads (%d)",
                       pc_gguf_path(g), rot, c->dim / c->n_heads);
    double v;
    if (pc_gguf_kv_type(g, "llama.attention.layer_norm_rms_epsilon") >= 0) {
        if (pc_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &v, err, errlen)) return -1;
        c->norm_eps = v;
    }
    if (pc_gguf_kv_type(g, "llama.rope.freq_base") >= 0) {
        if (pc_gguf_get_float(g, "llama.rope.freq_base", &v, err, errlen)) return -1;
        c->rope_theta = v;
    }
    if (pc_gguf_kv_type(g, "llama.rope.scaling.type") >= 0) {
        const char *st;
        size_t sl;
        if (pc_gguf_get_str(g, "llama.rope.scaling.type", &st, &sl, err, errlen)) return -1;
        if (strcmp(st, "none") != 0)
            return pc_errf(err, errlen, "%s: metadata key 'llama.rope.scaling.type': \"%s\" is not supported", pc_gguf_path(g), st);
    }
    c->rope_style = 1;
    c->tied = pc_gguf_tensor_find(g, "output.weight") ? 0 : 1;
    return pc_llama_config_check(c, err, errlen);
}

/* every tensor the Llama uses, dequantized, under its HF key; q/k back in HF row order */
static int load_weights(const pc_gguf *g, gguf_impl *x, char *err, size_t errlen) {
    int nt = pc_gguf_tensor_count(g);
    if (!(x->w = calloc((size_t)(nt ? nt : 1), sizeof *x->w))) return pc_errf(err, errlen, "out of memory");
    for (int i = 0; i < nt; i++) {
        const pc_gguf_tensor *t = pc_gguf_tensor_at(g, i);
        gguf_weight *w = &x->w[x->n];
        hf_key(t->name, w->key, sizeof w->key);
        if (!w->key[0]) continue;
        w->shape = pc_gguf_tensor_shape(t);
        if (!(w->data = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float))))
            return pc_errf(err, errlen, "%s: out of memory dequantizing tensor '%s' (%lld bytes)", pc_gguf_path(g), t->name,
                           (long long)t->numel * 4);
        x->n++;
        if (pc_gguf_tensor_to_f32(g, t->name, w->data, (size_t)t->numel, err, errlen)) return -1;
        bool q = strstr(w->key, "q_proj") != NULL, k = strstr(w->key, "k_proj") != NULL;
        if ((q || k) && pc_gguf_unpermute_qk(w->data, w->shape.dim[0], w->shape.dim[1],
                                            q ? x->cfg.n_heads : x->cfg.n_kv_heads, err, errlen))
            return -1;
    }
    return 0;
}

static void gguf_close(pc_model *m) {
    gguf_impl *x = m->impl;
    if (!x) return;
    for (int i = 0; i < x->n; i++) free(x->w[i].data);
    free(x->w);
    free(x);
    m->impl = NULL;
}

static int gguf_open(pc_model *m, const char *path, char *err, size_t errlen) {
    gguf_impl *x = calloc(1, sizeof *x);
    if (!x) return pc_errf(err, errlen, "out of memory");
    m->impl = x;
    x->cfg = pc_llama_config_default();
    pc_gguf *g = pc_gguf_open(path, err, errlen);
    int rc = !g || read_config(g, &x->cfg, err, errlen) || load_weights(g, x, err, errlen) ? -1 : 0;
    /* the vocabulary's BOS and EOS (-1 without) */
    int64_t ids[2] = {-1, -1};
    static const char *const keys[2] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"};
    for (int i = 0; i < 2 && !rc; i++) {
        char msg[256];
        if (pc_gguf_kv_type(g, keys[i]) >= 0 && pc_gguf_get_int(g, keys[i], &ids[i], msg, sizeof msg)) ids[i] = -1;
        if (ids[i] >= x->cfg.vocab_size) ids[i] = -1;
    }
    pc_gguf_close(g);
    if (rc) {
        gguf_close(m);
        return -1;
    }
    pc_llama_describe(m, &x->cfg);
    m->info.start_id = (int)ids[0];
    m->info.stop_id = (int)ids[1];
    return 0;
}

static pc_graph *gguf_build(const pc_model *m, const pc_build_req *req, const pc_site_hook *hook, char *err,
                            size_t errlen) {
    return pc_llama_build(&((const gguf_impl *)m->impl)->cfg, req, hook, err, errlen);
}

static const float *gguf_weight_of(const pc_model *m, const char *key, pc_shape *shape) {
    const gguf_impl *x = m->impl;
    for (int i = 0; i < x->n; i++)
        if (strcmp(x->w[i].key, key) == 0) {
            if (shape) *shape = x->w[i].shape;
            return x->w[i].data;
        }
    return NULL;
}

static int gguf_nweights(const pc_model *m) { return ((const gguf_impl *)m->impl)->n; }
static const char *gguf_weight_key(const pc_model *m, int i) { return ((const gguf_impl *)m->impl)->w[i].key; }

static const gguf_weight *impl_weight(const gguf_impl *x, const char *key) {
    for (int i = 0; i < x->n; i++)
        if (strcmp(x->w[i].key, key) == 0) return &x->w[i];
    return NULL;
}

static bool is_q_or_k(const char *key) { return strstr(key, "q_proj") || strstr(key, "k_proj"); }

static bool dequantizable(uint32_t type) {
    return type == PC_GGML_F32 || type == PC_GGML_F16 || type == PC_GGML_BF16 || type == PC_GGML_Q8_0 ||
           type == PC_GGML_Q4_0 || type == PC_GGML_Q4_1;
}

/* Tensor t of the source into the writer, in F32: a replacement (by HF key, shape checked), else
 * the dequantized copy the model runs on; q/k rows back in llama.cpp's order (into *own, which
 * the caller frees after writing). A tensor the Llama does not use is dequantized from the file,
 * or copied as it is when its type cannot be. */
static int put_tensor(const gguf_impl *x, const pc_gguf *g, const pc_gguf_tensor *t, const pc_weight *rep, int n,
                      bool *used, float **own, pc_gguf_writer *w, const char *path, char *err, size_t errlen) {
    char key[96];
    hf_key(t->name, key, sizeof key);
    const float *data = NULL;
    size_t numel = (size_t)t->numel;
    if (!key[0] && !dequantizable(t->type))
        return pc_gguf_writer_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, err, errlen);
    if (key[0]) {
        pc_shape shape = pc_gguf_tensor_shape(t);
        const gguf_weight *loaded = impl_weight(x, key);
        if (!loaded || !pc_shape_eq(loaded->shape, shape)) /* the file was replaced since it was opened */
            return pc_errf(err, errlen, "%s: tensor '%s' of %s is not the one loaded (the file changed); nothing written",
                           path, t->name, pc_gguf_path(g));
        for (int j = 0; j < n && !data; j++) {
            if (strcmp(rep[j].key, key) != 0) continue;
            if (!pc_shape_eq(rep[j].shape, shape)) {
                char a[96], b[96];
                pc_shape_str(rep[j].shape, a, sizeof a);
                pc_shape_str(shape, b, sizeof b);
                return pc_errf(err, errlen, "%s: tensor '%s' (%s): the merged tensor is %s, the model's is %s; nothing written",
                               path, t->name, key, a, b);
            }
            data = rep[j].data;
            used[j] = true;
        }
        if (!data) data = loaded->data;
    }
    if (!key[0] || is_q_or_k(key)) {
        if (!(*own = malloc((numel ? numel : 1) * sizeof(float))))
            return pc_errf(err, errlen, "%s: out of memory writing tensor '%s' (%zu floats)", path, t->name, numel);
        if (!key[0] && pc_gguf_tensor_to_f32(g, t->name, *own, numel, err, errlen)) return -1;
        if (key[0]) {
            memcpy(*own, data, numel * sizeof(float));
            pc_shape shape = pc_gguf_tensor_shape(t);
            int heads = strstr(key, "q_proj") ? x->cfg.n_heads : x->cfg.n_kv_heads;
            if (pc_gguf_permute_qk(*own, shape.dim[0], shape.dim[1], heads, err, errlen)) return -1;
        }
        data = *own;
    }
    return pc_gguf_writer_tensor(w, t->name, PC_GGML_F32, t->n_dims, t->ne, data, err, errlen);
}

static bool is_int_vtype(int t) {
    return (t >= PC_GGUF_UINT8 && t <= PC_GGUF_INT32) || t == PC_GGUF_UINT64 || t == PC_GGUF_INT64;
}

/* The source file again with the given tensors replaced: its metadata copied entry by entry in
 * order (general.file_type set to 0, ALL_F32), every tensor in its order under its GGUF name and
 * dims, in F32 (put_tensor). A replacement whose key or shape the file does not have is an
 * error, and nothing is written. */
static int gguf_write(const pc_model *m, const char *path, const pc_weight *rep, int n, char *err, size_t errlen) {
    const gguf_impl *x = m->impl;
    pc_gguf *g = pc_gguf_open(m->path, err, errlen);
    if (!g) return -1;
    int nt = pc_gguf_tensor_count(g);
    pc_gguf_writer *w = pc_gguf_writer_new(path);
    float **own = calloc((size_t)(nt ? nt : 1), sizeof *own);
    bool *used = calloc((size_t)(n > 0 ? n : 1), sizeof *used);
    int rc = w && own && used ? 0 : pc_errf(err, errlen, "%s: out of memory", path);
    for (int i = 0; !rc && i < pc_gguf_kv_count(g); i++) {
        const char *key = pc_gguf_kv_key(g, i);
        int type = pc_gguf_kv_type(g, key);
        if (strcmp(key, "general.file_type") == 0)
            rc = pc_gguf_writer_kv_int(w, key, is_int_vtype(type) ? (pc_gguf_vtype)type : PC_GGUF_UINT32, 0, err, errlen);
        else
            rc = pc_gguf_writer_copy_kv(w, g, i, err, errlen);
    }
    for (int i = 0; !rc && i < nt; i++) rc = put_tensor(x, g, pc_gguf_tensor_at(g, i), rep, n, used, &own[i], w, path, err, errlen);
    for (int j = 0; !rc && j < n; j++) {
        if (used[j]) continue;
        bool twice = false;
        for (int k = 0; k < j && !twice; k++) twice = strcmp(rep[k].key, rep[j].key) == 0;
        rc = twice ? pc_errf(err, errlen, "%s: tensor '%s' is replaced twice; nothing written", path, rep[j].key)
                   : pc_errf(err, errlen, "%s: %s has no tensor '%s' to replace; nothing written", path, m->path,
                             rep[j].key);
    }
    if (!rc) rc = pc_gguf_writer_write(w, path, err, errlen);
    for (int i = 0; own && i < nt; i++) free(own[i]);
    free(own);
    free(used);
    pc_gguf_writer_free(w);
    pc_gguf_close(g);
    return rc;
}

static int gguf_rotary_rows(const pc_model *m, const char *module) {
    (void)m, (void)module;
    return 0; /* HF order after loading */
}

/* the vocabulary the file carries (tokenizer.ggml.*), read again from the file */
static pc_text_tokenizer *gguf_tokenizer(const pc_model *m, char *err, size_t errlen) {
    pc_gguf *g = pc_gguf_open(m->path, err, errlen);
    if (!g) return NULL;
    if (errlen) err[0] = 0;
    pc_hftok *t = pc_gguf_tokenizer(g, err, errlen);
    pc_gguf_close(g);
    return t ? pc_text_tokenizer_from_hf(t, m->path, err, errlen) : NULL;
}

const pc_model_family pc_family_gguf_llama = {
    .name = "gguf-llama",
    .model_type = "llama",
    .format = "GGUF file (every tensor F32)",
    .probe = gguf_probe,
    .open = gguf_open,
    .close = gguf_close,
    .build = gguf_build,
    .weight = gguf_weight_of,
    .nweights = gguf_nweights,
    .weight_key = gguf_weight_key,
    .write = gguf_write,
    .rotary_rows = gguf_rotary_rows,
    .tokenizer = gguf_tokenizer,
};
