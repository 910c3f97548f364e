/* The Hugging Face GPT-2 family: a GPT2LMHeadModel directory (config.json with model_type "gpt2"
 * + safetensors, one file or shards; f32, bf16 or f16, converted to f32 at load). Keys are
 * transformers' ("transformer.h.0.attn.c_attn.weight"); a file saved from a bare GPT2Model, as
 * the original openai-community/gpt2 is ("h.0.attn.c_attn.weight", plus the causal-mask buffers
 * "h.{i}.attn.bias"), is read under the same "transformer."-prefixed keys.
 *
 * The Conv1D projections (c_attn, attn.c_proj, c_fc, mlp.c_proj) are stored [in, out]; this
 * family hands them to the graph as [out, in] (transposed once, on first use) and writes merged
 * ones back as [in, out], so adapters see plain linears (frontend/gpt2.h) and PEFT's adapter
 * files, made with fan_in_fan_out = true on these modules, apply with no flag. */
#include "frontend/gpt2.h"
#include "ir/ir.h"
#include "runtime/fileio.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/hf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char PREFIX[] = "transformer.";

typedef struct {
    pc_hf_checkpoint *ckpt;
    pc_gpt2_config cfg;
    int n;          /* the checkpoint's tensors */
    char **keys;    /* their keys as the graph names them ("transformer."-prefixed) */
    float **tr;     /* Conv1D tensors transposed to [out, in], made on first use */
    pc_shape *trs;  /* their shapes */
} gpt2_impl;

/* the model_type of a Hugging Face model directory is "gpt2" */
static int gpt2_probe(const char *path) {
    if (!pc_hf_is_model_dir(path)) return 0;
    char msg[256];
    int rc = 0;
    pc_hf_checkpoint *ck = pc_hf_open(path, msg, sizeof msg);
    const char *type = ck ? pc_hf_string(ck, "model_type", msg, sizeof msg, &rc) : NULL;
    int yes = type && strcmp(type, "gpt2") == 0;
    pc_hf_close(ck);
    return yes;
}

/* config.json -> the builder's config; what the builder cannot honour is refused */
static int read_config(pc_hf_checkpoint *ck, pc_gpt2_config *c, char *err, size_t errlen) {
    char where[4200];
    snprintf(where, sizeof where, "%s/config.json", pc_hf_dir(ck));
    int rc = 0;
    const char *type = pc_hf_string(ck, "model_type", err, errlen, &rc);
    if (rc) return -1;
    if (!type || strcmp(type, "gpt2") != 0)
        return pc_errf(err, errlen, "%s: field \"model_type\": %s%s%s is not a model peftc reads as a GPT-2", where,
                       type ? "\"" : "", type ? type : "missing", type ? "\"" : "");
    /* GPT2Config's defaults (gpt2 small) for absent fields, as transformers fills them */
    struct { const char *field; int *to; long long dflt; } ints[] = {
        {"n_embd", &c->dim, 768}, {"n_layer", &c->n_layers, 12}, {"n_head", &c->n_heads, 12},
        {"vocab_size", &c->vocab_size, 50257}, {"n_positions", &c->n_positions, 1024},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        long long v;
        if (pc_hf_int(ck, ints[i].field, ints[i].dflt, &v, NULL, err, errlen)) return -1;
        if (v <= 0 || v > 1 << 30) return pc_errf(err, errlen, "%s: field \"%s\": must be a positive size", where, ints[i].field);
        *ints[i].to = (int)v;
    }
    long long inner;
    bool found;
    if (pc_hf_int(ck, "n_inner", 4LL * c->dim, &inner, &found, err, errlen)) return -1;
    if (inner <= 0 || inner > 1 << 30) return pc_errf(err, errlen, "%s: field \"n_inner\": must be a positive size", where);
    c->hidden_dim = (int)inner;
    if (pc_hf_number(ck, "layer_norm_epsilon", 1e-5, &c->norm_eps, NULL, err, errlen)) return -1;
    const char *act = pc_hf_string(ck, "activation_function", err, errlen, &rc);
    if (rc) return -1;
    /* transformers' ACT2FN: gelu_new, gelu_pytorch_tanh and gelu_fast are the tanh form (gelu_fast
     * factors it differently: the same function up to rounding), gelu the erf form */
    if (!act || strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0 || strcmp(act, "gelu_fast") == 0)
        c->gelu_tanh = 1;
    else if (strcmp(act, "gelu") == 0)
        c->gelu_tanh = 0;
    else
        return pc_errf(err, errlen, "%s: field \"activation_function\": \"%s\" is not supported (gelu_new, "
                       "gelu_pytorch_tanh, gelu_fast and gelu are)", where, act);
    bool scale, inverse, cross, tied;
    if (pc_hf_bool(ck, "scale_attn_weights", true, &scale, err, errlen) ||
        pc_hf_bool(ck, "scale_attn_by_inverse_layer_idx", false, &inverse, err, errlen) ||
        pc_hf_bool(ck, "add_cross_attention", false, &cross, err, errlen) ||
        pc_hf_bool(ck, "tie_word_embeddings", true, &tied, err, errlen))
        return -1;
    /* reorder_and_upcast_attn only changes the order of f32 operations: the same model */
    if (cross)
        return pc_errf(err, errlen, "%s: field \"add_cross_attention\": true; peftc's GPT-2 is a decoder without "
                       "cross-attention", where);
    c->scale_attn_weights = scale;
    c->scale_by_inverse_layer = inverse;
    c->tied = tied;
    return pc_gpt2_config_check(c, err, errlen);
}

static int find_key(const gpt2_impl *x, const char *key) {
    for (int i = 0; i < x->n; i++)
        if (strcmp(x->keys[i], key) == 0) return i;
    return -1;
}

/* the checkpoint's key of graph key i */
static const char *file_key(const gpt2_impl *x, int i) { return pc_hf_weight_key(x->ckpt, i); }

/* the [in, out] tensor of a Conv1D key, checked against the config, and its transpose */
static const float *conv1d_weight(gpt2_impl *x, int i, pc_shape *shape, char *err, size_t errlen) {
    if (x->tr[i]) {
        if (shape) *shape = x->trs[i];
        return x->tr[i];
    }
    pc_shape s;
    const float *w = pc_hf_weight(x->ckpt, file_key(x, i), &s, err, errlen);
    if (!w) return NULL;
    if (s.rank != 2) {
        pc_errf(err, errlen, "%s: tensor '%s': a Conv1D weight [in, out] must have rank 2", pc_hf_dir(x->ckpt), file_key(x, i));
        return NULL;
    }
    const int64_t in = s.dim[0], out = s.dim[1];
    float *t = malloc((size_t)(in * out > 0 ? in * out : 1) * sizeof *t);
    if (!t) { pc_errf(err, errlen, "out of memory"); return NULL; }
    for (int64_t r = 0; r < in; r++)
        for (int64_t c = 0; c < out; c++) t[c * in + r] = w[r * out + c];
    x->tr[i] = t;
    x->trs[i] = PC_SHAPE(out, in);
    if (shape) *shape = x->trs[i];
    return t;
}

/* every tensor the graph reads, present with its shape (Conv1D ones [in, out] in the file) */
static int check_tensors(gpt2_impl *x, char *err, size_t errlen) {
    const pc_gpt2_config *c = &x->cfg;
    const int64_t D = c->dim, F = c->hidden_dim;
    char key[256];
    struct { const char *name; pc_shape s; } top[] = {
        {"transformer.wte.weight", PC_SHAPE(c->vocab_size, D)}, {"transformer.wpe.weight", PC_SHAPE(c->n_positions, D)},
        {"transformer.ln_f.weight", PC_SHAPE(D)}, {"transformer.ln_f.bias", PC_SHAPE(D)},
        {"lm_head.weight", PC_SHAPE(c->vocab_size, D)},
    };
    struct { const char *tail; pc_shape s; } per[] = {
        {"ln_1.weight", PC_SHAPE(D)}, {"ln_1.bias", PC_SHAPE(D)}, {"ln_2.weight", PC_SHAPE(D)}, {"ln_2.bias", PC_SHAPE(D)},
        {"attn.c_attn.weight", PC_SHAPE(D, 3 * D)}, {"attn.c_attn.bias", PC_SHAPE(3 * D)},
        {"attn.c_proj.weight", PC_SHAPE(D, D)}, {"attn.c_proj.bias", PC_SHAPE(D)},
        {"mlp.c_fc.weight", PC_SHAPE(D, F)}, {"mlp.c_fc.bias", PC_SHAPE(F)},
        {"mlp.c_proj.weight", PC_SHAPE(F, D)}, {"mlp.c_proj.bias", PC_SHAPE(D)},
    };
    int ntop = (int)(sizeof top / sizeof top[0]) - (c->tied ? 1 : 0);
    for (int l = -1; l < c->n_layers; l++)
        for (int j = 0; j < (l < 0 ? ntop : (int)(sizeof per / sizeof per[0])); j++) {
            pc_shape want = l < 0 ? top[j].s : per[j].s;
            if (l < 0) snprintf(key, sizeof key, "%s", top[j].name);
            else snprintf(key, sizeof key, "transformer.h.%d.%s", l, per[j].tail);
            int i = find_key(x, key);
            if (i < 0) return pc_errf(err, errlen, "%s: no tensor '%s'%s", pc_hf_dir(x->ckpt), key,
                                      strcmp(key, "lm_head.weight") == 0 ? " (tie_word_embeddings is false)" : "");
            pc_shape s;
            if (!pc_hf_weight(x->ckpt, file_key(x, i), &s, err, errlen)) return -1;
            if (!pc_shape_eq(s, want)) {
                char a[96], b[96];
                pc_shape_str(s, a, sizeof a);
                pc_shape_str(want, b, sizeof b);
                return pc_errf(err, errlen, "%s: tensor '%s' is %s; config.json gives %s%s", pc_hf_dir(x->ckpt),
                               file_key(x, i), a, b, pc_gpt2_is_conv1d_key(key) ? " (a Conv1D weight, [in, out])" : "");
            }
        }
    return 0;
}

static void impl_free(gpt2_impl *x) {
    if (!x) return;
    for (int i = 0; i < x->n; i++) {
        if (x->keys) free(x->keys[i]);
        if (x->tr) free(x->tr[i]);
    }
    free(x->keys);
    free(x->tr);
    free(x->trs);
    pc_hf_close(x->ckpt);
    free(x);
}

static int gpt2_open(pc_model *m, const char *path, char *err, size_t errlen) {
    gpt2_impl *x = calloc(1, sizeof *x);
    if (!x) return pc_errf(err, errlen, "out of memory");
    x->cfg = pc_gpt2_config_default();
    if (!(x->ckpt = pc_hf_open(path, err, errlen)) || read_config(x->ckpt, &x->cfg, err, errlen)) goto fail;
    x->n = pc_hf_nweights(x->ckpt);
    /* a bare GPT2Model file has "wte.weight": every key but lm_head gets the prefix */
    bool bare = false;
    for (int i = 0; i < x->n && !bare; i++) bare = strcmp(pc_hf_weight_key(x->ckpt, i), "wte.weight") == 0;
    x->keys = calloc((size_t)(x->n ? x->n : 1), sizeof *x->keys);
    x->tr = calloc((size_t)(x->n ? x->n : 1), sizeof *x->tr);
    x->trs = calloc((size_t)(x->n ? x->n : 1), sizeof *x->trs);
    if (!x->keys || !x->tr || !x->trs) { pc_errf(err, errlen, "out of memory"); goto fail; }
    for (int i = 0; i < x->n; i++) {
        const char *k = pc_hf_weight_key(x->ckpt, i);
        bool add = bare && strncmp(k, "lm_head.", 8) != 0;
        size_t len = strlen(k) + (add ? sizeof PREFIX : 1);
        if (!(x->keys[i] = malloc(len))) { pc_errf(err, errlen, "out of memory"); goto fail; }
        snprintf(x->keys[i], len, "%s%s", add ? PREFIX : "", k);
    }
    if (check_tensors(x, err, errlen)) goto fail;
    m->impl = x;
    m->info = (pc_model_info){.model_type = "gpt2", .dim = x->cfg.dim, .vocab = x->cfg.vocab_size,
                              .context = x->cfg.n_positions, .n_layers = x->cfg.n_layers, .n_heads = x->cfg.n_heads,
                              .n_kv_heads = x->cfg.n_heads, .conv1d = true,
                              .start_id = pc_hf_token_id(x->ckpt, "bos_token_id", x->cfg.vocab_size),
                              .stop_id = pc_hf_token_id(x->ckpt, "eos_token_id", x->cfg.vocab_size)};
    m->kv_row = x->cfg.dim;
    return 0;
fail:
    impl_free(x);
    return -1;
}

static void gpt2_close(pc_model *m) {
    impl_free(m->impl);
    m->impl = NULL;
}

static pc_graph *gpt2_build(const pc_model *m, const pc_build_req *req, const pc_site_hook *hook, char *err,
                            size_t errlen) {
    return pc_gpt2_build(&((const gpt2_impl *)m->impl)->cfg, req, hook, err, errlen);
}

static const float *gpt2_weight(const pc_model *m, const char *key, pc_shape *shape) {
    gpt2_impl *x = m->impl;
    int i = find_key(x, key);
    if (i < 0) return NULL;
    if (pc_gpt2_is_conv1d_key(key)) return conv1d_weight(x, i, shape, NULL, 0);
    return pc_hf_weight(x->ckpt, file_key(x, i), shape, NULL, 0);
}

static int gpt2_nweights(const pc_model *m) { return ((const gpt2_impl *)m->impl)->n; }
static const char *gpt2_weight_key(const pc_model *m, int i) {
    const gpt2_impl *x = m->impl;
    return i >= 0 && i < x->n ? x->keys[i] : NULL;
}

/* transformers' causal-mask buffers of old files ("h.0.attn.bias", "h.0.attn.masked_bias"): it
 * ignores them on load, and they are no weights */
static bool mask_buffer(const char *key) {
    size_t n = strlen(key);
    return (n > 10 && strcmp(key + n - 10, ".attn.bias") == 0) || (n > 17 && strcmp(key + n - 17, ".attn.masked_bias") == 0);
}

/* A Hugging Face directory transformers loads as the same GPT2LMHeadModel (runtime/hf_write.h:
 * config with dtype float32, the tokenizer and other files copied): every floating-point tensor
 * in f32 under the checkpoint's own keys, the replaced ones with Conv1D weights back in [in, out];
 * the causal-mask buffers are left out. */
static int gpt2_write(const pc_model *m, const char *path, const pc_weight *rep, int n, char *err, size_t errlen) {
    gpt2_impl *x = m->impl;
    pc_hf_tensor *t = calloc((size_t)(x->n ? x->n : 1), sizeof *t);
    float **back = calloc((size_t)(x->n ? x->n : 1), sizeof *back);
    char *config = pc_hf_config_text_f32(x->ckpt);
    int rc = t && back && config ? 0 : pc_errf(err, errlen, "%s: out of memory", path), nt = 0;
    for (int i = 0; !rc && i < x->n; i++) {
        const char *key = x->keys[i], *dt = pc_hf_weight_dtype(x->ckpt, file_key(x, i));
        if (mask_buffer(key) || (strcmp(dt, "F32") && strcmp(dt, "BF16") && strcmp(dt, "F16") && strcmp(dt, "F64")))
            continue;
        pc_hf_tensor *o = &t[nt++];
        o->key = file_key(x, i);
        for (int j = 0; j < n && !o->data; j++)
            if (strcmp(rep[j].key, key) == 0) o->data = rep[j].data, o->shape = rep[j].shape;
        if (o->data && pc_gpt2_is_conv1d_key(key)) { /* [out, in] -> [in, out] */
            if (o->shape.rank != 2) { rc = pc_errf(err, errlen, "%s: replaced '%s' must have rank 2", path, key); break; }
            const int64_t out = o->shape.dim[0], in = o->shape.dim[1];
            if (!(back[i] = malloc((size_t)(in * out > 0 ? in * out : 1) * sizeof(float)))) {
                rc = pc_errf(err, errlen, "out of memory");
                break;
            }
            for (int64_t r = 0; r < out; r++)
                for (int64_t c = 0; c < in; c++) back[i][c * out + r] = o->data[r * in + c];
            o->data = back[i];
            o->shape = PC_SHAPE(in, out);
        }
        if (!o->data && !(o->data = pc_hf_weight(x->ckpt, o->key, &o->shape, err, errlen))) rc = -1;
    }
    if (!rc) rc = pc_hf_write_model(path, config, t, nt, pc_hf_dir(x->ckpt), err, errlen);
    for (int i = 0; back && i < x->n; i++) free(back[i]);
    free(back);
    free(config);
    free(t);
    return rc;
}

/* no RoPE: no row permutation */
static int gpt2_rotary_rows(const pc_model *m, const char *module) {
    (void)m, (void)module;
    return 0;
}

const pc_model_family pc_family_hf_gpt2 = {
    .name = "hf-gpt2",
    .model_type = "gpt2",
    .format = "Hugging Face model directory",
    .probe = gpt2_probe,
    .open = gpt2_open,
    .close = gpt2_close,
    .build = gpt2_build,
    .weight = gpt2_weight,
    .nweights = gpt2_nweights,
    .weight_key = gpt2_weight_key,
    .write = gpt2_write,
    .rotary_rows = gpt2_rotary_rows,
    .tokenizer = pc_hf_dir_tokenizer,
};
