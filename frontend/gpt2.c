/* GPT-2 frontend: the config and the graph builders (see gpt2.h). */
#include "frontend/distill_objective.h"
#include "frontend/gpt2.h"
#include "frontend/lm_objective.h"
#include "frontend/linear.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- config ---- */
pc_gpt2_config pc_gpt2_config_default(void) {
    pc_gpt2_config c;
    memset(&c, 0, sizeof c);
    c.norm_eps = 1e-5;
    c.gelu_tanh = 1;
    c.scale_attn_weights = 1;
    c.tied = 1;
    return c;
}

int pc_gpt2_config_check(const pc_gpt2_config *c, char *err, size_t errlen) {
    if (!c) return pc_errf(err, errlen, "gpt2 config: NULL");
    const struct { const char *name; int v; } pos[] = {
        {"dim", c->dim},         {"hidden_dim", c->hidden_dim}, {"n_layers", c->n_layers},
        {"n_heads", c->n_heads}, {"vocab_size", c->vocab_size}, {"n_positions", c->n_positions},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0) return pc_errf(err, errlen, "gpt2 config: %s (%d) must be positive", pos[i].name, pos[i].v);
    if (c->dim % c->n_heads)
        return pc_errf(err, errlen, "gpt2 config: n_heads (%d) does not divide dim (%d)", c->n_heads, c->dim);
    if (!(c->norm_eps >= 0)) return pc_errf(err, errlen, "gpt2 config: norm_eps (%g) must be >= 0", c->norm_eps);
    const struct { const char *name; int v; } flags[] = {
        {"gelu_tanh", c->gelu_tanh}, {"scale_attn_weights", c->scale_attn_weights},
        {"scale_by_inverse_layer", c->scale_by_inverse_layer}, {"tied", c->tied},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (flags[i].v != 0 && flags[i].v != 1)
            return pc_errf(err, errlen, "gpt2 config: %s (%d) must be 0 or 1", flags[i].name, flags[i].v);
    return 0;
}

int pc_gpt2_is_conv1d_key(const char *key) {
    static const char *const tails[] = {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight",
                                        ".mlp.c_proj.weight"};
    static const char pre[] = "transformer.h.";
    if (strncmp(key, pre, sizeof pre - 1)) return 0;
    const char *p = key + sizeof pre - 1;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++)
        if (strcmp(p, tails[i]) == 0) return 1;
    return 0;
}

/* ---- graph building ---- */
typedef struct {
    pc_graph *g;
    const pc_gpt2_config *c;
    const pc_site_hook *hook;
    int64_t B, H, Dh;
    pc_val pos;
    /* decode mode: keys = concat(cache [B,T,H,Dh], new) and an additive mask [T+1] */
    int decode;
    pc_val mask;
} builder;

/* get-or-create a frozen, loaded param named `name` with key name (".weight"/".bias" included) */
static pc_val frozen(builder *b, const char *module, const char *tensor, pc_shape s) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", module, tensor);
    pc_val p = pc_lookup_key(b->g, key);
    /* the weight's SSA name is its module (frontend/linear.h); other tensors are named by key */
    if (p == PC_NONE)
        return pc_param(b->g, strcmp(tensor, "weight") == 0 ? module : key, key, PC_F32, s, PC_FROZEN, (pc_init){0});
    if (pc_v(b->g, p)->op != PC_OP_param || pc_val_dtype(b->g, p) != PC_F32 || !pc_shape_eq(pc_val_shape(b->g, p), s))
        return pc_fail(b->g, PC_HERE, "key \"%s\" is already used by %%%s with another type", key,
                       pc_val_name(b->g, p));
    return p;
}

static pc_site site(builder *b, pc_site_kind k, const char *module, int layer, pc_val v, pc_loc at) {
    return (pc_site){.kind = k, .module = module, .layer = layer, .g = b->g, .loc = at, .value = v,
                     .value2 = PC_NONE, .x = PC_NONE, .weight = PC_NONE, .bias = PC_NONE, .ids = PC_NONE};
}

/* a linear (with bias when `bias`) and its site */
static pc_val linear(builder *b, pc_val x, const char *module, int layer, int64_t in, int64_t out, int bias) {
    pc_val y = pc_linear(b->g, x, module, in, out, bias);
    pc_site s = site(b, PC_SITE_LINEAR, module, layer, y, PC_HERE);
    char key[256];
    snprintf(key, sizeof key, "%s.weight", module);
    s.x = x, s.weight = pc_lookup_key(b->g, key), s.in = in, s.out = out;
    if (bias) snprintf(key, sizeof key, "%s.bias", module), s.bias = pc_lookup_key(b->g, key);
    return pc_emit_site(b->hook, &s);
}

static pc_val layernorm(builder *b, pc_val x, const char *module) {
    pc_shape s = PC_SHAPE(b->c->dim);
    return pc_layernorm(b->g, x, frozen(b, module, "weight", s), frozen(b, module, "bias", s), b->c->norm_eps);
}

static pc_val layer(builder *b, int i, pc_val x, pc_val kc, pc_val vc, pc_val *knew, pc_val *vnew) {
    pc_graph *g = b->g;
    const pc_gpt2_config *c = b->c;
    char m[160], p[128];
    snprintf(p, sizeof p, "transformer.h.%d", i);
    if (x == PC_NONE || pc_graph_error(g)) return PC_NONE;
    /* the sequence length as the sites made it (virtual tokens lengthen it) */
    const int64_t B = b->B, S = pc_val_shape(g, x).dim[1], D = c->dim, F = c->hidden_dim;

    /* attention: c_attn gives q, k, v side by side */
    snprintf(m, sizeof m, "%s.ln_1", p);
    pc_val h = layernorm(b, x, m);
    snprintf(m, sizeof m, "%s.attn.c_attn", p);
    pc_val qkv = linear(b, h, m, i, D, 3 * D, 1);
    pc_val q = pc_reshape(g, pc_slice(g, qkv, 2, 0, D), PC_SHAPE(B, S, b->H, b->Dh));
    pc_val k = pc_reshape(g, pc_slice(g, qkv, 2, D, 2 * D), PC_SHAPE(B, S, b->H, b->Dh));
    pc_val v = pc_reshape(g, pc_slice(g, qkv, 2, 2 * D, 3 * D), PC_SHAPE(B, S, b->H, b->Dh));
    if (b->decode) {
        *knew = k;
        *vnew = v;
        k = pc_concat(g, 2, ((pc_val[]){kc, k}), 1);
        v = pc_concat(g, 2, ((pc_val[]){vc, v}), 1);
    }
    snprintf(m, sizeof m, "%s.attn", p);
    pc_site kv = site(b, PC_SITE_ATTN_KV, m, i, k, PC_HERE);
    kv.value2 = v;
    k = pc_emit_site(b->hook, &kv);
    v = kv.value2;
    const int64_t perm[4] = {0, 2, 1, 3};
    q = pc_transpose(g, q, 4, perm); /* [B,H,S,Dh] */
    k = pc_transpose(g, k, 4, perm); /* [B,H,Sk,Dh] */
    v = pc_transpose(g, v, 4, perm);
    pc_val sc = pc_matmul(g, q, k, 0, 1); /* [B,H,S,Sk] */
    double scale = c->scale_attn_weights ? 1.0 / sqrt((double)b->Dh) : 1.0;
    if (c->scale_by_inverse_layer) scale /= (double)(i + 1);
    if (scale != 1.0) sc = pc_scale(g, sc, scale, 0.0);
    sc = b->decode ? pc_add(g, sc, b->mask) : pc_causal_mask(g, sc, -1e30);
    pc_val o = pc_matmul(g, pc_softmax(g, sc, -1), v, 0, 0); /* [B,H,S,Dh] */
    o = pc_reshape(g, pc_transpose(g, o, 4, perm), PC_SHAPE(B, S, D));
    snprintf(m, sizeof m, "%s.attn.c_proj", p);
    x = pc_add(g, x, linear(b, o, m, i, D, D, 1));

    /* feed-forward: c_fc, gelu, c_proj */
    snprintf(m, sizeof m, "%s.ln_2", p);
    h = layernorm(b, x, m);
    snprintf(m, sizeof m, "%s.mlp.c_fc", p);
    pc_val a = pc_gelu(g, linear(b, h, m, i, D, F, 1), c->gelu_tanh);
    snprintf(m, sizeof m, "%s.mlp.c_proj", p);
    pc_val d = linear(b, a, m, i, F, D, 1);
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
    const pc_gpt2_config *c = b->c;
    char msg[256];
    if (pc_graph_error(g)) return PC_NONE;
    if (pc_gpt2_config_check(c, msg, sizeof msg)) return pc_fail(g, PC_HERE, "%s", msg);
    b->H = c->n_heads;
    b->Dh = c->dim / c->n_heads;
    pc_val wte = frozen(b, "transformer.wte", "weight", PC_SHAPE(c->vocab_size, c->dim));
    pc_site emb = site(b, PC_SITE_EMBED, "transformer.wte", -1, pc_embedding(g, wte, tokens), PC_HERE);
    emb.ids = tokens, emb.weight = wte;
    pc_val x = pc_emit_site(b->hook, &emb);
    pc_site ps = site(b, PC_SITE_POSITIONS, "transformer.wpe", -1, b->pos, PC_HERE);
    b->pos = pc_emit_site(b->hook, &ps);
    if (x == PC_NONE || b->pos == PC_NONE) return PC_NONE;
    int64_t S = pc_val_shape(g, x).dim[1];
    if (!b->decode && S > c->n_positions)
        return pc_fail(g, PC_HERE, "gpt2: %lld positions (with the adapter's virtual tokens) exceed n_positions (%d)",
                       (long long)S, c->n_positions);
    /* learned positions: wpe rows of the positions, broadcast over the batch */
    pc_val wpe = frozen(b, "transformer.wpe", "weight", PC_SHAPE(c->n_positions, c->dim));
    x = pc_add(g, x, pc_embedding(g, wpe, b->pos));
    for (int i = 0; i < c->n_layers; i++)
        x = layer(b, i, x, kc ? kc[i] : PC_NONE, vc ? vc[i] : PC_NONE, knew ? &knew[i] : NULL, vnew ? &vnew[i] : NULL);
    x = layernorm(b, x, "transformer.ln_f");
    pc_site fin = site(b, PC_SITE_FINAL, "transformer.ln_f", -1, x, PC_HERE);
    x = pc_emit_site(b->hook, &fin);
    pc_name_final_hidden(g, x);
    pc_val logits = c->tied ? pc_matmul(g, x, wte, 0, 1) : linear(b, x, "lm_head", -1, c->dim, c->vocab_size, 0);
    pc_site head = site(b, PC_SITE_HEAD, "lm_head", -1, logits, PC_HERE);
    return pc_emit_site(b->hook, &head);
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
static pc_graph *lm_graph(const pc_gpt2_config *cfg, const pc_build_req *req, int64_t B, int64_t S, int output_logits,
                          int with_loss, const pc_site_hook *hook, char *err, size_t errlen) {
    if (pc_gpt2_config_check(cfg, err, errlen)) return NULL;
    if (B <= 0 || S <= 0) {
        pc_errf(err, errlen, "gpt2 graph: B (%lld) and S (%lld) must be positive", (long long)B, (long long)S);
        return NULL;
    }
    if (S > cfg->n_positions) {
        pc_errf(err, errlen, "gpt2 graph: S (%lld) exceeds n_positions (%d)", (long long)S, cfg->n_positions);
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
    builder b = {.g = g, .c = cfg, .hook = hook, .B = B, .pos = pos};
    pc_val logits = build(&b, tokens, NULL, NULL, NULL, NULL);
    if (!with_loss) {
        if (!pc_graph_error(g)) pc_set_name(g, logits, "logits"), pc_mark_output(g, logits);
        return finish(g, err, errlen);
    }
    pc_val loss = pc_lm_objective(g, req, logits, targets, PC_GPT2_IGNORE);
    pc_lm_objective_outputs(g, req, logits, loss, output_logits);
    return finish(g, err, errlen);
}

static pc_graph *decode_graph(const pc_gpt2_config *cfg, int64_t B, int64_t T, const pc_site_hook *hook, char *err,
                              size_t errlen) {
    if (pc_gpt2_config_check(cfg, err, errlen)) return NULL;
    if (B <= 0 || T <= 0) {
        pc_errf(err, errlen, "gpt2 decode graph: B (%lld) and T (%lld) must be positive", (long long)B, (long long)T);
        return NULL;
    }
    pc_graph *g = pc_graph_new("decode");
    if (!g) return finish(g, err, errlen);
    pc_decode_io io;
    if (pc_decode_begin(g, &io, B, T, cfg->n_layers, cfg->n_heads, cfg->dim / cfg->n_heads)) {
        pc_graph_free(g);
        pc_errf(err, errlen, "out of memory");
        return NULL;
    }
    builder b = {.g = g, .c = cfg, .hook = hook, .B = B, .pos = io.pos, .decode = 1, .mask = io.mask};
    pc_decode_end(g, &io, build(&b, io.token, io.k_cache, io.v_cache, io.k_new, io.v_new));
    return finish(g, err, errlen);
}

pc_graph *pc_gpt2_build(const pc_gpt2_config *cfg, const pc_build_req *req, const pc_site_hook *hook, char *err,
                        size_t errlen) {
    if (req->task == PC_TASK_DECODE) return decode_graph(cfg, req->batch, req->seq, hook, err, errlen);
    return lm_graph(cfg, req, req->batch, req->seq, req->output_logits, req->task == PC_TASK_LM, hook, err, errlen);
}
