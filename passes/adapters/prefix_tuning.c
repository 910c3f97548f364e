/* Prefix tuning (PEFT's PrefixTuningConfig; reference/peft.md §7): P trainable key/value rows
 * are put in front of every layer's attention. PEFT's table `prompt_embeddings [P, 2·L·W]` (W =
 * token_dim = n_kv_heads · head_dim: PEFT's GQA rule makes the width follow the kv heads) holds,
 * per row, [K_0 | V_0 | K_1 | V_1 | ...], each block W wide with heads outermost: layer i's keys are
 * columns [2iW, 2iW+W), its values the next W (get_prompt's view(B,P,2L,Hkv,Dh).permute(2,0,3,1,4)).
 * The prefix keys are used as stored (no RoPE); the real tokens take positions P..P+S-1 and see
 * every prefix row (the causal mask offsets by Sk - Sq). The head and the labels are untouched.
 *
 * prefix_projection = true in a training run (pc_adapt_training_run): an embedding [P, W] ->
 * Linear(W, H) -> Tanh -> Linear(H, 2·L·W) (H = encoder_hidden_size, default W) computes the table; the params are keyed
 * as PEFT's prompt encoder ("prompt_encoder.embedding.weight", "prompt_encoder.transform.0.weight",
 * ...) and the adapter file holds only the projected table as `prompt_embeddings` (PEFT's save),
 * which a trained adapter (a file holding prompt_embeddings only) then runs without the projection;
 * training it further is refused (PEFT cannot invert the projection either); --resume continues a
 * projection run from its checkpoint, which keeps the MLP's params beside the optimizer state.
 * Init: nn.Embedding's N(0, 1) (and nn.Linear's defaults); init_weights "zero" zeroes the table
 * (with the projection: the last Linear's weight and bias).
 *
 * Generation: a DECODE graph puts the prefix into cache rows 0..P-1 itself (it replaces what the
 * cache holds there), so the generation loop runs nothing for them and starts the first token at
 * position P (prefix_positions). Not mergeable. Bidirectional encoders are refused, and so is
 * --hf-qk-rows (the key columns are not permuted from Hugging Face's head order yet).
 *
 * peftc's own fields (kept in the config as written; PEFT drops them) select Li & Liang's two
 * ablations, with the same params, projection and init:
 *   "peftc_prefix_placement": "attention" (default, PEFT's), "embedding" or "infix"
 *   "embedding": embedding-only: the table is [P, hidden], P trainable embeddings put before the
 *     input only (positions 0..P-1, the text at P..; every layer computes their activations):
 *     prompt tuning's mechanics; generation feeds them as ids V..V+P-1 (virtual_tokens)
 *   "infix" with "peftc_infix_position": K (>= 1): the key/value rows sit after the first K tokens
 *     of every sequence at every layer: tokens 0..K-1 keep positions 0..K-1 and do not see them,
 *     the rows take positions K..K+P-1 (their keys unrotated, as the prefix's), the rest of the
 *     text K+P.. sees them all. Built as P placeholder rows in the sequence whose keys/values are
 *     replaced and whose logits are dropped. Sequences must be longer than K; no generation. */
#include "passes/adapt.h"
#include "ir/ir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* where the P trainable rows go (peftc_prefix_placement) */
typedef enum {
    PLACE_ATTENTION = 0, /* PEFT: key/value rows before the sequence at every layer */
    PLACE_EMBEDDING,     /* ablation: P embeddings before the input only (activations computed) */
    PLACE_INFIX,         /* ablation: key/value rows at every layer after the first K tokens */
} placement;

typedef struct {
    int64_t P, L, W, Hkv, Dh, H; /* virtual tokens, layers, kv width, kv heads, head dim, encoder hidden */
    int64_t D, K;                /* the model's hidden size; infix: tokens before the rows */
    placement place;
    bool zero;
    pc_graph *g; /* the graph `table` belongs to */
    pc_val table;
} prefix_state;

static int pf_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    prefix_state *st = state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    const pc_model_info *mi = pc_adapt_model(cx);
    if (mi->encoder)
        return snprintf(err, errlen, "prefix tuning runs on causal language models; %s is a bidirectional encoder",
                        mi->model_type ? mi->model_type : "the model"), -1;
    if (mi->n_heads <= 0 || mi->n_kv_heads <= 0 || mi->n_layers <= 0 || mi->dim % mi->n_heads)
        return snprintf(err, errlen, "prefix tuning: the model does not say its attention heads"), -1;
    st->P = cfg->prompt.num_virtual_tokens;
    st->L = mi->n_layers;
    st->Hkv = mi->n_kv_heads;
    st->Dh = mi->dim / mi->n_heads;
    st->W = st->Hkv * st->Dh;
    if (st->P == PC_INT_NULL || st->P <= 0)
        return snprintf(err, errlen, "field \"num_virtual_tokens\": must be a positive integer"), -1;
    if (mi->context > 0 && st->P >= mi->context)
        return snprintf(err, errlen, "field \"num_virtual_tokens\": %lld prefix positions leave no room in the model's context of %d",
                        (long long)st->P, mi->context), -1;
    const struct { const char *field; int64_t v, want; const char *what; } fixed[] = {
        {"token_dim", cfg->prompt.token_dim, st->W, "the model's key/value width (n_kv_heads x head_dim) is"},
        {"num_attention_heads", cfg->prompt.num_attention_heads, st->Hkv, "the model's number of key/value heads is"},
        {"num_layers", cfg->prompt.num_layers, st->L, "the model's number of layers is"},
        {"num_transformer_submodules", cfg->prompt.num_transformer_submodules, 1, "a decoder-only model has"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (fixed[i].v != PC_INT_NULL && fixed[i].v != fixed[i].want)
            return snprintf(err, errlen, "field \"%s\": %lld, but %s %lld", fixed[i].field, (long long)fixed[i].v,
                            fixed[i].what, (long long)fixed[i].want), -1;
    st->H = cfg->prompt.encoder_hidden_size == PC_INT_NULL ? st->W : cfg->prompt.encoder_hidden_size;
    if (st->H <= 0) return snprintf(err, errlen, "field \"encoder_hidden_size\": must be positive"), -1;
    st->zero = cfg->prompt.init_weights_zero;
    st->D = mi->dim;
    const char *pl = pc_adapter_config_custom_string(cfg, "peftc_prefix_placement");
    double k = 0;
    if (pc_adapt_config_number(cx, "peftc_prefix_placement", 0, &k) < 0 && !pl)
        return snprintf(err, errlen, "field \"peftc_prefix_placement\": must be \"attention\", \"embedding\" or \"infix\""), -1;
    if (!pl || !strcmp(pl, "attention")) st->place = PLACE_ATTENTION;
    else if (!strcmp(pl, "embedding")) st->place = PLACE_EMBEDDING;
    else if (!strcmp(pl, "infix")) st->place = PLACE_INFIX;
    else
        return snprintf(err, errlen, "field \"peftc_prefix_placement\": must be \"attention\", \"embedding\" or \"infix\", got \"%s\"", pl), -1;
    int r = pc_adapt_config_number(cx, "peftc_infix_position", 0, &k);
    if (r < 0 || (r == 0 && (k != floor(k) || k < 1 || k >= mi->context)))
        return snprintf(err, errlen, "field \"peftc_infix_position\": must be an integer in [1, %d)", mi->context), -1;
    if ((r == 0) != (st->place == PLACE_INFIX))
        return snprintf(err, errlen, r == 0 ? "field \"peftc_infix_position\": only peftc_prefix_placement \"infix\" uses it"
                                            : "field \"peftc_infix_position\": peftc_prefix_placement \"infix\" needs it"), -1;
    st->K = (int64_t)k;
    if (st->place == PLACE_INFIX && pc_adapt_get_mode(cx) == PC_ADAPT_DECODE)
        return snprintf(err, errlen, "field \"peftc_prefix_placement\": \"infix\" adapters cannot generate (their rows sit "
                                     "after the first %lld tokens of every text; peftc train and eval run them)", (long long)st->K), -1;
    return 0;
}

/* the table's width: every layer's keys and values, or (embedding placement) one embedding */
static int64_t width(const prefix_state *st) { return st->place == PLACE_EMBEDDING ? st->D : 2 * st->L * st->W; }

/* the MLP computes the table in a training run with prefix_projection (also its frozen
 * evaluation graph); a trained adapter holds the projected table only (PEFT's save, which PEFT
 * loads as a plain table in inference mode) */
static bool projecting(const pc_adapt_ctx *cx) {
    return pc_adapt_config(cx)->prompt.prefix_projection && pc_adapt_training_run(cx);
}

/* nn.Linear(in, out): weight and bias keyed like PEFT's transform.<i>, torch's default init
 * (kaiming_uniform(a = sqrt 5) and U(±1/sqrt(in))) or zeros */
static pc_val linear(pc_adapt_ctx *cx, const pc_site *top, pc_val x, int idx, int64_t in, int64_t out, bool zero) {
    char wk[64], bk[64];
    snprintf(wk, sizeof wk, "prompt_encoder.transform.%d.weight", idx);
    snprintf(bk, sizeof bk, "prompt_encoder.transform.%d.bias", idx);
    double bound = 1.0 / sqrt((double)in);
    pc_val w = pc_adapt_param(cx, top, wk, PC_SHAPE(out, in),
                              zero ? (pc_init){PC_INIT_ZEROS, 0, 0} : (pc_init){PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0});
    pc_val b = pc_adapt_param(cx, top, bk, PC_SHAPE(out),
                              zero ? (pc_init){PC_INIT_ZEROS, 0, 0} : (pc_init){PC_INIT_UNIFORM, -bound, bound});
    return pc_add_at(top->g, top->loc, pc_matmul_at(top->g, top->loc, x, w, 0, 1), b);
}

/* the table [P, 2LW] of this graph: the param, or the projection's output */
static pc_val table(pc_adapt_ctx *cx, prefix_state *st, const pc_site *s) {
    if (st->g == s->g && st->table != PC_NONE) return st->table;
    pc_site top = *s;
    top.module = NULL; /* PEFT keys prompt learning tensors without a module */
    int64_t out = width(st);
    pc_val t;
    if (projecting(cx)) {
        pc_val e = pc_adapt_param(cx, &top, "prompt_encoder.embedding.weight", PC_SHAPE(st->P, st->W),
                                  (pc_init){PC_INIT_NORMAL, 1.0, 0});
        pc_val h = pc_tanh_at(s->g, s->loc, linear(cx, &top, e, 0, st->W, st->H, false));
        t = linear(cx, &top, h, 2, st->H, out, st->zero);
    } else {
        t = pc_adapt_param(cx, &top, "prompt_embeddings", PC_SHAPE(st->P, out),
                           st->zero ? (pc_init){PC_INIT_ZEROS, 0, 0} : (pc_init){PC_INIT_NORMAL, 1.0, 0});
    }
    st->g = s->g, st->table = t;
    return t;
}

/* layer i's keys (slot 0) or values (slot 1) as [B, P, Hkv, Dh] */
static pc_val slot(pc_adapt_ctx *cx, prefix_state *st, const pc_site *s, int64_t B, int which) {
    pc_graph *g = s->g;
    int64_t c0 = (2 * (int64_t)s->layer + which) * st->W;
    pc_val x = pc_slice_at(g, s->loc, table(cx, st, s), 1, c0, c0 + st->W);
    x = pc_reshape_at(g, s->loc, x, PC_SHAPE(1, st->P, st->Hkv, st->Dh));
    return pc_broadcast_at(g, s->loc, x, PC_SHAPE(B, st->P, st->Hkv, st->Dh));
}

/* the constant positions i32[S] with P rows after the first `at`: those kept, then (rows) the
 * rows' own positions, then the rest shifted by n */
static pc_val insert_positions(pc_val v, const pc_site *s, int64_t at, int64_t n, bool rows, char *err, size_t errlen) {
    pc_graph *g = s->g;
    const pc_value *p = pc_v(g, v);
    if (p->op != PC_OP_const || p->dtype != PC_I32 || p->shape.rank != 1)
        return snprintf(err, errlen, "prefix tuning needs the model's positions as a constant"), PC_NONE;
    int64_t S = p->shape.dim[0];
    const int32_t *old = p->data;
    int64_t m = rows ? n : 0, len = S + m;
    int32_t *pos = malloc((size_t)(len ? len : 1) * sizeof *pos);
    if (!pos) return snprintf(err, errlen, "out of memory"), PC_NONE;
    for (int64_t i = 0; i < len; i++)
        pos[i] = i < at ? old[i] : i < at + m ? (int32_t)i : old[i - m] + (int32_t)n;
    pc_val out = pc_const_at(g, s->loc, PC_I32, PC_SHAPE(len), pos);
    free(pos);
    return out;
}

/* x with its rows [from, to) along axis 1 replaced by r (to = from: inserted) */
static pc_val splice(const pc_site *s, pc_val x, int64_t from, int64_t to, pc_val r) {
    pc_graph *g = s->g;
    int64_t n = pc_val_shape(g, x).dim[1];
    pc_val parts[3];
    int k = 0;
    if (from > 0) parts[k++] = pc_slice_at(g, s->loc, x, 1, 0, from);
    if (r != PC_NONE) parts[k++] = r;
    if (to < n) parts[k++] = pc_slice_at(g, s->loc, x, 1, to, n);
    return k == 1 ? parts[0] : pc_concat_at(g, s->loc, k, parts, 1);
}

/* the embedding placement: prompt tuning's mechanics with the prefix's params */
static int rewrite_embedding(pc_adapt_ctx *cx, prefix_state *st, pc_site *s, bool decode, char *err, size_t errlen) {
    pc_graph *g = s->g;
    if (s->kind == PC_SITE_EMBED) {
        pc_val t = table(cx, st, s); /* [P, D] */
        if (decode) { /* ids V..V+P-1 are the rows (virtual_tokens) */
            s->value = pc_embedding_at(g, s->loc, pc_concat_at(g, s->loc, 2, (pc_val[]){s->weight, t}, 0), s->ids);
            return 1;
        }
        int64_t B = pc_val_shape(g, s->value).dim[0];
        t = pc_broadcast_at(g, s->loc, pc_reshape_at(g, s->loc, t, PC_SHAPE(1, st->P, st->D)), PC_SHAPE(B, st->P, st->D));
        s->value = splice(s, s->value, 0, 0, t);
        return 1;
    }
    if (decode) return 0;
    if (s->kind == PC_SITE_POSITIONS)
        return (s->value = insert_positions(s->value, s, 0, st->P, true, err, errlen)) == PC_NONE ? -1 : 1;
    if (s->kind == PC_SITE_HEAD) { /* the rows predict nothing */
        s->value = splice(s, s->value, 0, st->P, PC_NONE);
        return 1;
    }
    return 0;
}

static int pf_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    prefix_state *st = state;
    pc_graph *g = s->g;
    bool decode = pc_adapt_get_mode(cx) == PC_ADAPT_DECODE;
    if (st->place == PLACE_EMBEDDING) return rewrite_embedding(cx, st, s, decode, err, errlen);
    /* infix: P placeholder rows after the first K tokens carry the rows through every layer;
     * their keys/values are replaced, their logits dropped */
    bool infix = st->place == PLACE_INFIX;
    if (infix && s->kind == PC_SITE_EMBED) {
        pc_shape e = pc_val_shape(g, s->value); /* [B, S, D] */
        if (e.dim[1] <= st->K)
            return snprintf(err, errlen, "field \"peftc_infix_position\": %lld tokens leave none after the infix in a "
                            "sequence of %lld", (long long)st->K, (long long)e.dim[1]), -1;
        pc_val z = pc_broadcast_at(g, s->loc, pc_scalar_at(g, s->loc, 0.0f), PC_SHAPE(e.dim[0], st->P, e.dim[2]));
        s->value = splice(s, s->value, st->K, st->K, z);
        return 1;
    }
    if (infix && s->kind == PC_SITE_HEAD) {
        s->value = splice(s, s->value, st->K, st->K + st->P, PC_NONE);
        return 1;
    }
    if (s->kind == PC_SITE_ATTN_KV) {
        if (s->layer < 0 || s->layer >= st->L)
            return snprintf(err, errlen, "prefix tuning: attention site %s has no layer index below %lld",
                            s->module ? s->module : "?", (long long)st->L), -1;
        pc_shape ks = pc_val_shape(g, s->value); /* [B, Sk, Hkv, Dh] */
        if (ks.rank != 4 || ks.dim[2] != st->Hkv || ks.dim[3] != st->Dh)
            return snprintf(err, errlen, "prefix tuning: %s's keys are not [B, S, %lld, %lld]", s->module,
                            (long long)st->Hkv, (long long)st->Dh), -1;
        pc_val k = slot(cx, st, s, ks.dim[0], 0), v = slot(cx, st, s, ks.dim[0], 1);
        /* decode: cache rows 0..P-1 are the prefix's (the loop never writes them); infix: the
         * placeholder rows K..K+P-1; else the rows go before the keys */
        int64_t from = infix ? st->K : 0, to = decode || infix ? from + st->P : 0;
        if (decode && ks.dim[1] <= st->P)
            return snprintf(err, errlen, "prefix tuning: a KV cache of %lld rows has no room after %lld prefix rows",
                            (long long)ks.dim[1] - 1, (long long)st->P), -1;
        s->value = splice(s, s->value, from, to, k);
        s->value2 = splice(s, s->value2, from, to, v);
        return 1;
    }
    if (s->kind == PC_SITE_POSITIONS && !decode) { /* a decode step's position is already absolute */
        /* the prefix rows take no sequence positions; the infix's placeholder rows do */
        s->value = insert_positions(s->value, s, infix ? st->K : 0, st->P, infix, err, errlen);
        return s->value == PC_NONE ? -1 : 1;
    }
    return 0;
}

static int pf_finish(pc_adapt_ctx *cx, void *state, int nrewritten, char *err, size_t errlen) {
    (void)cx;
    (void)nrewritten;
    prefix_state *st = state;
    if (st->table == PC_NONE || !st->g)
        return snprintf(err, errlen, "prefix tuning: the model has no attention key/value site"), -1;
    return 0;
}

static int pf_prefix_positions(pc_adapt_ctx *cx, void *state) {
    (void)cx;
    const prefix_state *st = state;
    return st->place == PLACE_EMBEDDING ? 0 : (int)st->P;
}

static int pf_virtual_tokens(pc_adapt_ctx *cx, void *state) {
    (void)cx;
    const prefix_state *st = state;
    return st->place == PLACE_EMBEDDING ? (int)st->P : 0;
}

/* with the projection, PEFT saves its output: prompt_embeddings = transform(embedding) */
static int pf_save(pc_adapt_ctx *cx, void *state, const pc_tensor_io *io, char *err, size_t errlen) {
    prefix_state *st = state;
    if (!projecting(cx)) return 0;
    static const char *const keys[5] = {"prompt_encoder.embedding.weight", "prompt_encoder.transform.0.weight",
                                        "prompt_encoder.transform.0.bias", "prompt_encoder.transform.2.weight",
                                        "prompt_encoder.transform.2.bias"};
    const int64_t P = st->P, W = st->W, H = st->H, O = width(st);
    const pc_shape want[5] = {PC_SHAPE(P, W), PC_SHAPE(H, W), PC_SHAPE(H), PC_SHAPE(O, H), PC_SHAPE(O)};
    const float *t[5];
    for (int i = 0; i < 5; i++) {
        pc_shape sh;
        if (!(t[i] = io->get(io->get_ctx, keys[i], &sh)) || !pc_shape_eq(sh, want[i]))
            return snprintf(err, errlen, "prefix tuning: no tensor %s of the expected shape to save from", keys[i]), -1;
    }
    float *h = malloc((size_t)H * sizeof *h), *out = malloc((size_t)(P * O) * sizeof *out);
    if (!h || !out) { free(h); free(out); return snprintf(err, errlen, "out of memory"), -1; }
    for (int64_t p = 0; p < P; p++) {
        const float *e = t[0] + p * W;
        for (int64_t j = 0; j < H; j++) {
            double a = t[2][j];
            for (int64_t k = 0; k < W; k++) a += (double)t[1][j * W + k] * e[k];
            h[j] = (float)tanh(a);
        }
        for (int64_t j = 0; j < O; j++) {
            double a = t[4][j];
            for (int64_t k = 0; k < H; k++) a += (double)t[3][j * H + k] * h[k];
            out[p * O + j] = (float)a;
        }
    }
    int rc = io->put(io->put_ctx, "prompt_embeddings", PC_SHAPE(P, O), out);
    free(h);
    free(out);
    if (rc) return snprintf(err, errlen, "prefix tuning: cannot add prompt_embeddings to the adapter file"), -1;
    return 1;
}

/* a training run's projection params start from their init or a checkpoint (--resume); an
 * adapter holding only the projected table cannot continue: the MLP that made it is gone (PEFT
 * refuses is_trainable=True there too) */
static int pf_init(pc_adapt_ctx *cx, void *state, const char *key, float *data, pc_shape shape, pc_base_lookup base,
                   void *base_ctx, char *err, size_t errlen) {
    (void)cx, (void)state, (void)data, (void)shape;
    if (strcmp(key, "prompt_encoder.embedding.weight") || !base(base_ctx, "prompt_embeddings", NULL)) return 0;
    return snprintf(err, errlen, "field \"prefix_projection\": this trained adapter holds only the projected "
                    "prompt_embeddings (PEFT's save), not the projection's params, so its training cannot continue "
                    "(PEFT refuses too): train from its adapter_config.json, --resume a checkpoint-N directory written "
                    "by --save-every, or set prefix_projection to false to train the table itself"), -1;
}

const pc_adapter_method pc_method_prefix_tuning = {
    .name = "prefix_tuning",
    .peft_type = "PREFIX_TUNING",
    .sites = PC_SITE_ATTN_KV | PC_SITE_POSITIONS | PC_SITE_EMBED | PC_SITE_HEAD,
    .state_size = sizeof(prefix_state),
    .begin = pf_begin,
    .rewrite = pf_rewrite,
    .finish = pf_finish,
    .not_mergeable = "prefix tuning puts key/value rows in front of every attention; there is no weight to fold them "
                     "into (run it unmerged: peftc eval/generate without --merge)",
    .prefix_positions = pf_prefix_positions,
    .virtual_tokens = pf_virtual_tokens,
    .save_tensors = pf_save,
    .init_from_base = pf_init,
};
