/* Llama frontend: the config and the graph builders (see llama.h). */
#include "frontend/distill_objective.h"
#include "frontend/llama.h"
#include "frontend/lm_objective.h"
#include "frontend/linear.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (!c) return pc_errf(err, errlen, "llama config: NULL");
    const struct { const char *name; int v; } pos[] = {
        {"dim", c->dim},           {"hidden_dim", c->hidden_dim}, {"n_layers", c->n_layers},
        {"n_heads", c->n_heads},   {"n_kv_heads", c->n_kv_heads}, {"vocab_size", c->vocab_size},
        {"seq_len", c->seq_len},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0) return pc_errf(err, errlen, "llama config: %s (%d) must be positive", pos[i].name, pos[i].v);
    if (c->dim % c->n_heads)
        return pc_errf(err, errlen, "llama config: n_heads (%d) does not divide dim (%d)", c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads)
        return pc_errf(err, errlen, "llama config: n_kv_heads (%d) does not divide n_heads (%d)", c->n_kv_heads,
                    c->n_heads);
    if ((c->dim / c->n_heads) % 2)
        return pc_errf(err, errlen, "llama config: head dimension %d (dim / n_heads) must be even for RoPE",
                    c->dim / c->n_heads);
    if (!(c->norm_eps >= 0)) return pc_errf(err, errlen, "llama config: norm_eps (%g) must be >= 0", c->norm_eps);
    if (!(c->rope_theta > 0)) return pc_errf(err, errlen, "llama config: rope_theta (%g) must be > 0", c->rope_theta);
    if (c->rope_style != 0 && c->rope_style != 1)
        return pc_errf(err, errlen, "llama config: rope_style (%d) must be 0 (adjacent pairs) or 1 (halves)",
                    c->rope_style);
    if (c->tied != 0 && c->tied != 1) return pc_errf(err, errlen, "llama config: tied (%d) must be 0 or 1", c->tied);
    return 0;
}

void pc_llama_describe(pc_model *m, const pc_llama_config *c) {
    m->info = (pc_model_info){.model_type = "llama", .dim = c->dim, .vocab = c->vocab_size, .context = c->seq_len,
                              .n_layers = c->n_layers, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                              .start_id = 1, .stop_id = 1}; /* llama2.c's; other files say theirs */
    m->kv_row = c->n_kv_heads * (c->dim / c->n_heads);
}

/* ---- graph building ---- */
typedef struct {
    pc_graph *g;
    const pc_llama_config *c;
    const pc_site_hook *hook;
    int64_t B;
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

/* a site of kind k at `module` producing v */
static pc_site site(builder *b, pc_site_kind k, const char *module, int layer, pc_val v, pc_loc at) {
    return (pc_site){.kind = k, .module = module, .layer = layer, .g = b->g, .loc = at, .value = v,
                     .value2 = PC_NONE, .x = PC_NONE, .weight = PC_NONE, .bias = PC_NONE, .ids = PC_NONE};
}

/* a bias-free linear and its site */
static pc_val linear(builder *b, pc_val x, const char *module, int layer, int64_t in, int64_t out) {
    pc_val y = pc_linear(b->g, x, module, in, out, 0);
    pc_site s = site(b, PC_SITE_LINEAR, module, layer, y, PC_HERE);
    char key[256];
    snprintf(key, sizeof key, "%s.weight", module);
    s.x = x, s.weight = pc_lookup_key(b->g, key), s.in = in, s.out = out;
    return pc_emit_site(b->hook, &s);
}

/* Grouped kv heads (llama2.c: query head h uses kv head h / rep) as a batch axis: q goes
 * [B,S,H,Dh] -> [B,Hkv,rep,S,Dh] and k, v [B,Sk,Hkv,Dh] -> [B,Hkv,1,Sk,Dh], which the products
 * broadcast over rep. All three are views: the kv heads are never copied rep times, and their
 * gradients are one sum over rep. rep = 1 keeps the plain [B,H,S,Dh] form. */
static pc_val heads_first(builder *b, pc_val x, int64_t group) {
    pc_graph *g = b->g;
    pc_shape s = pc_val_shape(g, x);
    int64_t rep = b->H / b->Hkv;
    if (rep == 1) return pc_transpose(g, x, 4, (const int64_t[]){0, 2, 1, 3});
    x = pc_reshape(g, x, PC_SHAPE(s.dim[0], s.dim[1], b->Hkv, group, b->Dh));
    return pc_transpose(g, x, 5, (const int64_t[]){0, 2, 3, 1, 4});
}

/* the inverse of heads_first for the attention output: [B,S,H*Dh] */
static pc_val heads_last(builder *b, pc_val o, int64_t S) {
    pc_graph *g = b->g;
    int rank = pc_val_shape(g, o).rank;
    o = rank == 4 ? pc_transpose(g, o, 4, (const int64_t[]){0, 2, 1, 3})
                  : pc_transpose(g, o, 5, (const int64_t[]){0, 3, 1, 2, 4});
    return pc_reshape(g, o, PC_SHAPE(b->B, S, b->H * b->Dh));
}

static pc_val layer(builder *b, int i, pc_val x, pc_val kc, pc_val vc, pc_val *knew, pc_val *vnew) {
    pc_graph *g = b->g;
    const pc_llama_config *c = b->c;
    char m[160], p[128];
    snprintf(p, sizeof p, "model.layers.%d", i);
    if (x == PC_NONE) return PC_NONE;
    /* the sequence length as the sites made it (virtual tokens lengthen it) */
    const int64_t B = b->B, S = pc_val_shape(g, x).dim[1], D = c->dim, F = c->hidden_dim;

    /* attention */
    snprintf(m, sizeof m, "%s.input_layernorm", p);
    pc_val h = pc_rmsnorm(g, x, weight(b, m, PC_SHAPE(D)), c->norm_eps);
    snprintf(m, sizeof m, "%s.self_attn.q_proj", p);
    pc_val q = linear(b, h, m, i, D, D);
    snprintf(m, sizeof m, "%s.self_attn.k_proj", p);
    pc_val k = linear(b, h, m, i, D, b->kvdim);
    snprintf(m, sizeof m, "%s.self_attn.v_proj", p);
    pc_val v = linear(b, h, m, i, D, b->kvdim);
    q = pc_reshape(g, q, PC_SHAPE(B, S, b->H, b->Dh));
    k = pc_reshape(g, k, PC_SHAPE(B, S, b->Hkv, b->Dh));
    v = pc_reshape(g, v, PC_SHAPE(B, S, b->Hkv, b->Dh));
    q = pc_rope_scaled(g, q, b->pos, c->rope_theta, c->rope_style, 0, &c->rope_scaling);
    k = pc_rope_scaled(g, k, b->pos, c->rope_theta, c->rope_style, 0, &c->rope_scaling);
    if (b->decode) {
        *knew = k;
        *vnew = v;
        k = pc_concat(g, 2, ((pc_val[]){kc, k}), 1);
        v = pc_concat(g, 2, ((pc_val[]){vc, v}), 1);
    }
    snprintf(m, sizeof m, "%s.self_attn", p);
    pc_site kv = site(b, PC_SITE_ATTN_KV, m, i, k, PC_HERE);
    kv.value2 = v;
    k = pc_emit_site(b->hook, &kv);
    v = kv.value2;
    q = heads_first(b, q, b->H / b->Hkv); /* [B,H,S,Dh] or [B,Hkv,rep,S,Dh] */
    k = heads_first(b, k, 1);              /* [B,H,Sk,Dh] or [B,Hkv,1,Sk,Dh] */
    v = heads_first(b, v, 1);
    pc_val sc = pc_matmul(g, q, k, 0, 1); /* [.., S, Sk] */
    sc = pc_scale(g, sc, 1.0 / sqrt((double)b->Dh), 0.0);
    sc = b->decode ? pc_add(g, sc, b->mask) : pc_causal_mask(g, sc, -1e30);
    pc_val pr = pc_softmax(g, sc, -1);
    pc_val o = heads_last(b, pc_matmul(g, pr, v, 0, 0), S); /* [B,S,D] */
    snprintf(m, sizeof m, "%s.self_attn.o_proj", p);
    o = linear(b, o, m, i, D, D);
    x = pc_add(g, x, o);

    /* SwiGLU feed-forward */
    snprintf(m, sizeof m, "%s.post_attention_layernorm", p);
    h = pc_rmsnorm(g, x, weight(b, m, PC_SHAPE(D)), c->norm_eps);
    snprintf(m, sizeof m, "%s.mlp.gate_proj", p);
    pc_val gt = linear(b, h, m, i, D, F);
    snprintf(m, sizeof m, "%s.mlp.up_proj", p);
    pc_val up = linear(b, h, m, i, D, F);
    pc_val a = pc_mul(g, pc_silu(g, gt), up);
    snprintf(m, sizeof m, "%s.mlp.down_proj", p);
    pc_val d = linear(b, a, m, i, F, D);
    snprintf(m, sizeof m, "%s.mlp", p);
    pc_site ffn = site(b, PC_SITE_FFN, m, i, d, PC_HERE);
    ffn.x = h;
    d = pc_emit_site(b->hook, &ffn);
    pc_site blk = site(b, PC_SITE_BLOCK, p, i, pc_add(g, x, d), PC_HERE);
    return pc_emit_site(b->hook, &blk);
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
    pc_val table = weight(b, "model.embed_tokens", PC_SHAPE(c->vocab_size, c->dim));
    pc_site emb = site(b, PC_SITE_EMBED, "model.embed_tokens", -1, pc_embedding(g, table, tokens), PC_HERE);
    emb.ids = tokens, emb.weight = table;
    pc_val x = pc_emit_site(b->hook, &emb);
    pc_site ps = site(b, PC_SITE_POSITIONS, "model.rotary_emb", -1, b->pos, PC_HERE);
    b->pos = pc_emit_site(b->hook, &ps);
    if (x == PC_NONE || b->pos == PC_NONE) return PC_NONE;
    int64_t S = pc_val_shape(g, x).dim[1];
    if (!b->decode && S > c->seq_len)
        return pc_fail(g, PC_HERE, "llama: %lld positions (with the adapter's virtual tokens) exceed the context of %d",
                       (long long)S, c->seq_len);
    for (int i = 0; i < c->n_layers; i++)
        x = layer(b, i, x, kc ? kc[i] : PC_NONE, vc ? vc[i] : PC_NONE, knew ? &knew[i] : NULL,
                  vnew ? &vnew[i] : NULL);
    x = pc_rmsnorm(g, x, weight(b, "model.norm", PC_SHAPE(c->dim)), c->norm_eps);
    pc_site fin = site(b, PC_SITE_FINAL, "model.norm", -1, x, PC_HERE);
    x = pc_emit_site(b->hook, &fin);
    pc_name_final_hidden(g, x);
    pc_val logits = c->tied ? pc_matmul(g, x, weight(b, "model.embed_tokens", PC_SHAPE(c->vocab_size, c->dim)), 0, 1)
                            : linear(b, x, "lm_head", -1, c->dim, c->vocab_size);
    pc_site head = site(b, PC_SITE_HEAD, "lm_head", -1, logits, PC_HERE);
    return pc_emit_site(b->hook, &head);
}

static pc_val forward_sites(pc_graph *g, const pc_llama_config *cfg, pc_val tokens, pc_val pos,
                           const pc_site_hook *hook) {
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
    builder b = {.g = g, .c = cfg, .hook = hook, .B = ts.dim[0], .pos = pos};
    return build(&b, tokens, NULL, NULL, NULL, NULL);
}

pc_val pc_llama_forward(pc_graph *g, const pc_llama_config *cfg, pc_val tokens, pc_val pos) {
    return forward_sites(g, cfg, tokens, pos, NULL);
}

/* turns a graph with a sticky error into NULL + message */
static pc_graph *finish(pc_graph *g, char *err, size_t errlen) {
    if (!g) { pc_errf(err, errlen, "out of memory"); return NULL; }
    if (pc_graph_error(g)) {
        pc_errf(err, errlen, "%s", pc_graph_error(g));
        pc_graph_free(g);
        return NULL;
    }
    return g;
}

/* with_loss: %targets and %loss (an LM graph); else only %logits (a forward graph) */
static pc_graph *lm_graph(const pc_llama_config *cfg, const pc_build_req *req, int64_t B, int64_t S, int output_logits,
                          int with_loss, const pc_site_hook *hook, char *err, size_t errlen) {
    if (pc_llama_config_check(cfg, err, errlen)) return NULL;
    if (B <= 0 || S <= 0) { pc_errf(err, errlen, "llama train graph: B (%lld) and S (%lld) must be positive", (long long)B, (long long)S); return NULL; }
    if (S > cfg->seq_len) {
        pc_errf(err, errlen, "llama train graph: S (%lld) exceeds seq_len (%d)", (long long)S, cfg->seq_len);
        return NULL;
    }
    pc_graph *g = pc_graph_new(with_loss ? "train" : "forward");
    if (!g) return finish(g, err, errlen);
    pc_val tokens = pc_input(g, "tokens", PC_I32, PC_SHAPE(B, S));
    pc_val targets = with_loss ? pc_input(g, "targets", PC_I32, PC_SHAPE(B, S)) : PC_NONE;
    int32_t *p = malloc((size_t)S * sizeof *p);
    if (!p) { pc_graph_free(g); pc_errf(err, errlen, "out of memory"); return NULL; }
    for (int64_t i = 0; i < S; i++) p[i] = (int32_t)i;
    pc_val pos = pc_const(g, PC_I32, PC_SHAPE(S), p);
    free(p);
    pc_set_name(g, pos, "positions");
    pc_val logits = forward_sites(g, cfg, tokens, pos, hook);
    if (!with_loss) {
        if (!pc_graph_error(g)) pc_set_name(g, logits, "logits"), pc_mark_output(g, logits);
        return finish(g, err, errlen);
    }
    pc_val loss = pc_lm_objective(g, req, logits, targets, PC_LLAMA_IGNORE);
    pc_lm_objective_outputs(g, req, logits, loss, output_logits);
    return finish(g, err, errlen);
}

pc_graph *pc_llama_train_graph(const pc_llama_config *cfg, int64_t B, int64_t S, int output_logits,
                               char *err, size_t errlen) {
    return lm_graph(cfg, NULL, B, S, output_logits, 1, NULL, err, errlen);
}

static pc_graph *decode_graph(const pc_llama_config *cfg, int64_t B, int64_t T, const pc_site_hook *hook,
                              char *err, size_t errlen) {
    if (pc_llama_config_check(cfg, err, errlen)) return NULL;
    if (B <= 0 || T <= 0) {
        pc_errf(err, errlen, "llama decode graph: B (%lld) and T (%lld) must be positive", (long long)B, (long long)T);
        return NULL;
    }
    pc_graph *g = pc_graph_new("decode");
    if (!g) return finish(g, err, errlen);
    pc_decode_io io;
    if (pc_decode_begin(g, &io, B, T, cfg->n_layers, cfg->n_kv_heads, cfg->dim / cfg->n_heads)) {
        pc_graph_free(g);
        pc_errf(err, errlen, "out of memory");
        return NULL;
    }
    builder b = {.g = g, .c = cfg, .hook = hook, .B = B, .pos = io.pos, .decode = 1, .T = T, .mask = io.mask};
    pc_decode_end(g, &io, build(&b, io.token, io.k_cache, io.v_cache, io.k_new, io.v_new));
    return finish(g, err, errlen);
}

pc_graph *pc_llama_decode_graph(const pc_llama_config *cfg, int64_t B, int64_t T, char *err, size_t errlen) {
    return decode_graph(cfg, B, T, NULL, err, errlen);
}

pc_graph *pc_llama_build(const pc_llama_config *cfg, const pc_build_req *req, const pc_site_hook *hook, char *err,
                         size_t errlen) {
    if (req->task == PC_TASK_DECODE) return decode_graph(cfg, req->batch, req->seq, hook, err, errlen);
    return lm_graph(cfg, req, req->batch, req->seq, req->output_logits, req->task == PC_TASK_LM, hook, err, errlen);
}
