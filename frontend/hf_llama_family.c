/* The Hugging Face Llama family: a LlamaForCausalLM directory (config.json + safetensors, one
 * file or shards; f32, bf16 or f16 weights, converted to f32 at load), its weights under their
 * own keys, q/k rows in Hugging Face order (RoPE over halves), so adapters PEFT made on the
 * model apply with no flag. */
#include "frontend/llama.h"
#include "runtime/fileio.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/hf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    pc_hf_checkpoint *ckpt;
    pc_llama_config cfg;
} hf_impl;

/* every HF directory the families before it did not claim: open names a model_type it cannot read */
static int hf_probe(const char *path) { return pc_hf_is_model_dir(path); }

/* config.json -> the builder's config; everything the builder cannot honour is refused */
static int read_config(pc_hf_checkpoint *ck, pc_llama_config *c, char *err, size_t errlen) {
    const char *cfg_file = "config.json";
    char where[4200];
    snprintf(where, sizeof where, "%s/%s", pc_hf_dir(ck), cfg_file);
    int rc = 0;
    const char *type = pc_hf_string(ck, "model_type", err, errlen, &rc);
    if (rc) return -1;
    if (!type || strcmp(type, "llama") != 0)
        return pc_errf(err, errlen, "%s: field \"model_type\": %s%s%s is not a model type peftc reads (llama, gpt2, bert, roberta)", where,
                       type ? "\"" : "", type ? type : "missing", type ? "\"" : "");
    struct { const char *field; int *to; long long dflt; } ints[] = {
        {"hidden_size", &c->dim, 0}, {"intermediate_size", &c->hidden_dim, 0}, {"num_hidden_layers", &c->n_layers, 0},
        {"num_attention_heads", &c->n_heads, 0}, {"vocab_size", &c->vocab_size, 0},
        {"max_position_embeddings", &c->seq_len, 2048},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        long long v;
        bool found;
        if (pc_hf_int(ck, ints[i].field, ints[i].dflt, &v, &found, err, errlen)) return -1;
        if (v <= 0 || v > 1 << 30)
            return pc_errf(err, errlen, "%s: field \"%s\": %s", where, ints[i].field, found ? "must be a positive size" : "missing");
        *ints[i].to = (int)v;
    }
    long long kv, head_dim;
    bool found;
    if (pc_hf_int(ck, "num_key_value_heads", c->n_heads, &kv, NULL, err, errlen)) return -1;
    c->n_kv_heads = (int)kv;
    if (pc_hf_int(ck, "head_dim", c->dim / c->n_heads, &head_dim, &found, err, errlen)) return -1;
    if (found && head_dim * c->n_heads != c->dim)
        return pc_errf(err, errlen, "%s: field \"head_dim\": %lld; peftc needs hidden_size / num_attention_heads (%d)",
                       where, head_dim, c->dim / c->n_heads);
    if (pc_hf_number(ck, "rms_norm_eps", 1e-6, &c->norm_eps, NULL, err, errlen)) return -1;
    /* transformers 5 writes rope_parameters (theta inside); earlier files rope_theta + rope_scaling */
    bool params = false;
    double theta;
    if (pc_hf_number(ck, "rope_parameters.rope_theta", 0, &theta, &params, err, errlen)) return -1;
    if (!params && pc_hf_number(ck, "rope_theta", 10000.0, &theta, NULL, err, errlen)) return -1;
    c->rope_theta = theta;
    const char *sc = params ? "rope_parameters" : "rope_scaling";
    char f[64];
    snprintf(f, sizeof f, "%s.rope_type", sc);
    const char *rope_type = pc_hf_string(ck, f, err, errlen, &rc);
    if (rc) return -1;
    if (!rope_type) {
        snprintf(f, sizeof f, "%s.type", sc);
        if (!(rope_type = pc_hf_string(ck, f, err, errlen, &rc)) && rc) return -1;
    }
    if (rope_type && strcmp(rope_type, "llama3") == 0) {
        pc_rope_scaling *s = &c->rope_scaling;
        long long orig;
        char f1[64], f2[64], f3[64], f4[64];
        snprintf(f1, sizeof f1, "%s.factor", sc), snprintf(f2, sizeof f2, "%s.low_freq_factor", sc);
        snprintf(f3, sizeof f3, "%s.high_freq_factor", sc), snprintf(f4, sizeof f4, "%s.original_max_position_embeddings", sc);
        if (pc_hf_number(ck, f1, 8.0, &s->factor, NULL, err, errlen) ||
            pc_hf_number(ck, f2, 1.0, &s->low_freq_factor, NULL, err, errlen) ||
            pc_hf_number(ck, f3, 4.0, &s->high_freq_factor, NULL, err, errlen) ||
            pc_hf_int(ck, f4, 8192, &orig, NULL, err, errlen))
            return -1;
        if (!(s->factor > 0 && s->low_freq_factor > 0 && s->high_freq_factor > s->low_freq_factor) || orig <= 0 ||
            orig > 1 << 30)
            return pc_errf(err, errlen, "%s: field \"%s\": llama3 needs factor > 0, 0 < low_freq_factor < "
                           "high_freq_factor and original_max_position_embeddings > 0", where, sc);
        s->original_context = (int)orig;
    } else if (rope_type && strcmp(rope_type, "default") != 0) {
        return pc_errf(err, errlen, "%s: field \"%s\": rope_type \"%s\" is not supported (default and llama3 are)", where,
                       sc, rope_type);
    }
    bool tied, attn_bias, mlp_bias;
    if (pc_hf_bool(ck, "tie_word_embeddings", false, &tied, err, errlen) ||
        pc_hf_bool(ck, "attention_bias", false, &attn_bias, err, errlen) ||
        pc_hf_bool(ck, "mlp_bias", false, &mlp_bias, err, errlen))
        return -1;
    if (attn_bias || mlp_bias)
        return pc_errf(err, errlen, "%s: field \"%s\": true; peftc's Llama has no biases", where,
                       attn_bias ? "attention_bias" : "mlp_bias");
    const char *act = pc_hf_string(ck, "hidden_act", err, errlen, &rc);
    if (rc) return -1;
    if (act && strcmp(act, "silu") != 0)
        return pc_errf(err, errlen, "%s: field \"hidden_act\": \"%s\"; peftc's Llama uses silu", where, act);
    c->tied = tied ? 1 : 0;
    c->rope_style = 1;
    return pc_llama_config_check(c, err, errlen);
}

static int hf_open(pc_model *m, const char *path, char *err, size_t errlen) {
    hf_impl *x = calloc(1, sizeof *x);
    if (!x) return pc_errf(err, errlen, "out of memory");
    x->cfg = pc_llama_config_default();
    if (!(x->ckpt = pc_hf_open(path, err, errlen)) || read_config(x->ckpt, &x->cfg, err, errlen)) {
        pc_hf_close(x->ckpt);
        free(x);
        return -1;
    }
    m->impl = x;
    pc_llama_describe(m, &x->cfg);
    m->info.start_id = pc_hf_token_id(x->ckpt, "bos_token_id", x->cfg.vocab_size);
    m->info.stop_id = pc_hf_token_id(x->ckpt, "eos_token_id", x->cfg.vocab_size);
    return 0;
}

static void hf_close(pc_model *m) {
    hf_impl *x = m->impl;
    if (!x) return;
    pc_hf_close(x->ckpt);
    free(x);
    m->impl = NULL;
}

static pc_graph *hf_build(const pc_model *m, const pc_build_req *req, const pc_site_hook *hook, char *err,
                          size_t errlen) {
    return pc_llama_build(&((const hf_impl *)m->impl)->cfg, req, hook, err, errlen);
}

static const uint16_t *hf_weight_bf16(const pc_model *m, const char *key, pc_shape *shape) {
    return pc_hf_weight_bf16(((const hf_impl *)m->impl)->ckpt, key, shape);
}

static const float *hf_weight(const pc_model *m, const char *key, pc_shape *shape) {
    return pc_hf_weight(((const hf_impl *)m->impl)->ckpt, key, shape, NULL, 0);
}

static int hf_nweights(const pc_model *m) { return pc_hf_nweights(((const hf_impl *)m->impl)->ckpt); }
static const char *hf_weight_key(const pc_model *m, int i) { return pc_hf_weight_key(((const hf_impl *)m->impl)->ckpt, i); }

/* an HF directory again: every floating-point weight in f32 (the replaced ones merged), the
 * config with dtype float32, the tokenizer and other files copied */
static int hf_write(const pc_model *m, const char *path, const pc_weight *rep, int n, char *err, size_t errlen) {
    pc_hf_checkpoint *ck = ((const hf_impl *)m->impl)->ckpt;
    int nw = pc_hf_nweights(ck), nt = 0;
    pc_hf_tensor *t = calloc((size_t)(nw ? nw : 1), sizeof *t);
    char *config = pc_hf_config_text_f32(ck);
    int rc = t && config ? 0 : pc_errf(err, errlen, "%s: out of memory", path);
    for (int i = 0; !rc && i < nw; i++) {
        const char *key = pc_hf_weight_key(ck, i), *dt = pc_hf_weight_dtype(ck, key);
        if (strcmp(dt, "F32") && strcmp(dt, "BF16") && strcmp(dt, "F16") && strcmp(dt, "F64")) continue;
        t[nt].key = key;
        for (int j = 0; j < n && !t[nt].data; j++)
            if (strcmp(rep[j].key, key) == 0) t[nt].data = rep[j].data, t[nt].shape = rep[j].shape;
        if (!t[nt].data && !(t[nt].data = pc_hf_weight(ck, key, &t[nt].shape, err, errlen))) rc = -1;
        nt++;
    }
    if (!rc) rc = pc_hf_write_model(path, config, t, nt, pc_hf_dir(ck), err, errlen);
    free(config);
    free(t);
    return rc;
}

/* HF order already: no permutation */
static int hf_rotary_rows(const pc_model *m, const char *module) {
    (void)m, (void)module;
    return 0;
}

const pc_model_family pc_family_hf_llama = {
    .name = "hf-llama",
    .model_type = "llama",
    .format = "Hugging Face model directory",
    .probe = hf_probe,
    .open = hf_open,
    .close = hf_close,
    .build = hf_build,
    .weight = hf_weight,
    .weight_bf16 = hf_weight_bf16,
    .nweights = hf_nweights,
    .weight_key = hf_weight_key,
    .write = hf_write,
    .rotary_rows = hf_rotary_rows,
    .tokenizer = pc_hf_dir_tokenizer,
};
