/* P-tuning (PEFT's PromptEncoderConfig; reference/peft.md §8): prompt tuning whose P virtual-token
 * embeddings come from a trainable prompt encoder. The encoder's input is its own table
 * `embedding [P, D]` (PEFT's embedding(arange(P))); its head is
 *   MLP:  Linear(D,H) → ReLU → Linear(H,H) → ReLU → Linear(H,D)
 *   LSTM: a bidirectional nn.LSTM(D, H, encoder_num_layers, dropout=encoder_dropout between
 *         layers) over the P positions, then Linear(2H,2H) → ReLU → Linear(2H,D)
 * (H = encoder_hidden_size, default D). The LSTM is unrolled into graph ops (matmul, sigmoid,
 * tanh, mul, slice, concat), so autograd and every backend see plain ops. The output [P, D] is
 * computed once and prepended to each row, as prompt tuning does (positions, head slice, decode).
 *
 * What is saved is only the encoder's output, `prompt_embeddings [P, D]`, as PEFT saves it; a
 * trained adapter is applied as a frozen table, without the encoder. A training run builds the
 * encoder (also in its evaluation graph); its params are keyed as PEFT names them in memory
 * (prompt_encoder.default.mlp_head.0.weight, ...lstm_head.weight_ih_l0_reverse) and a resumable
 * checkpoint keeps them beside the optimizer state. Not mergeable. */
#include "passes/adapt.h"
#include "passes/adapters/virtual_tokens.h"
#include "ir/ir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENC "prompt_encoder.default."

typedef struct {
    int64_t P, D, H; /* virtual tokens, model width, encoder hidden size */
    bool lstm;
    int layers;      /* LSTM layers */
    double dropout;  /* between LSTM layers, training only (nn.LSTM's dropout) */
} ptuning_state;

static int pt_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    ptuning_state *st = state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    const pc_model_info *mi = pc_adapt_model(cx);
    st->P = cfg->prompt.num_virtual_tokens;
    st->D = mi->dim;
    if (pc_virtual_check_config(cx, err, errlen)) return -1;
    /* PEFT: encoder_hidden_size null becomes token_dim */
    st->H = cfg->prompt.encoder_hidden_size == PC_INT_NULL ? st->D : cfg->prompt.encoder_hidden_size;
    if (st->H <= 0)
        return snprintf(err, errlen, "field \"encoder_hidden_size\": must be a positive integer, got %lld", (long long)st->H), -1;
    st->lstm = cfg->prompt.encoder_reparameterization_type == PC_ENCODER_LSTM;
    if (cfg->prompt.encoder_num_layers <= 0 || cfg->prompt.encoder_num_layers > 64)
        return snprintf(err, errlen, "field \"encoder_num_layers\": must be 1..64, got %lld",
                        (long long)cfg->prompt.encoder_num_layers), -1;
    st->layers = (int)cfg->prompt.encoder_num_layers;
    st->dropout = cfg->prompt.encoder_dropout.v;
    if (!(st->dropout >= 0 && st->dropout < 1))
        return snprintf(err, errlen, "field \"encoder_dropout\": must be in [0, 1), got %g", st->dropout), -1;
    return 0;
}

/* ---- the encoder as graph ops ---- */

typedef struct {
    pc_adapt_ctx *cx;
    const ptuning_state *st;
    const pc_site *s; /* params are made with its graph and location, keyed without a module */
} enc_builder;

static pc_val eparam(enc_builder *b, const char *tensor, pc_shape shape, pc_init init) {
    pc_site top = *b->s;
    top.module = NULL;
    char key[256];
    snprintf(key, sizeof key, ENC "%s", tensor);
    return pc_adapt_param(b->cx, &top, key, shape, init);
}

/* nn.Linear(in, out) as PEFT's module `name`: x [P, in] -> [P, out]; nn.Linear's default init */
static pc_val linear(enc_builder *b, const char *name, pc_val x, int64_t in, int64_t out) {
    pc_graph *g = b->s->g;
    char key[128];
    double bound = 1.0 / sqrt((double)in);
    snprintf(key, sizeof key, "%s.weight", name);
    pc_val w = eparam(b, key, PC_SHAPE(out, in), (pc_init){PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0});
    snprintf(key, sizeof key, "%s.bias", name);
    pc_val bias = eparam(b, key, PC_SHAPE(out), (pc_init){PC_INIT_UNIFORM, -bound, bound});
    return pc_add_at(g, b->s->loc, pc_matmul_at(g, b->s->loc, x, w, 0, 1), bias);
}

/* one direction of one nn.LSTM layer over x [P, in]: [P, H]. Gates i, f, g, o (PyTorch's
 * order) from x W_ihᵀ + b_ih + h W_hhᵀ + b_hh; c = f c + i g, h = o tanh(c); h, c start at 0 */
static pc_val lstm_direction(enc_builder *b, pc_val x, int64_t in, int layer, bool reverse) {
    pc_graph *g = b->s->g;
    pc_loc at = b->s->loc;
    const int64_t P = b->st->P, H = b->st->H;
    const double bound = 1.0 / sqrt((double)H);
    const pc_init u = {PC_INIT_UNIFORM, -bound, bound};
    char k[4][64];
    static const char *const names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    for (int i = 0; i < 4; i++) snprintf(k[i], sizeof k[i], "lstm_head.%s_l%d%s", names[i], layer, reverse ? "_reverse" : "");
    pc_val wih = eparam(b, k[0], PC_SHAPE(4 * H, in), u), whh = eparam(b, k[1], PC_SHAPE(4 * H, H), u);
    pc_val bih = eparam(b, k[2], PC_SHAPE(4 * H), u), bhh = eparam(b, k[3], PC_SHAPE(4 * H), u);
    /* the input part of every step at once: [P, 4H] */
    pc_val xw = pc_add_at(g, at, pc_add_at(g, at, pc_matmul_at(g, at, x, wih, 0, 1), bih), bhh);
    pc_val *hs = malloc((size_t)P * sizeof *hs);
    if (!hs) return PC_NONE;
    pc_val h = PC_NONE, c = PC_NONE;
    for (int64_t n = 0; n < P; n++) {
        int64_t t = reverse ? P - 1 - n : n;
        pc_val z = pc_slice_at(g, at, xw, 0, t, t + 1); /* [1, 4H] */
        if (h != PC_NONE) z = pc_add_at(g, at, z, pc_matmul_at(g, at, h, whh, 0, 1));
        pc_val ig = pc_sigmoid_at(g, at, pc_slice_at(g, at, z, 1, 0, H));
        pc_val fg = pc_sigmoid_at(g, at, pc_slice_at(g, at, z, 1, H, 2 * H));
        pc_val gg = pc_tanh_at(g, at, pc_slice_at(g, at, z, 1, 2 * H, 3 * H));
        pc_val og = pc_sigmoid_at(g, at, pc_slice_at(g, at, z, 1, 3 * H, 4 * H));
        pc_val ic = pc_mul_at(g, at, ig, gg);
        c = c == PC_NONE ? ic : pc_add_at(g, at, pc_mul_at(g, at, fg, c), ic);
        h = pc_mul_at(g, at, og, pc_tanh_at(g, at, c));
        hs[t] = h;
    }
    pc_val out = P == 1 ? hs[0] : pc_concat_at(g, at, (int)P, hs, 0);
    free(hs);
    return out;
}

/* the encoder's output [P, D] */
static pc_val encoder(pc_adapt_ctx *cx, const ptuning_state *st, const pc_site *s) {
    enc_builder b = {cx, st, s};
    pc_graph *g = s->g;
    pc_loc at = s->loc;
    pc_val x = eparam(&b, "embedding.weight", PC_SHAPE(st->P, st->D), (pc_init){PC_INIT_NORMAL, 1.0, 0});
    if (!st->lstm) {
        x = pc_relu_at(g, at, linear(&b, "mlp_head.0", x, st->D, st->H));
        x = pc_relu_at(g, at, linear(&b, "mlp_head.2", x, st->H, st->H));
        return linear(&b, "mlp_head.4", x, st->H, st->D);
    }
    int64_t in = st->D;
    for (int l = 0; l < st->layers; l++) {
        if (l > 0 && st->dropout > 0 && pc_adapt_get_mode(cx) == PC_ADAPT_TRAIN) {
            /* nn.LSTM: dropout on each layer's output but the last */
            char tag[32];
            snprintf(tag, sizeof tag, "lstm_dropout_l%d", l - 1);
            pc_val keep = pc_adapt_keep_mask(cx, s, PC_SHAPE(st->P, in), st->dropout, tag);
            x = pc_scale_at(g, at, pc_mul_at(g, at, x, keep), 1.0 / (1.0 - st->dropout), 0.0);
        }
        pc_val f = lstm_direction(&b, x, in, l, false), r = lstm_direction(&b, x, in, l, true);
        if (f == PC_NONE || r == PC_NONE) return PC_NONE;
        x = pc_concat_at(g, at, 2, (pc_val[]){f, r}, 1);
        in = 2 * st->H;
    }
    x = pc_relu_at(g, at, linear(&b, "mlp_head.0", x, 2 * st->H, 2 * st->H));
    return linear(&b, "mlp_head.2", x, 2 * st->H, st->D);
}

/* the virtual-token table [P, D]: the encoder in a training run, else the saved output */
static pc_val table(pc_adapt_ctx *cx, const ptuning_state *st, const pc_site *s) {
    if (pc_adapt_training_run(cx)) return encoder(cx, st, s);
    pc_site top = *s;
    top.module = NULL; /* PEFT keys it "prompt_embeddings", without a module */
    return pc_adapt_param(cx, &top, "prompt_embeddings", PC_SHAPE(st->P, st->D), (pc_init){PC_INIT_NONE, 0, 0});
}

static int pt_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    ptuning_state *st = state;
    bool decode = pc_adapt_get_mode(cx) == PC_ADAPT_DECODE;
    if (s->kind == PC_SITE_EMBED) {
        pc_val t = table(cx, st, s);
        if (t == PC_NONE) return snprintf(err, errlen, "out of memory"), -1;
        if (decode) pc_virtual_decode_embed(s, t);
        else pc_virtual_prepend(s, t); /* the one output repeated per row (PEFT) */
        return 1;
    }
    return pc_virtual_other_site(s, st->P, decode, "P-tuning", err, errlen);
}

static int pt_virtual_tokens(pc_adapt_ctx *cx, void *state) {
    (void)cx;
    return (int)((ptuning_state *)state)->P;
}

/* ---- saving: the encoder's output computed from the run's current params (no dropout, as
 * PEFT's get_prompt_embedding_to_save on a model in eval mode) ---- */

typedef struct {
    const pc_tensor_io *io;
    char *err;
    size_t errlen;
} getter;

static const float *get(getter *gt, const char *tensor, pc_shape want) {
    char key[256];
    snprintf(key, sizeof key, ENC "%s", tensor);
    pc_shape sh;
    const float *d = gt->io->get(gt->io->get_ctx, key, &sh);
    if (!d) snprintf(gt->err, gt->errlen, "the run has no %s", key);
    else if (!pc_shape_eq(sh, want)) snprintf(gt->err, gt->errlen, "%s has an unexpected shape", key), d = NULL;
    return d;
}

/* y [P, out] = x [P, in] Wᵀ + b, ReLU'd when relu */
static int host_linear(getter *gt, const char *name, const float *x, int64_t P, int64_t in, int64_t out, bool relu, float *y) {
    char k[128];
    snprintf(k, sizeof k, "%s.weight", name);
    const float *w = get(gt, k, PC_SHAPE(out, in));
    snprintf(k, sizeof k, "%s.bias", name);
    const float *b = w ? get(gt, k, PC_SHAPE(out)) : NULL;
    if (!b) return -1;
    for (int64_t p = 0; p < P; p++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b[o];
            for (int64_t i = 0; i < in; i++) acc += (double)x[p * in + i] * w[o * in + i];
            y[p * out + o] = relu && acc < 0 ? 0.0f : (float)acc;
        }
    return 0;
}

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

/* one direction of one layer: x [P, in] -> columns col..col+H-1 of y [P, 2H] */
static int host_lstm(getter *gt, const ptuning_state *st, const float *x, int64_t in, int layer, bool reverse, float *y) {
    const int64_t P = st->P, H = st->H;
    char k[4][64];
    static const char *const names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    for (int i = 0; i < 4; i++) snprintf(k[i], sizeof k[i], "lstm_head.%s_l%d%s", names[i], layer, reverse ? "_reverse" : "");
    const float *wih = get(gt, k[0], PC_SHAPE(4 * H, in)), *whh = wih ? get(gt, k[1], PC_SHAPE(4 * H, H)) : NULL;
    const float *bih = whh ? get(gt, k[2], PC_SHAPE(4 * H)) : NULL, *bhh = bih ? get(gt, k[3], PC_SHAPE(4 * H)) : NULL;
    if (!bhh) return -1;
    double *h = calloc((size_t)(6 * H), sizeof *h);
    if (!h) return snprintf(gt->err, gt->errlen, "out of memory"), -1;
    double *c = h + H, *z = c + H;
    for (int64_t n = 0; n < P; n++) {
        int64_t t = reverse ? P - 1 - n : n;
        for (int64_t r = 0; r < 4 * H; r++) {
            double acc = (double)bih[r] + bhh[r];
            for (int64_t i = 0; i < in; i++) acc += (double)x[t * in + i] * wih[r * in + i];
            for (int64_t j = 0; j < H; j++) acc += h[j] * whh[r * H + j];
            z[r] = acc;
        }
        for (int64_t j = 0; j < H; j++) {
            c[j] = sigm(z[H + j]) * c[j] + sigm(z[j]) * tanh(z[2 * H + j]);
            h[j] = sigm(z[3 * H + j]) * tanh(c[j]);
            y[t * 2 * H + (reverse ? H : 0) + j] = (float)h[j];
        }
    }
    free(h);
    return 0;
}

static int pt_save(pc_adapt_ctx *cx, void *state, const pc_tensor_io *io, char *err, size_t errlen) {
    (void)cx;
    const ptuning_state *st = state;
    const int64_t P = st->P, D = st->D, H = st->H, W = st->lstm ? 2 * H : H;
    getter gt = {io, err, errlen};
    const float *emb = get(&gt, "embedding.weight", PC_SHAPE(P, D));
    if (!emb) return -1;
    /* two [P, max(D, 2H)] work buffers and the output */
    int64_t wmax = D > W ? D : W;
    float *a = malloc((size_t)(2 * P * wmax + P * D) * sizeof *a);
    if (!a) return snprintf(err, errlen, "out of memory"), -1;
    float *b = a + P * wmax, *out = b + P * wmax;
    int rc = 0;
    if (!st->lstm) {
        rc = host_linear(&gt, "mlp_head.0", emb, P, D, H, true, a) || host_linear(&gt, "mlp_head.2", a, P, H, H, true, b) ||
             host_linear(&gt, "mlp_head.4", b, P, H, D, false, out);
    } else {
        memcpy(a, emb, (size_t)(P * D) * sizeof *a);
        int64_t in = D;
        for (int l = 0; l < st->layers && !rc; l++) {
            rc = host_lstm(&gt, st, a, in, l, false, b) || host_lstm(&gt, st, a, in, l, true, b);
            memcpy(a, b, (size_t)(P * 2 * H) * sizeof *a);
            in = 2 * H;
        }
        rc = rc || host_linear(&gt, "mlp_head.0", a, P, 2 * H, 2 * H, true, b) ||
             host_linear(&gt, "mlp_head.2", b, P, 2 * H, D, false, out);
    }
    if (!rc && io->put(io->put_ctx, "prompt_embeddings", PC_SHAPE(P, D), out)) {
        snprintf(err, errlen, "adding prompt_embeddings to the adapter file failed");
        rc = -1;
    }
    free(a);
    return rc ? -1 : 1;
}

/* a training run's encoder params start from their init or a checkpoint; an adapter that holds
 * only the saved output (prompt_embeddings) cannot continue: the encoder that made it is gone
 * (PEFT refuses is_trainable=True for a saved prompt-learning adapter too) */
static int pt_init(pc_adapt_ctx *cx, void *state, const char *key, float *data, pc_shape shape, pc_base_lookup base,
                   void *base_ctx, char *err, size_t errlen) {
    (void)cx, (void)state, (void)data, (void)shape;
    if (strcmp(key, ENC "embedding.weight") || !base(base_ctx, "prompt_embeddings", NULL)) return 0;
    return snprintf(err, errlen, "this P-tuning adapter holds only its encoder's output (prompt_embeddings), not the "
                    "prompt encoder, so training cannot continue from it (PEFT refuses too): train from its "
                    "adapter_config.json, or --resume a checkpoint-N directory written by --save-every"), -1;
}

const pc_adapter_method pc_method_p_tuning = {
    .name = "p_tuning",
    .peft_type = "P_TUNING",
    .sites = PC_SITE_EMBED | PC_SITE_POSITIONS | PC_SITE_HEAD,
    .state_size = sizeof(ptuning_state),
    .begin = pt_begin,
    .rewrite = pt_rewrite,
    .not_mergeable = "P-tuning prepends virtual tokens; there is no weight to fold them into "
                     "(run it unmerged: peftc eval/generate without --merge)",
    .virtual_tokens = pt_virtual_tokens,
    .init_from_base = pt_init,
    .save_tensors = pt_save,
};
