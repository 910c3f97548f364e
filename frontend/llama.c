/* Llama frontend: graph builders, checkpoint binding, generation driver (see llama.h). */
#include "frontend/llama.h"
#include "backend/entry.h"

#include "frontend/linear.h"
#include "ir.h"
#include "runtime/tokenizer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- config ---- */
pc_llama_config pc_llama_config_default(void) {
    pc_llama_config c;
    memset(&c, 0, sizeof c);
    c.norm_eps = 1e-5;
    c.rope_theta = 10000.0;
    c.rope_style = 0;
    c.tied = 1;
    return c;
}

pc_llama_config pc_llama_config_from_l2c(const pc_l2c_config *l) {
    pc_llama_config c = pc_llama_config_default();
    c.dim = l->dim;
    c.hidden_dim = l->hidden_dim;
    c.n_layers = l->n_layers;
    c.n_heads = l->n_heads;
    c.n_kv_heads = l->n_kv_heads;
    c.vocab_size = l->vocab_size;
    c.seq_len = l->seq_len;
    c.tied = l->shared_classifier ? 1 : 0;
    return c;
}

int pc_llama_config_check(const pc_llama_config *c, char *err, size_t errlen) {
    if (!c) return errf(err, errlen, "llama config: NULL");
    const struct { const char *name; int v; } pos[] = {
        {"dim", c->dim},           {"hidden_dim", c->hidden_dim}, {"n_layers", c->n_layers},
        {"n_heads", c->n_heads},   {"n_kv_heads", c->n_kv_heads}, {"vocab_size", c->vocab_size},
        {"seq_len", c->seq_len},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0) return errf(err, errlen, "llama config: %s (%d) must be positive", pos[i].name, pos[i].v);
    if (c->dim % c->n_heads)
        return errf(err, errlen, "llama config: n_heads (%d) does not divide dim (%d)", c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads)
        return errf(err, errlen, "llama config: n_kv_heads (%d) does not divide n_heads (%d)", c->n_kv_heads,
                    c->n_heads);
    if ((c->dim / c->n_heads) % 2)
        return errf(err, errlen, "llama config: head dimension %d (dim / n_heads) must be even for RoPE",
                    c->dim / c->n_heads);
    if (!(c->norm_eps >= 0)) return errf(err, errlen, "llama config: norm_eps (%g) must be >= 0", c->norm_eps);
    if (!(c->rope_theta > 0)) return errf(err, errlen, "llama config: rope_theta (%g) must be > 0", c->rope_theta);
    if (c->rope_style != 0 && c->rope_style != 1)
        return errf(err, errlen, "llama config: rope_style (%d) must be 0 (adjacent pairs) or 1 (halves)",
                    c->rope_style);
    if (c->tied != 0 && c->tied != 1) return errf(err, errlen, "llama config: tied (%d) must be 0 or 1", c->tied);
    return 0;
}

/* ---- graph building ---- */
typedef struct {
    pc_graph *g;
    const pc_llama_config *c;
    int64_t B, S; /* batch, query tokens */
    int64_t H, Hkv, Dh, kvdim;
    pc_val pos;
    /* decode mode: keys = concat(cache [B,T,Hkv,Dh], new) and an additive mask [T+1] */
    int decode;
    int64_t T;
    pc_val mask;
} builder;

/* get-or-create a frozen, loaded param named `module` with key module + ".weight" */
static pc_val weight(builder *b, const char *module, pc_shape s) {
    char key[256];
    snprintf(key, sizeof key, "%s.weight", module);
    pc_val p = pc_lookup_key(b->g, key);
    if (p == PC_NONE) return pc_param(b->g, module, key, PC_F32, s, PC_FROZEN, (pc_init){0});
    if (pc_v(b->g, p)->op != PC_OP_param || pc_val_dtype(b->g, p) != PC_F32 || !pc_shape_eq(pc_val_shape(b->g, p), s))
        return pc_fail(b->g, PC_HERE, "key \"%s\" is already used by %%%s with another type", key,
                       pc_val_name(b->g, p));
    return p;
}

/* [B,Sk,Hkv,Dh] -> [B,Sk,H,Dh], query head h using kv head h / rep (llama2.c) */
static pc_val repeat_kv(builder *b, pc_val x, int64_t Sk) {
    int64_t rep = b->H / b->Hkv;
    if (rep == 1) return x;
    pc_graph *g = b->g;
    x = pc_reshape(g, x, PC_SHAPE(b->B, Sk, b->Hkv, 1, b->Dh));
    x = pc_broadcast(g, x, PC_SHAPE(b->B, Sk, b->Hkv, rep, b->Dh));
    return pc_reshape(g, x, PC_SHAPE(b->B, Sk, b->H, b->Dh));
}

static pc_val layer(builder *b, int i, pc_val x, pc_val kc, pc_val vc, pc_val *knew, pc_val *vnew) {
    pc_graph *g = b->g;
    const pc_llama_config *c = b->c;
    char m[160], p[128];
    snprintf(p, sizeof p, "model.layers.%d", i);
    const int64_t B = b->B, S = b->S, D = c->dim, F = c->hidden_dim;

    /* attention */
    snprintf(m, sizeof m, "%s.input_layernorm", p);
    pc_val h = pc_rmsnorm(g, x, weight(b, m, PC_SHAPE(D)), c->norm_eps);
    snprintf(m, sizeof m, "%s.self_attn.q_proj", p);
    pc_val q = pc_linear(g, h, m, D, D, 0);
    snprintf(m, sizeof m, "%s.self_attn.k_proj", p);
    pc_val k = pc_linear(g, h, m, D, b->kvdim, 0);
    snprintf(m, sizeof m, "%s.self_attn.v_proj", p);
    pc_val v = pc_linear(g, h, m, D, b->kvdim, 0);
    q = pc_reshape(g, q, PC_SHAPE(B, S, b->H, b->Dh));
    k = pc_reshape(g, k, PC_SHAPE(B, S, b->Hkv, b->Dh));
    v = pc_reshape(g, v, PC_SHAPE(B, S, b->Hkv, b->Dh));
    q = pc_rope(g, q, b->pos, c->rope_theta, c->rope_style, 0);
    k = pc_rope(g, k, b->pos, c->rope_theta, c->rope_style, 0);
    int64_t Sk = S;
    if (b->decode) {
        *knew = k;
        *vnew = v;
        k = pc_concat(g, 2, ((pc_val[]){kc, k}), 1);
        v = pc_concat(g, 2, ((pc_val[]){vc, v}), 1);
        Sk = b->T + S;
    }
    k = repeat_kv(b, k, Sk);
    v = repeat_kv(b, v, Sk);
    const int64_t perm[4] = {0, 2, 1, 3};
    q = pc_transpose(g, q, 4, perm); /* [B,H,S,Dh] */
    k = pc_transpose(g, k, 4, perm); /* [B,H,Sk,Dh] */
    v = pc_transpose(g, v, 4, perm);
    pc_val sc = pc_matmul(g, q, k, 0, 1); /* [B,H,S,Sk] */
    sc = pc_scale(g, sc, 1.0 / sqrt((double)b->Dh), 0.0);
    sc = b->decode ? pc_add(g, sc, b->mask) : pc_causal_mask(g, sc, -1e30);
    pc_val pr = pc_softmax(g, sc, -1);
    pc_val o = pc_matmul(g, pr, v, 0, 0);   /* [B,H,S,Dh] */
    o = pc_transpose(g, o, 4, perm);        /* [B,S,H,Dh] */
    o = pc_reshape(g, o, PC_SHAPE(B, S, D));
    snprintf(m, sizeof m, "%s.self_attn.o_proj", p);
    o = pc_linear(g, o, m, D, D, 0);
    x = pc_add(g, x, o);

    /* SwiGLU feed-forward */
    snprintf(m, sizeof m, "%s.post_attention_layernorm", p);
    h = pc_rmsnorm(g, x, weight(b, m, PC_SHAPE(D)), c->norm_eps);
    snprintf(m, sizeof m, "%s.mlp.gate_proj", p);
    pc_val gt = pc_linear(g, h, m, D, F, 0);
    snprintf(m, sizeof m, "%s.mlp.up_proj", p);
    pc_val up = pc_linear(g, h, m, D, F, 0);
    pc_val a = pc_mul(g, pc_silu(g, gt), up);
    snprintf(m, sizeof m, "%s.mlp.down_proj", p);
    pc_val d = pc_linear(g, a, m, F, D, 0);
    return pc_add(g, x, d);
}

/* the whole model; in decode mode kc/vc are the per-layer caches and knew/vnew receive the new
 * keys/values */
static pc_val build(builder *b, pc_val tokens, const pc_val *kc, const pc_val *vc, pc_val *knew, pc_val *vnew) {
    pc_graph *g = b->g;
    const pc_llama_config *c = b->c;
    char msg[256];
    if (pc_graph_error(g)) return PC_NONE;
    if (pc_llama_config_check(c, msg, sizeof msg)) return pc_fail(g, PC_HERE, "%s", msg);
    b->H = c->n_heads;
    b->Hkv = c->n_kv_heads;
    b->Dh = c->dim / c->n_heads;
    b->kvdim = b->Hkv * b->Dh;
    pc_val x = pc_embedding(g, weight(b, "model.embed_tokens", PC_SHAPE(c->vocab_size, c->dim)), tokens);
    for (int i = 0; i < c->n_layers; i++)
        x = layer(b, i, x, kc ? kc[i] : PC_NONE, vc ? vc[i] : PC_NONE, knew ? &knew[i] : NULL,
                  vnew ? &vnew[i] : NULL);
    x = pc_rmsnorm(g, x, weight(b, "model.norm", PC_SHAPE(c->dim)), c->norm_eps);
    if (c->tied)
        return pc_matmul(g, x, weight(b, "model.embed_tokens", PC_SHAPE(c->vocab_size, c->dim)), 0, 1);
    return pc_linear(g, x, "lm_head", c->dim, c->vocab_size, 0);
}

pc_val pc_llama_forward(pc_graph *g, const pc_llama_config *cfg, pc_val tokens, pc_val pos) {
    if (!g || pc_graph_error(g)) return PC_NONE;
    char b1[96], b2[96];
    if (!pc_valid(g, tokens) || !pc_valid(g, pos)) return pc_fail(g, PC_HERE, "llama: tokens/pos are not values");
    pc_shape ts = pc_val_shape(g, tokens), ps = pc_val_shape(g, pos);
    pc_shape_str(ts, b1, sizeof b1);
    pc_shape_str(ps, b2, sizeof b2);
    if (pc_val_dtype(g, tokens) != PC_I32 || ts.rank != 2)
        return pc_fail(g, PC_HERE, "llama: tokens must be i32[B,S], got %s%s", pc_dtype_name(pc_val_dtype(g, tokens)), b1);
    if (pc_val_dtype(g, pos) != PC_I32 || ps.rank != 1 || ps.dim[0] != ts.dim[1])
        return pc_fail(g, PC_HERE, "llama: pos must be i32[%lld] (one per token), got %s%s", (long long)ts.dim[1],
                       pc_dtype_name(pc_val_dtype(g, pos)), b2);
    builder b = {.g = g, .c = cfg, .B = ts.dim[0], .S = ts.dim[1], .pos = pos};
    return build(&b, tokens, NULL, NULL, NULL, NULL);
}

/* turns a graph with a sticky error into NULL + message */
static pc_graph *finish(pc_graph *g, char *err, size_t errlen) {
    if (!g) { errf(err, errlen, "out of memory"); return NULL; }
    if (pc_graph_error(g)) {
        errf(err, errlen, "%s", pc_graph_error(g));
        pc_graph_free(g);
        return NULL;
    }
    return g;
}

pc_graph *pc_llama_train_graph(const pc_llama_config *cfg, int64_t B, int64_t S, int output_logits,
                               char *err, size_t errlen) {
    if (pc_llama_config_check(cfg, err, errlen)) return NULL;
    if (B <= 0 || S <= 0) { errf(err, errlen, "llama train graph: B (%lld) and S (%lld) must be positive", (long long)B, (long long)S); return NULL; }
    if (S > cfg->seq_len) {
        errf(err, errlen, "llama train graph: S (%lld) exceeds seq_len (%d)", (long long)S, cfg->seq_len);
        return NULL;
    }
    pc_graph *g = pc_graph_new("train");
    if (!g) return finish(g, err, errlen);
    pc_val tokens = pc_input(g, "tokens", PC_I32, PC_SHAPE(B, S));
    pc_val targets = pc_input(g, "targets", PC_I32, PC_SHAPE(B, S));
    int32_t *p = malloc((size_t)S * sizeof *p);
    if (!p) { pc_graph_free(g); errf(err, errlen, "out of memory"); return NULL; }
    for (int64_t i = 0; i < S; i++) p[i] = (int32_t)i;
    pc_val pos = pc_const(g, PC_I32, PC_SHAPE(S), p);
    free(p);
    pc_set_name(g, pos, "positions");
    pc_val logits = pc_llama_forward(g, cfg, tokens, pos);
    pc_val loss = pc_cross_entropy(g, logits, targets, PC_LLAMA_IGNORE, 0);
    if (!pc_graph_error(g)) {
        pc_set_name(g, logits, "logits");
        pc_set_name(g, loss, "loss");
        pc_mark_loss(g, loss);
        if (output_logits) pc_mark_output(g, logits);
    }
    return finish(g, err, errlen);
}

pc_graph *pc_llama_decode_graph(const pc_llama_config *cfg, int64_t B, int64_t T, char *err, size_t errlen) {
    if (pc_llama_config_check(cfg, err, errlen)) return NULL;
    if (B <= 0 || T <= 0) {
        errf(err, errlen, "llama decode graph: B (%lld) and T (%lld) must be positive", (long long)B, (long long)T);
        return NULL;
    }
    pc_graph *g = pc_graph_new("decode");
    if (!g) return finish(g, err, errlen);
    const int L = cfg->n_layers;
    const int64_t Hkv = cfg->n_kv_heads, Dh = cfg->dim / cfg->n_heads;
    pc_val *vals = calloc((size_t)L * 4, sizeof *vals);
    if (!vals) { pc_graph_free(g); errf(err, errlen, "out of memory"); return NULL; }
    pc_val *kc = vals, *vc = vals + L, *kn = vals + 2 * L, *vn = vals + 3 * L;
    pc_val token = pc_input(g, "token", PC_I32, PC_SHAPE(B, 1));
    pc_val pos = pc_input(g, "pos", PC_I32, PC_SHAPE(1));
    pc_val mask = pc_input(g, "mask", PC_F32, PC_SHAPE(T + 1));
    char name[64];
    for (int i = 0; i < L; i++) {
        snprintf(name, sizeof name, "k_cache.%d", i);
        kc[i] = pc_input(g, name, PC_F32, PC_SHAPE(B, T, Hkv, Dh));
        snprintf(name, sizeof name, "v_cache.%d", i);
        vc[i] = pc_input(g, name, PC_F32, PC_SHAPE(B, T, Hkv, Dh));
        kn[i] = vn[i] = PC_NONE;
    }
    builder b = {.g = g, .c = cfg, .B = B, .S = 1, .pos = pos, .decode = 1, .T = T, .mask = mask};
    pc_val logits = build(&b, token, kc, vc, kn, vn);
    if (!pc_graph_error(g)) {
        pc_set_name(g, logits, "logits");
        pc_mark_output(g, logits);
        for (int i = 0; i < L && !pc_graph_error(g); i++) {
            snprintf(name, sizeof name, "k_new.%d", i);
            if (pc_set_name(g, kn[i], name)) pc_fail(g, PC_HERE, "cannot name %%%s", name);
            snprintf(name, sizeof name, "v_new.%d", i);
            if (pc_set_name(g, vn[i], name)) pc_fail(g, PC_HERE, "cannot name %%%s", name);
            pc_mark_output(g, kn[i]);
            pc_mark_output(g, vn[i]);
        }
    }
    free(vals);
    return finish(g, err, errlen);
}

/* ---- checkpoint binding ---- */
static int bind_or_check(pc_exec *r, const pc_graph *g, const pc_l2c_model *m, int base_only, char *err, size_t errlen) {
    if (!g || !m) return errf(err, errlen, "bind: NULL graph or model");
    const char *file = m->path ? m->path : "checkpoint";
    for (pc_val i = 0; i < g->nvals; i++) {
        const pc_value *v = &g->vals[i];
        if (v->op != PC_OP_param || (!base_only && !(v->flags & PC_FROZEN))) continue;
        if (!v->key) return errf(err, errlen, "bind: frozen param %%%s has no checkpoint key", v->name);
        const pc_l2c_tensor *t = pc_l2c_find(m, v->key);
        if (base_only && !t) continue; /* an adapter param: the caller's store binds it */
        if (!t || !t->data)
            return errf(err, errlen, "bind: %s has no tensor '%s' (wanted by %%%s)", file, v->key, v->name);
        if (v->dtype != PC_F32 || !pc_shape_eq(v->shape, t->shape)) {
            char a[96], b[96];
            pc_shape_str(t->shape, a, sizeof a);
            pc_shape_str(v->shape, b, sizeof b);
            return errf(err, errlen, "bind: tensor '%s' is f32%s in %s but %%%s is %s%s", v->key, a, file,
                        v->name, pc_dtype_name(v->dtype), b);
        }
        /* frozen params are never written (no update targets them), so the read-only mapping is fine */
        if (r && pc_exec_bind(r, i, (void *)t->data))
            return errf(err, errlen, "bind: the interpreter refused '%s' (%%%s)", v->key, v->name);
    }
    return 0;
}

int pc_llama_check_l2c(const pc_graph *g, const pc_l2c_model *m, char *err, size_t errlen) {
    return bind_or_check(NULL, g, m, 0, err, errlen);
}

int pc_llama_bind_l2c(pc_exec *r, const pc_graph *g, const pc_l2c_model *m, char *err, size_t errlen) {
    if (!r) return errf(err, errlen, "bind: NULL interpreter");
    return bind_or_check(r, g, m, 0, err, errlen);
}

int pc_llama_bind_base(pc_exec *r, const pc_graph *g, const pc_l2c_model *m, char *err, size_t errlen) {
    if (!r) return errf(err, errlen, "bind: NULL interpreter");
    return bind_or_check(r, g, m, 1, err, errlen);
}

/* ---- sampling (llama2.c run.c) ---- */
static uint32_t random_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}
static float random_f32(uint64_t *state) { return (float)(random_u32(state) >> 8) / 16777216.0f; }

static int cmp_prob_desc(const void *a, const void *b) {
    const pc_prob_index *x = a, *y = b;
    if (x->prob > y->prob) return -1;
    if (x->prob < y->prob) return 1;
    return 0;
}

int pc_llama_sample(float *logits, int n, float temperature, float topp, uint64_t *state, pc_prob_index *scratch) {
    if (!logits || n <= 0) return -1;
    if (temperature == 0.0f) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    if (!state) return -1;
    int nucleus = topp > 0 && topp < 1;
    if (nucleus && !scratch) return -1;
    for (int i = 0; i < n; i++) logits[i] /= temperature;
    float mx = logits[0];
    for (int i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    float sum = 0;
    for (int i = 0; i < n; i++) {
        logits[i] = expf(logits[i] - mx);
        sum += logits[i];
    }
    for (int i = 0; i < n; i++) logits[i] /= sum;
    float coin = random_f32(state);
    if (!nucleus) {
        float cdf = 0;
        for (int i = 0; i < n; i++) {
            cdf += logits[i];
            if (coin < cdf) return i;
        }
        return n - 1;
    }
    int n0 = 0;
    const float cutoff = n > 1 ? (1.0f - topp) / (float)(n - 1) : 0.0f;
    for (int i = 0; i < n; i++)
        if (logits[i] >= cutoff) scratch[n0++] = (pc_prob_index){logits[i], i};
    if (n0 == 0) return 0;
    qsort(scratch, (size_t)n0, sizeof *scratch, cmp_prob_desc);
    float cum = 0;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cum += scratch[i].prob;
        if (cum > topp) { last = i; break; }
    }
    float r = coin * cum, cdf = 0;
    for (int i = 0; i <= last; i++) {
        cdf += scratch[i].prob;
        if (r < cdf) return scratch[i].index;
    }
    return scratch[last].index;
}

/* ---- generation ---- */
int pc_llama_generate(const pc_llama_config *cfg, const pc_l2c_model *m, const pc_llama_gen_opts *o,
                      int32_t *tokens, int *ntokens, float *logits, int *npos, char *err, size_t errlen) {
    if (ntokens) *ntokens = 0;
    if (npos) *npos = 0;
    if (!cfg || !m || !o || !tokens || !ntokens) return errf(err, errlen, "generate: NULL argument");
    if (pc_llama_config_check(cfg, err, errlen)) return -1;
    int steps = o->steps <= 0 || o->steps > cfg->seq_len ? cfg->seq_len : o->steps;
    const int32_t bos = PC_TOK_BOS;
    const int32_t *prompt = o->prompt && o->n_prompt > 0 ? o->prompt : &bos;
    int np = o->prompt && o->n_prompt > 0 ? o->n_prompt : 1;
    if (np > steps) return errf(err, errlen, "generate: the prompt (%d tokens) is longer than steps (%d)", np, steps);
    for (int i = 0; i < np; i++)
        if (prompt[i] < 0 || prompt[i] >= cfg->vocab_size)
            return errf(err, errlen, "generate: prompt token %d (%d) is out of the vocabulary [0, %d)", i,
                        (int)prompt[i], cfg->vocab_size);

    const int L = cfg->n_layers, V = cfg->vocab_size;
    if (o->cache_len > 0 && o->cache_len < steps)
        return errf(err, errlen, "generate: %d positions do not fit the KV cache of %d", steps, o->cache_len);
    const int64_t T = o->cache_len > 0 ? o->cache_len : steps, Hkv = cfg->n_kv_heads, Dh = cfg->dim / cfg->n_heads;
    const size_t row = (size_t)(Hkv * Dh), cache_n = (size_t)T * row;
    int rc = -1;
    pc_exec *r = NULL;
    float *cache = NULL, *mask = NULL, *work = NULL;
    pc_prob_index *scratch = NULL;
    pc_val *outs = NULL;
    /* with o->entries: the decode graph's entry function, its input names and arguments */
    void *en = NULL;
    char (*inames)[32] = NULL;
    const char **inp = NULL;
    void **iptr = NULL;
    pc_entry_args ea = {0};
    pc_graph *g = pc_llama_decode_graph(cfg, 1, T, err, errlen);
    if (!g) return -1;
    if (o->adapt && o->adapt(o->ctx, &g, err, errlen)) { pc_graph_free(g); return -1; }
    cache = calloc(2 * (size_t)L * cache_n, sizeof *cache);
    mask = malloc((size_t)(T + 1) * sizeof *mask);
    work = malloc((size_t)V * sizeof *work);
    scratch = malloc((size_t)V * sizeof *scratch);
    outs = malloc(2 * (size_t)L * sizeof *outs);
    if (!cache || !mask || !work || !scratch || !outs) { errf(err, errlen, "generate: out of memory"); goto done; }
    if (!(r = pc_exec_new(g, o->exec, err, errlen))) goto done;
    if (o->bind ? pc_llama_bind_base(r, g, m, err, errlen) || o->bind(o->ctx, g, r, err, errlen)
                : pc_llama_bind_l2c(r, g, m, err, errlen))
        goto done;
    int32_t tok = 0, posv = 0;
    pc_val vtok = pc_lookup(g, "token"), vpos = pc_lookup(g, "pos"), vlog = pc_lookup(g, "logits");
    if (pc_exec_bind(r, vtok, &tok) || pc_exec_bind(r, vpos, &posv) || pc_exec_bind(r, pc_lookup(g, "mask"), mask)) {
        errf(err, errlen, "generate: cannot bind the decode inputs");
        goto done;
    }
    char name[64];
    for (int i = 0; i < 2 * L; i++) {
        snprintf(name, sizeof name, "%s_cache.%d", i < L ? "k" : "v", i % L);
        if (pc_exec_bind(r, pc_lookup(g, name), cache + (size_t)i * cache_n)) {
            errf(err, errlen, "generate: cannot bind %%%s", name);
            goto done;
        }
        snprintf(name, sizeof name, "%s_new.%d", i < L ? "k" : "v", i % L);
        outs[i] = pc_lookup(g, name);
    }
    if (o->entries && (!o->exec || o->exec->kind == PC_BACKEND_JIT)) {
        int n = 3 + 2 * L;
        inames = calloc((size_t)n, sizeof *inames);
        inp = calloc((size_t)n, sizeof *inp);
        iptr = calloc((size_t)n, sizeof *iptr);
        if (!inames || !inp || !iptr) { errf(err, errlen, "generate: out of memory"); goto done; }
        snprintf(inames[0], sizeof inames[0], "token"), iptr[0] = &tok;
        snprintf(inames[1], sizeof inames[1], "pos"), iptr[1] = &posv;
        snprintf(inames[2], sizeof inames[2], "mask"), iptr[2] = mask;
        for (int i = 0; i < 2 * L; i++) {
            snprintf(inames[3 + i], sizeof inames[3 + i], "%s_cache.%d", i < L ? "k" : "v", i % L);
            iptr[3 + i] = cache + (size_t)i * cache_n;
        }
        for (int i = 0; i < n; i++) inp[i] = inames[i];
        if (pc_entry_args_init(&ea, g, inp, iptr, n, err, errlen) || !(en = o->entries->open(o->entries, r, g, err, errlen)))
            goto done;
    }
    uint64_t state = o->seed ? o->seed : 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < np; i++) tokens[i] = prompt[i];
    int n = np;
    int pos = 0;
    for (; pos < steps; pos++) {
        tok = tokens[pos];
        posv = pos;
        for (int64_t j = 0; j < T; j++) mask[j] = j < pos ? 0.0f : -1e30f;
        mask[T] = 0.0f;
        if (en ? o->entries->call(en, ea.args, err, errlen) : pc_exec_run(r, err, errlen)) goto done;
        const float *lg = en ? pc_entry_args_output(&ea, vlog) : pc_exec_data(r, vlog);
        if (!lg) { errf(err, errlen, "generate: no logits after the run"); goto done; }
        if (logits) memcpy(logits + (size_t)pos * (size_t)V, lg, (size_t)V * sizeof *lg);
        for (int i = 0; i < 2 * L; i++) {
            const float *kv = en ? pc_entry_args_output(&ea, outs[i]) : pc_exec_data(r, outs[i]);
            if (!kv) { errf(err, errlen, "generate: no %s after the run", pc_val_name(g, outs[i])); goto done; }
            memcpy(cache + (size_t)i * cache_n + (size_t)pos * row, kv, row * sizeof *kv);
        }
        if (pos + 1 < np) continue; /* still forcing the prompt */
        memcpy(work, lg, (size_t)V * sizeof *work);
        int next = pc_llama_sample(work, V, o->temperature, o->topp, &state, scratch);
        if (next < 0) { errf(err, errlen, "generate: sampling failed"); goto done; }
        if (next == PC_TOK_BOS) { pos++; break; }
        tokens[n++] = next;
    }
    *ntokens = n;
    if (npos) *npos = pos;
    rc = 0;
done:
    if (en) o->entries->close(en);
    pc_entry_args_free(&ea);
    free(inames);
    free(inp);
    free(iptr);
    pc_exec_free(r);
    pc_graph_free(g);
    free(cache);
    free(mask);
    free(work);
    free(scratch);
    free(outs);
    return rc;
}
