/* BERT / RoBERTa encoder graphs (see bert.h). */
#include "frontend/bert.h"
#include "frontend/linear.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- config ---- */
pc_bert_config pc_bert_config_default(int roberta) {
    pc_bert_config c;
    memset(&c, 0, sizeof c);
    c.roberta = roberta ? 1 : 0;
    c.max_positions = 512;
    c.type_vocab_size = 2;
    c.num_labels = 2;
    c.pad_token_id = roberta ? 1 : 0;
    c.norm_eps = 1e-12;
    c.act = PC_BERT_GELU;
    c.hidden_dropout = c.attention_dropout = c.classifier_dropout = 0.1;
    c.initializer_range = 0.02;
    return c;
}

const char *pc_bert_prefix(const pc_bert_config *c) { return c->roberta ? "roberta" : "bert"; }

int pc_bert_context(const pc_bert_config *c) {
    return c->roberta ? c->max_positions - c->pad_token_id - 1 : c->max_positions;
}

int pc_bert_config_check(const pc_bert_config *c, char *err, size_t errlen) {
    if (!c) return pc_errf(err, errlen, "bert config: NULL");
    const char *m = c->roberta ? "roberta" : "bert";
    const struct { const char *name; int v; } pos[] = {
        {"hidden_size", c->dim},          {"intermediate_size", c->hidden_dim},
        {"num_hidden_layers", c->n_layers}, {"num_attention_heads", c->n_heads},
        {"vocab_size", c->vocab_size},    {"max_position_embeddings", c->max_positions},
        {"type_vocab_size", c->type_vocab_size},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0) return pc_errf(err, errlen, "%s config: %s (%d) must be positive", m, pos[i].name, pos[i].v);
    if (c->dim % c->n_heads)
        return pc_errf(err, errlen, "%s config: num_attention_heads (%d) does not divide hidden_size (%d)", m, c->n_heads,
                       c->dim);
    if (c->num_labels < 2)
        return pc_errf(err, errlen, "%s config: num_labels (%d): peftc's classification head needs >= 2 labels "
                       "(transformers treats 1 label as regression, which is not supported)", m, c->num_labels);
    if (c->roberta && (c->pad_token_id < 0 || pc_bert_context(c) < 1))
        return pc_errf(err, errlen, "roberta config: pad_token_id (%d) leaves no positions: RoBERTa's positions start "
                       "at pad_token_id + 1 and max_position_embeddings is %d", c->pad_token_id, c->max_positions);
    if (!(c->norm_eps >= 0)) return pc_errf(err, errlen, "%s config: layer_norm_eps (%g) must be >= 0", m, c->norm_eps);
    const struct { const char *name; double p; } drop[] = {
        {"hidden_dropout_prob", c->hidden_dropout}, {"attention_probs_dropout_prob", c->attention_dropout},
        {"classifier_dropout", c->classifier_dropout},
    };
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        if (!(drop[i].p >= 0 && drop[i].p < 1))
            return pc_errf(err, errlen, "%s config: %s (%g) must be in [0, 1)", m, drop[i].name, drop[i].p);
    if (!(c->initializer_range >= 0))
        return pc_errf(err, errlen, "%s config: initializer_range (%g) must be >= 0", m, c->initializer_range);
    if (c->act < PC_BERT_GELU || c->act > PC_BERT_SILU) return pc_errf(err, errlen, "%s config: unknown activation", m);
    return 0;
}

static bool has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

pc_init pc_bert_head_init(const pc_bert_config *c, const char *key) {
    static const char *const bert_heads[] = {"bert.pooler.dense", "classifier", NULL};
    static const char *const roberta_heads[] = {"classifier.dense", "classifier.out_proj", NULL};
    const char *const *heads = c->roberta ? roberta_heads : bert_heads;
    for (int i = 0; heads[i]; i++) {
        size_t n = strlen(heads[i]);
        if (strncmp(key, heads[i], n) != 0) continue;
        if (strcmp(key + n, ".weight") == 0) return (pc_init){PC_INIT_NORMAL, c->initializer_range, 0};
        if (strcmp(key + n, ".bias") == 0) return (pc_init){PC_INIT_ZEROS, 0, 0};
    }
    return (pc_init){PC_INIT_NONE, 0, 0};
}

/* ---- graph building ---- */
typedef struct {
    pc_graph *g;
    const pc_bert_config *c;
    const pc_site_hook *hook;
    const char *p; /* module prefix: "bert." / "roberta." (SEQ_CLASSIFY) or "" */
    bool train;    /* dropout is built */
    int64_t B, H, Dh;
    pc_val mask;   /* additive attention mask [B,1,1,S] over the keys */
} builder;

/* get-or-create a frozen param by key (name = key without ".weight"), with the head's init */
static pc_val param(builder *b, const char *key, pc_shape s) {
    pc_graph *g = b->g;
    pc_val v = pc_lookup_key(g, key);
    if (v != PC_NONE) {
        if (pc_v(g, v)->op != PC_OP_param || pc_val_dtype(g, v) != PC_F32 || !pc_shape_eq(pc_val_shape(g, v), s))
            return pc_fail(g, PC_HERE, "key \"%s\" is already used by %%%s with another type", key, pc_val_name(g, v));
        return v;
    }
    char name[300];
    snprintf(name, sizeof name, "%s", key);
    if (has_suffix(name, ".weight")) name[strlen(name) - 7] = 0;
    return pc_param(g, pc_lookup(g, name) == PC_NONE ? name : NULL, key, PC_F32, s, PC_FROZEN,
                    pc_bert_head_init(b->c, key));
}

static pc_site site(builder *b, pc_site_kind k, const char *module, int layer, pc_val v) {
    return (pc_site){.kind = k, .module = module, .layer = layer, .g = b->g, .loc = PC_HERE, .value = v,
                     .value2 = PC_NONE, .x = PC_NONE, .weight = PC_NONE, .bias = PC_NONE, .ids = PC_NONE};
}

/* x Wᵀ + b named `module` (frontend/linear.h) and its site; a head linear's params carry
 * their init (declared first: pc_linear reuses them) */
static pc_val linear(builder *b, pc_val x, const char *module, int layer, int64_t in, int64_t out) {
    char wkey[300], bkey[300];
    snprintf(wkey, sizeof wkey, "%s.weight", module);
    snprintf(bkey, sizeof bkey, "%s.bias", module);
    if (pc_bert_head_init(b->c, wkey).kind != PC_INIT_NONE) {
        param(b, wkey, PC_SHAPE(out, in));
        param(b, bkey, PC_SHAPE(out));
    }
    pc_val y = pc_linear(b->g, x, module, in, out, 1);
    pc_site s = site(b, PC_SITE_LINEAR, module, layer, y);
    s.x = x, s.weight = pc_lookup_key(b->g, wkey), s.bias = pc_lookup_key(b->g, bkey), s.in = in, s.out = out;
    return pc_emit_site(b->hook, &s);
}

static pc_val layernorm(builder *b, pc_val x, const char *module) {
    char wkey[300], bkey[300];
    snprintf(wkey, sizeof wkey, "%s.weight", module);
    snprintf(bkey, sizeof bkey, "%s.bias", module);
    pc_shape s = PC_SHAPE(b->c->dim);
    return pc_layernorm(b->g, x, param(b, wkey, s), param(b, bkey, s), b->c->norm_eps);
}

/* dropout with the graph's %seed, a salt per place; only in TRAIN graphs */
static pc_val dropout(builder *b, pc_val x, double p, const char *where) {
    if (!b->train || p <= 0 || x == PC_NONE) return x;
    pc_graph *g = b->g;
    pc_val seed = pc_lookup(g, "seed");
    if (seed == PC_NONE) seed = pc_input(g, "seed", PC_I32, PC_SCALAR);
    else if (pc_v(g, seed)->op != PC_OP_input || pc_val_dtype(g, seed) != PC_I32 || pc_val_shape(g, seed).rank != 0)
        return pc_fail(g, PC_HERE, "%%seed exists but is not an i32[] input");
    uint64_t h = 1469598103934665603ull ^ 0xB5E7;
    for (const char *q = where; *q; q++) h = (h ^ (unsigned char)*q) * 1099511628211ull;
    return pc_dropout(g, x, seed, p, (int64_t)(h & 0x7fffffff));
}

static pc_val activation(builder *b, pc_val x) {
    switch (b->c->act) {
    case PC_BERT_GELU: return pc_gelu(b->g, x, 0);
    case PC_BERT_GELU_TANH: return pc_gelu(b->g, x, 1);
    case PC_BERT_RELU: return pc_relu(b->g, x);
    case PC_BERT_SILU: return pc_silu(b->g, x);
    }
    return pc_fail(b->g, PC_HERE, "bert: unknown activation");
}

static pc_val layer(builder *b, int i, pc_val x) {
    pc_graph *g = b->g;
    const pc_bert_config *c = b->c;
    if (x == PC_NONE || pc_graph_error(g)) return PC_NONE;
    char p[128], m[200];
    snprintf(p, sizeof p, "%sencoder.layer.%d", b->p, i);
    const int64_t B = b->B, S = pc_val_shape(g, x).dim[1], D = c->dim, F = c->hidden_dim;

    /* self-attention, bidirectional, padding keys masked */
    snprintf(m, sizeof m, "%s.attention.self.query", p);
    pc_val q = linear(b, x, m, i, D, D);
    snprintf(m, sizeof m, "%s.attention.self.key", p);
    pc_val k = linear(b, x, m, i, D, D);
    snprintf(m, sizeof m, "%s.attention.self.value", p);
    pc_val v = linear(b, x, m, i, D, D);
    q = pc_reshape(g, q, PC_SHAPE(B, S, b->H, b->Dh));
    k = pc_reshape(g, k, PC_SHAPE(B, S, b->H, b->Dh));
    v = pc_reshape(g, v, PC_SHAPE(B, S, b->H, b->Dh));
    snprintf(m, sizeof m, "%s.attention.self", p);
    pc_site kv = site(b, PC_SITE_ATTN_KV, m, i, k);
    kv.value2 = v;
    k = pc_emit_site(b->hook, &kv);
    v = kv.value2;
    if (k == PC_NONE || v == PC_NONE) return PC_NONE;
    /* keys a method added in front (prefix tuning) are attended */
    int64_t Sk = pc_val_shape(g, k).dim[1], Sm = pc_val_shape(g, b->mask).dim[3];
    if (Sk < Sm) return pc_fail(g, PC_HERE, "%s: the adapter shortened the keys (%lld < %lld)", m, (long long)Sk, (long long)Sm);
    pc_val mask = Sk > Sm ? pc_pad(g, b->mask, 3, Sk - Sm, 0) : b->mask;
    const int64_t perm[4] = {0, 2, 1, 3};
    q = pc_transpose(g, q, 4, perm); /* [B,H,S,Dh] */
    k = pc_transpose(g, k, 4, perm); /* [B,H,Sk,Dh] */
    v = pc_transpose(g, v, 4, perm);
    pc_val sc = pc_matmul(g, q, k, 0, 1); /* [B,H,S,Sk] */
    sc = pc_add(g, pc_scale(g, sc, 1.0 / sqrt((double)b->Dh), 0.0), mask);
    pc_val pr = pc_softmax(g, sc, -1);
    snprintf(m, sizeof m, "%s.attention.self.dropout", p);
    pr = dropout(b, pr, c->attention_dropout, m);
    pc_val o = pc_matmul(g, pr, v, 0, 0); /* [B,H,S,Dh] */
    o = pc_reshape(g, pc_transpose(g, o, 4, perm), PC_SHAPE(B, S, D));
    snprintf(m, sizeof m, "%s.attention.output.dense", p);
    o = linear(b, o, m, i, D, D);
    snprintf(m, sizeof m, "%s.attention.output.dropout", p);
    o = dropout(b, o, c->hidden_dropout, m);
    snprintf(m, sizeof m, "%s.attention.output.LayerNorm", p);
    pc_val a = layernorm(b, pc_add(g, o, x), m);

    /* feed-forward */
    snprintf(m, sizeof m, "%s.intermediate.dense", p);
    pc_val f = activation(b, linear(b, a, m, i, D, F));
    snprintf(m, sizeof m, "%s.output.dense", p);
    f = linear(b, f, m, i, F, D);
    snprintf(m, sizeof m, "%s.output", p);
    pc_site ffn = site(b, PC_SITE_FFN, m, i, f);
    ffn.x = a;
    f = pc_emit_site(b->hook, &ffn);
    snprintf(m, sizeof m, "%s.output.dropout", p);
    f = dropout(b, f, c->hidden_dropout, m);
    snprintf(m, sizeof m, "%s.output.LayerNorm", p);
    pc_val y = layernorm(b, pc_add(g, f, a), m);
    pc_site blk = site(b, PC_SITE_BLOCK, p, i, y);
    return pc_emit_site(b->hook, &blk);
}

/* word + token type + position embeddings, LayerNorm; the additive mask. S' = the sequence as
 * the EMBED site made it (P' = S' - S virtual tokens in front) */
static pc_val embeddings(builder *b, pc_val tokens, pc_val mask_in, pc_val types) {
    pc_graph *g = b->g;
    const pc_bert_config *c = b->c;
    const int64_t B = b->B, S = pc_val_shape(g, tokens).dim[1], D = c->dim;
    char m[200], key[220];
    snprintf(m, sizeof m, "%sembeddings.word_embeddings", b->p);
    snprintf(key, sizeof key, "%s.weight", m);
    pc_val table = param(b, key, PC_SHAPE(c->vocab_size, D));
    pc_site emb = site(b, PC_SITE_EMBED, m, -1, pc_embedding(g, table, tokens));
    emb.ids = tokens, emb.weight = table;
    pc_val x = pc_emit_site(b->hook, &emb);
    if (x == PC_NONE) return PC_NONE;
    pc_shape xs = pc_val_shape(g, x);
    if (xs.rank != 3 || xs.dim[0] != B || xs.dim[2] != D || xs.dim[1] < S)
        return pc_fail(g, PC_HERE, "%s: the adapter's embeddings are not [%lld, >= %lld, %lld]", m, (long long)B,
                       (long long)S, (long long)D);
    const int64_t S1 = xs.dim[1], P = S1 - S;
    if (S1 > pc_bert_context(c))
        return pc_fail(g, PC_HERE, "%s: %lld positions (with the adapter's virtual tokens) exceed the %d the model has",
                       pc_bert_prefix(c), (long long)S1, pc_bert_context(c));

    /* positions: 0..S-1 (BERT), padding_idx+1 .. (RoBERTa) */
    int32_t *pos = malloc((size_t)S * sizeof *pos);
    if (!pos) return pc_fail(g, PC_HERE, "out of memory");
    for (int64_t j = 0; j < S; j++) pos[j] = (int32_t)(j + (c->roberta ? c->pad_token_id + 1 : 0));
    pc_val pv = pc_const(g, PC_I32, PC_SHAPE(S), pos);
    free(pos);
    snprintf(m, sizeof m, "%sembeddings.position_ids", b->p);
    pc_site ps = site(b, PC_SITE_POSITIONS, m, -1, pv);
    pc_val pv1 = pc_emit_site(b->hook, &ps);
    if (pv1 == PC_NONE) return PC_NONE;
    if (pc_val_dtype(g, pv1) != PC_I32 || !pc_shape_eq(pc_val_shape(g, pv1), PC_SHAPE(S1)))
        return pc_fail(g, PC_HERE, "%s: the adapter's positions are not i32[%lld]", m, (long long)S1);
    if (c->roberta && pv1 == pv) {
        /* RoBERTa from token ids, as create_position_ids_from_input_ids: a token that is not the
         * padding id is at padding_idx + (how many such tokens up to it), padding at padding_idx
         * (any side of padding). The count is a product with a triangle of ones: exact in f32.
         * With a sequence the adapter changed, the positions it returns (transformers'
         * inputs_embeds path: sequential) */
        float *tri = calloc((size_t)(S * S), sizeof *tri);
        if (!tri) return pc_fail(g, PC_HERE, "out of memory");
        for (int64_t i = 0; i < S; i++)
            for (int64_t j = i; j < S; j++) tri[i * S + j] = 1.0f;
        pc_val U = pc_const(g, PC_F32, PC_SHAPE(S, S), tri);
        free(tri);
        pc_val real = pc_scale(g, pc_eq(g, tokens, pc_const(g, PC_I32, PC_SCALAR, &(int32_t){c->pad_token_id})), -1.0, 1.0);
        pc_val count = pc_mul(g, pc_matmul(g, real, U, 0, 0), real);
        pv1 = pc_cast(g, pc_scale(g, count, 1.0, (double)c->pad_token_id), PC_I32); /* [B,S] */
    }
    pv = pv1;

    /* token types: the input's (type 0 for virtual tokens), else type 0 everywhere */
    snprintf(key, sizeof key, "%sembeddings.token_type_embeddings.weight", b->p);
    pc_val ttable = param(b, key, PC_SHAPE(c->type_vocab_size, D));
    pc_val row0 = pc_slice(g, ttable, 0, 0, 1); /* [1, D] */
    pc_val te = row0;
    if (types != PC_NONE) {
        te = pc_embedding(g, ttable, types);
        if (P > 0)
            te = pc_concat(g, 2, ((pc_val[]){pc_broadcast(g, pc_reshape(g, row0, PC_SHAPE(1, 1, D)), PC_SHAPE(B, P, D)), te}), 1);
    }
    snprintf(key, sizeof key, "%sembeddings.position_embeddings.weight", b->p);
    pc_val ptable = param(b, key, PC_SHAPE(c->max_positions, D));
    x = pc_add(g, pc_add(g, x, te), pc_embedding(g, ptable, pv)); /* [S',D] or [B,S,D] */
    snprintf(m, sizeof m, "%sembeddings.LayerNorm", b->p);
    x = layernorm(b, x, m);
    snprintf(m, sizeof m, "%sembeddings.dropout", b->p);
    x = dropout(b, x, c->hidden_dropout, m);

    /* -1e30 on padding keys: exp underflows to exactly 0, whatever the scores */
    pc_val zero = pc_val_dtype(g, mask_in) == PC_I32 ? pc_const(g, PC_I32, PC_SCALAR, &(int32_t){0}) : pc_scalar(g, 0.0f);
    pc_val add = pc_scale(g, pc_eq(g, mask_in, zero), -1e30, 0.0);
    if (P > 0) add = pc_pad(g, add, 1, P, 0); /* virtual tokens are attended */
    b->mask = pc_reshape(g, add, PC_SHAPE(B, 1, 1, S1));
    return x;
}

/* the classification head on position 0 ([CLS] / <s>, or the first virtual token) */
static pc_val head(builder *b, pc_val x) {
    pc_graph *g = b->g;
    const pc_bert_config *c = b->c;
    const int64_t B = b->B, D = c->dim, L = c->num_labels;
    pc_val h = pc_reshape(g, pc_slice(g, x, 1, 0, 1), PC_SHAPE(B, D));
    pc_val logits;
    if (!c->roberta) {
        h = pc_tanh(g, linear(b, h, "bert.pooler.dense", -1, D, D));
        h = dropout(b, h, c->classifier_dropout, "dropout");
        logits = linear(b, h, "classifier", -1, D, L);
    } else {
        h = dropout(b, h, c->classifier_dropout, "classifier.dropout.0");
        h = pc_tanh(g, linear(b, h, "classifier.dense", -1, D, D));
        h = dropout(b, h, c->classifier_dropout, "classifier.dropout.1");
        logits = linear(b, h, "classifier.out_proj", -1, D, L);
    }
    pc_site hs = site(b, PC_SITE_HEAD, "classifier", -1, logits);
    logits = pc_emit_site(b->hook, &hs);
    if (logits != PC_NONE && !pc_shape_eq(pc_val_shape(g, logits), PC_SHAPE(B, L)))
        return pc_fail(g, PC_HERE, "classifier: the adapter changed the logits' shape (a head rewrite for LM logits "
                       "[B, S, V] cannot apply to a sequence classifier's [B, num_labels])");
    return logits;
}

static pc_graph *finish(pc_graph *g, char *err, size_t errlen) {
    if (!g) { pc_errf(err, errlen, "out of memory"); return NULL; }
    if (pc_graph_error(g)) {
        pc_errf(err, errlen, "%s", pc_graph_error(g));
        pc_graph_free(g);
        return NULL;
    }
    return g;
}

pc_graph *pc_bert_build(const pc_bert_config *cfg, const pc_build_req *req, const pc_site_hook *hook, char *err,
                        size_t errlen) {
    if (pc_bert_config_check(cfg, err, errlen)) return NULL;
    const char *model = pc_bert_prefix(cfg);
    bool cls = req->task == PC_TASK_SEQ_CLASSIFY;
    if (!cls && req->task != PC_TASK_FEATURE_EXTRACT) {
        pc_errf(err, errlen, "%s: an encoder builds sequence-classification and feature-extraction graphs, not %s "
                "graphs", model, req->task == PC_TASK_DECODE ? "decode" : req->task == PC_TASK_LM ? "language-model" : "forward (LM logits)");
        return NULL;
    }
    const int64_t B = req->batch, S = req->seq;
    if (B <= 0 || S <= 0) {
        pc_errf(err, errlen, "%s graph: batch (%lld) and seq (%lld) must be positive", model, (long long)B, (long long)S);
        return NULL;
    }
    if (S > pc_bert_context(cfg)) {
        pc_errf(err, errlen, "%s graph: seq (%lld) exceeds the %d positions the model has", model, (long long)S,
                pc_bert_context(cfg));
        return NULL;
    }
    if (req->mask_dtype != PC_F32 && req->mask_dtype != PC_I32) {
        pc_errf(err, errlen, "%s graph: the attention mask must be f32 or i32", model);
        return NULL;
    }
    pc_graph *g = pc_graph_new(cls ? "seq_classify" : "feature_extract");
    if (!g) return finish(g, err, errlen);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s.", model);
    builder b = {.g = g, .c = cfg, .hook = hook, .p = cls ? prefix : "", .train = req->mode == PC_ADAPT_TRAIN, .B = B,
                 .H = cfg->n_heads, .Dh = cfg->dim / cfg->n_heads};
    pc_val tokens = pc_input(g, "tokens", PC_I32, PC_SHAPE(B, S));
    pc_val mask = pc_input(g, "attention_mask", req->mask_dtype, PC_SHAPE(B, S));
    pc_val types = req->token_type_ids ? pc_input(g, "token_type_ids", PC_I32, PC_SHAPE(B, S)) : PC_NONE;
    pc_val labels = cls ? pc_input(g, "labels", PC_I32, PC_SHAPE(B)) : PC_NONE;
    pc_val x = embeddings(&b, tokens, mask, types);
    for (int i = 0; i < cfg->n_layers && x != PC_NONE; i++) x = layer(&b, i, x);
    char m[32];
    snprintf(m, sizeof m, "%sencoder", b.p);
    pc_site fin = site(&b, PC_SITE_FINAL, m, -1, x);
    x = pc_emit_site(hook, &fin);
    if (!cls) {
        if (!pc_graph_error(g) && (pc_set_name(g, x, "last_hidden_state") || pc_mark_output(g, x)))
            pc_fail(g, PC_HERE, "cannot name %%last_hidden_state");
        return finish(g, err, errlen);
    }
    pc_val logits = head(&b, x);
    pc_val loss = pc_cross_entropy(g, logits, labels, -100, 0);
    if (!pc_graph_error(g) && (pc_set_name(g, logits, "logits") || pc_set_name(g, loss, "loss") ||
                               pc_mark_loss(g, loss) || pc_mark_output(g, logits)))
        pc_fail(g, PC_HERE, "cannot name %%logits and %%loss");
    return finish(g, err, errlen);
}
