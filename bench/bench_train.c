/* bench_train: throughput of a peftc LoRA train step (or of the forward pass) on a Llama.
 *
 *   bench_train --config stories260k|mid|large --backend ref|jit --steps N --warmup W
 *               [--infer [--mode base|unmerged|merged|all]] [--json] [--model PATH] [--seed S]
 *               [--threads T] [--verbose] [--base-dtype f32|bf16]
 *
 * Train: the step graph of `peftc train` (Llama forward + LoRA + cross-entropy, autograd, AdamW
 * with lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01, no clipping); B*S tokens per step.
 * Infer (--infer): the forward graph tokens[B,S] -> logits[B,S,V], no loss, no backward, in three
 * modes: base (no adapter), unmerged (LoRA branches in the graph, frozen A and B with B != 0) and
 * merged (the base graph bound to W + s*B*A). --mode all (the default with --infer) runs the three
 * in this process and checks merged logits against unmerged ones.
 *
 * Configs (bench/README.md): stories260k is the real checkpoint (tied classifier, LoRA r=8
 * alpha=16 on all seven projections); mid and large are random (seeded) with an untied lm_head and
 * LoRA r=8 alpha=16 on q_proj,v_proj. Weights and batches come from a counter-based generator
 * (splitmix64) that bench/torch_llama_lora.py reproduces bit for bit, so both sides start from
 * the same weights and see the same batches.
 *
 * Prints, per mode, the warm-up and timed step count, median/best tokens/s and ms/step, the
 * matmul FLOPs of one step counted on the graph after autograd (sum over matmul nodes of
 * 2*M*N*K*batch: "effective" GFLOP/s), peak RSS (getrusage), the time to build the graph and to
 * compile it for the backend, minor page faults per timed step, and the first/last loss.
 * --json: one JSON line per mode; --verbose: every step's time on stderr. */
#include "backend/exec.h"
#include "frontend/llama.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "passes/adapt.h"
#include "passes/pipeline.h"
#include "passes/passes.h"
#include "runtime/adapter_config.h"
#include "runtime/bf16.h"
#include "runtime/fileio.h"
#include "runtime/llama2c.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifndef PEFTC_BENCH_MODEL
#define PEFTC_BENCH_MODEL "data/stories260K/stories260K.bin"
#endif

/* ---- configs ---- */
static const char *const ALL7[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
static const char *const QV[] = {"q_proj", "v_proj"};

typedef struct {
    const char *name;
    int dim, hidden, layers, heads, kv_heads, vocab, seq_len, tied;
    int B, S, r;
    double alpha;
    const char *const *targets;
    int ntargets;
    int from_file;
} bench_cfg;

static const bench_cfg CONFIGS[] = {
    {"stories260k", 64, 172, 5, 8, 4, 512, 512, 1, 8, 64, 8, 16.0, ALL7, 7, 1},
    {"mid", 256, 688, 4, 4, 4, 512, 128, 0, 8, 128, 8, 16.0, QV, 2, 0},
    {"large", 768, 2048, 12, 12, 12, 8192, 128, 0, 4, 128, 8, 16.0, QV, 2, 0},
};

#define INIT_STD 0.02
#define LR 1e-3

typedef struct {
    const bench_cfg *cfg;
    pc_backend_kind backend;
    int steps, warmup, infer, json, threads, verbose;
    const char *mode; /* train | base | unmerged | merged | all */
    const char *model_path;
    uint64_t seed;
    int bf16; /* --base-dtype bf16: frozen base weights in bf16 (passes/base_bf16.c) */
} opts;

static int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

static long minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* user + system CPU seconds of the process */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* ---- the generator shared with torch_llama_lora.py ---- */
#define GOLDEN 0x9E3779B97F4A7C15ull

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* dst[i] = (2u - 1) * a, u = top 24 bits of splitmix64(seed + (i+1) * golden) / 2^24 */
static void fill_uniform(float *dst, int64_t n, uint64_t seed, double a) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = mix64(seed + (uint64_t)(i + 1) * GOLDEN);
        double u = (double)(z >> 40) * (1.0 / 16777216.0);
        dst[i] = (float)((2.0 * u - 1.0) * a);
    }
}

static uint64_t tensor_seed(const char *name, uint64_t seed) { return fnv1a(name) ^ seed; }

/* tokens/targets of step t (1-based): B windows of S+1 ids */
static void make_batch(int t, int B, int S, int vocab, uint64_t seed, int32_t *tokens, int32_t *targets) {
    uint64_t ds = fnv1a("data") ^ seed, first = (uint64_t)t * (uint64_t)B * (uint64_t)(S + 1);
    for (int b = 0; b < B; b++)
        for (int s = 0; s <= S; s++) {
            uint64_t i = first + (uint64_t)b * (uint64_t)(S + 1) + (uint64_t)s;
            int32_t id = (int32_t)(mix64(ds + (i + 1) * GOLDEN) % (uint64_t)vocab);
            if (s < S) tokens[b * S + s] = id;
            if (s > 0) targets[b * S + s - 1] = id;
        }
}

/* ---- models: the checkpoint, a random one, or a merged copy ---- */
typedef struct {
    pc_l2c_model *file; /* an opened checkpoint, or NULL */
    pc_l2c_model mem;   /* in-memory model (tensors and buf owned) */
    float *buf;
    const pc_l2c_model *m; /* the one to use */
} model_t;

static void model_free(model_t *x) {
    pc_l2c_close(x->file);
    free(x->mem.tensors);
    free(x->buf);
    memset(x, 0, sizeof *x);
}

/* allocates tensors for every spec of c (a tied lm_head shares the embedding) */
static int model_alloc(model_t *x, const pc_l2c_config *c, char *err, size_t errlen) {
    x->mem.cfg = *c;
    x->mem.n_tensors = pc_l2c_tensor_count(c);
    x->mem.tensors = calloc((size_t)x->mem.n_tensors, sizeof *x->mem.tensors);
    if (!x->mem.tensors) return errf(err, errlen, "out of memory");
    pc_l2c_tensor_specs(c, x->mem.tensors);
    int64_t total = 0;
    for (int i = 0; i < x->mem.n_tensors; i++)
        if (!(c->shared_classifier && !strcmp(x->mem.tensors[i].name, "lm_head.weight")))
            total += pc_shape_numel(x->mem.tensors[i].shape);
    if (!(x->buf = malloc((size_t)total * sizeof(float)))) return errf(err, errlen, "out of memory (%lld floats)", (long long)total);
    float *p = x->buf;
    for (int i = 0; i < x->mem.n_tensors; i++) {
        if (c->shared_classifier && !strcmp(x->mem.tensors[i].name, "lm_head.weight")) continue;
        x->mem.tensors[i].data = p;
        p += pc_shape_numel(x->mem.tensors[i].shape);
    }
    if (c->shared_classifier) {
        const pc_l2c_tensor *e = pc_l2c_find(&x->mem, "model.embed_tokens.weight");
        for (int i = 0; i < x->mem.n_tensors; i++)
            if (!strcmp(x->mem.tensors[i].name, "lm_head.weight")) x->mem.tensors[i].data = e->data;
    }
    x->m = &x->mem;
    return 0;
}

/* norms 1, every matrix U(-a, a) with standard deviation INIT_STD */
static int model_random(model_t *x, const bench_cfg *bc, uint64_t seed, char *err, size_t errlen) {
    pc_l2c_config c = {bc->dim, bc->hidden, bc->layers, bc->heads, bc->kv_heads, bc->vocab, bc->seq_len, bc->tied};
    if (model_alloc(x, &c, err, errlen)) return -1;
    for (int i = 0; i < x->mem.n_tensors; i++) {
        pc_l2c_tensor *t = &x->mem.tensors[i];
        if (c.shared_classifier && !strcmp(t->name, "lm_head.weight")) continue;
        float *d = (float *)t->data;
        int64_t n = pc_shape_numel(t->shape);
        if (t->shape.rank == 1)
            for (int64_t j = 0; j < n; j++) d[j] = 1.0f;
        else
            fill_uniform(d, n, tensor_seed(t->name, seed), INIT_STD * sqrt(3.0));
    }
    return 0;
}

static int is_target(const bench_cfg *bc, const char *module) {
    const char *dot = strrchr(module, '.');
    const char *last = dot ? dot + 1 : module;
    for (int i = 0; i < bc->ntargets; i++)
        if (!strcmp(last, bc->targets[i])) return 1;
    return 0;
}

/* the inference adapter's A [r,in] or B [out,r] (B != 0: a trained-looking adapter) */
static void adapter_fill(float *d, const char *key, pc_shape s, uint64_t seed) {
    int is_a = strstr(key, "lora_A.") != NULL;
    double a = is_a ? 1.0 / sqrt((double)s.dim[1]) : INIT_STD * sqrt(3.0);
    fill_uniform(d, pc_shape_numel(s), tensor_seed(key, seed), a);
}

/* a copy of src with W += s * B A for every targeted module (the adapter of adapter_fill) */
static int model_merged(model_t *x, const pc_l2c_model *src, const bench_cfg *bc, uint64_t seed, char *err,
                        size_t errlen) {
    if (model_alloc(x, &src->cfg, err, errlen)) return -1;
    for (int i = 0; i < x->mem.n_tensors; i++) {
        pc_l2c_tensor *t = &x->mem.tensors[i];
        if (src->cfg.shared_classifier && !strcmp(t->name, "lm_head.weight")) continue;
        const pc_l2c_tensor *s = pc_l2c_find(src, t->name);
        if (!s || !pc_shape_eq(s->shape, t->shape)) return errf(err, errlen, "merge: no tensor %s", t->name);
        memcpy((float *)t->data, s->data, (size_t)pc_shape_numel(t->shape) * sizeof(float));
    }
    const int r = bc->r;
    const double scale = bc->alpha / r;
    for (int i = 0; i < x->mem.n_tensors; i++) {
        pc_l2c_tensor *t = &x->mem.tensors[i];
        char module[PC_L2C_NAME_MAX], ka[256], kb[256];
        size_t len = strlen(t->name);
        if (t->shape.rank != 2 || len < 8 || strcmp(t->name + len - 7, ".weight")) continue;
        memcpy(module, t->name, len - 7);
        module[len - 7] = 0;
        if (!strcmp(module, "model.embed_tokens") || !strcmp(module, "lm_head") || !is_target(bc, module)) continue;
        int64_t out = t->shape.dim[0], in = t->shape.dim[1];
        if (pc_adapter_key(ka, sizeof ka, module, NULL, "lora_A.weight") ||
            pc_adapter_key(kb, sizeof kb, module, NULL, "lora_B.weight"))
            return errf(err, errlen, "merge: module name too long");
        float *A = malloc((size_t)(r * in) * sizeof *A), *B = malloc((size_t)(out * r) * sizeof *B);
        if (!A || !B) {
            free(A);
            free(B);
            return errf(err, errlen, "out of memory");
        }
        adapter_fill(A, ka, pc_shape_make(2, (int64_t[]){r, in}), seed);
        adapter_fill(B, kb, pc_shape_make(2, (int64_t[]){out, r}), seed);
        float *W = (float *)t->data;
        for (int64_t o = 0; o < out; o++)
            for (int k = 0; k < r; k++) {
                float sb = (float)(scale * B[o * r + k]);
                for (int64_t j = 0; j < in; j++) W[o * in + j] += sb * A[k * in + j];
            }
        free(A);
        free(B);
    }
    return 0;
}

/* ---- graphs ---- */
static pc_adapter_config *lora_config(const bench_cfg *bc) {
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LORA);
    if (!c) return NULL;
    c->r = bc->r;
    c->lora.lora_alpha = (pc_num){.v = bc->alpha, .is_int = false};
    c->lora.lora_dropout = (pc_num){.v = 0.0, .is_int = false};
    if (pc_spec_set_list(&c->target_modules, bc->targets, (size_t)bc->ntargets)) {
        pc_adapter_config_free(c);
        return NULL;
    }
    return c;
}

/* train: the step graph with LoRA through the pipeline peftc train runs; base/merged: forward;
 * unmerged: forward + LoRA */
static int is_base_key(void *ctx, const char *key);

static pc_graph *build_graph(const bench_cfg *bc, const pc_llama_config *lc, const char *mode, const pc_l2c_model *m,
                             int bf16, char *err, size_t errlen) {
    int train = !strcmp(mode, "train"), lora = train || !strcmp(mode, "unmerged");
    pc_build_req req = {.task = train ? PC_TASK_LM : PC_TASK_FORWARD, .batch = bc->B, .seq = bc->S,
                        .mode = train ? PC_ADAPT_TRAIN : PC_ADAPT_EVAL};
    pc_adapter_config *ac = lora ? lora_config(bc) : NULL;
    pc_registry *reg = lora ? pc_registry_new() : NULL;
    pc_adapt_ctx *cx = NULL;
    if (lora && (!ac || !reg)) {
        pc_adapter_config_free(ac);
        pc_registry_free(reg);
        errf(err, errlen, "out of memory");
        return NULL;
    }
    if (lora) cx = pc_adapt_new(pc_registry_find(reg, "lora"), ac, "bench", req.mode, train, NULL, err, errlen);
    pc_site_hook hook = {pc_adapt_site, cx};
    pc_graph *g = lora && !cx ? NULL : pc_llama_build(lc, &req, lora ? &hook : NULL, err, errlen);
    int rc = g ? 0 : -1;
    if (!rc && lora) rc = pc_adapt_finish(cx, g, err, errlen);
    if (!rc && bf16) rc = pc_base_bf16_apply(&g, is_base_key, (void *)m, NULL, err, errlen);
    if (!rc && train) rc = pc_run_pipeline(&g, PC_TRAIN_PASSES, NULL, err, errlen);
    pc_adapt_free(cx);
    pc_adapter_config_free(ac);
    pc_registry_free(reg);
    if (rc) {
        pc_graph_free(g);
        return NULL;
    }
    err[0] = 0; /* warnings of the passes */
    return g;
}

/* sum over matmul nodes of 2 * numel(out) * K */
static double graph_flop(const pc_graph *g) {
    double f = 0;
    for (pc_val i = 0; i < g->nvals; i++) {
        const pc_value *v = &g->vals[i];
        if (v->op != PC_OP_matmul) continue;
        const pc_value *a = &g->vals[v->in[0]];
        int ta = (int)pc_attr_i(g, i, "transpose_a"), ra = a->shape.rank;
        int64_t K = ta ? a->shape.dim[ra - 2] : a->shape.dim[ra - 1];
        f += 2.0 * (double)pc_shape_numel(v->shape) * (double)K;
    }
    return f;
}

/* ---- one benchmark run (one mode) ---- */
typedef struct {
    double *unmerged_logits; /* kept for the merged check (mode all) */
    int64_t nlogits;
} shared_state;

typedef struct {
    pc_graph *g;
    pc_exec *e;
    pc_store store;
    float **adapter; /* inference adapter buffers (unmerged) */
    int nadapter;
    int32_t *tokens, *targets;
    pc_adamw_hp hp;
    int32_t seed_in;
    double *times;
    model_t merged;
} run_t;

static void run_free(run_t *x) {
    pc_exec_free(x->e);
    pc_store_free(&x->store);
    for (int i = 0; i < x->nadapter; i++) free(x->adapter[i]);
    free(x->adapter);
    pc_graph_free(x->g);
    free(x->tokens);
    free(x->targets);
    free(x->times);
    model_free(&x->merged);
}

static int is_base_key(void *ctx, const char *key) { return pc_l2c_find(ctx, key) != NULL; }

static int bind_all(run_t *x, const pc_l2c_model *m, int train, uint64_t seed, char *err, size_t errlen) {
    const pc_graph *g = x->g;
    if (train && pc_store_init(&x->store, g, is_base_key, (void *)m, NULL, 0, 0, err, errlen)) return -1;
    if (!(x->adapter = calloc((size_t)g->nvals, sizeof *x->adapter))) return errf(err, errlen, "out of memory");
    for (pc_val i = 0; i < g->nvals; i++) {
        const pc_value *v = &g->vals[i];
        void *data = NULL;
        if (v->op == PC_OP_param || v->op == PC_OP_state) {
            const pc_l2c_tensor *t = v->key ? pc_l2c_find(m, v->key) : NULL;
            pc_store_entry *se = v->key ? pc_store_find(&x->store, v->key) : NULL;
            if (t) {
                if (!pc_shape_eq(t->shape, v->shape)) return errf(err, errlen, "bind: %s: shape mismatch", v->key);
                data = (void *)t->data; /* frozen: never written */
                if (v->dtype == PC_BF16) { /* its bf16 copy, made once */
                    size_t n = (size_t)pc_shape_numel(v->shape);
                    uint16_t *h = malloc(n * sizeof *h + 64);
                    if (!h) return errf(err, errlen, "out of memory");
                    pc_f32_to_bf16_n(t->data, h, n);
                    x->adapter[x->nadapter++] = (float *)(void *)h;
                    data = h;
                    /* a training run reads the f32 original no more: its pages go back, as
                     * peftc train's do (drivers/bf16_weights.h); the base modes reuse it */
                    if (train) pc_pages_drop(t->data, n * sizeof(float));
                }
            } else if (se) {
                data = se->data;
            } else if (v->op == PC_OP_param && v->key && (v->flags & PC_FROZEN)) {
                float *d = malloc((size_t)pc_shape_numel(v->shape) * sizeof *d);
                if (!d) return errf(err, errlen, "out of memory");
                adapter_fill(d, v->key, v->shape, seed);
                x->adapter[x->nadapter++] = d;
                data = d;
            } else {
                return errf(err, errlen, "bind: nothing to bind to %%%s (key %s)", v->name, v->key ? v->key : "-");
            }
        } else if (v->op == PC_OP_input) {
            if (!strcmp(v->name, "tokens")) data = x->tokens;
            else if (!strcmp(v->name, "targets")) data = x->targets;
            else if (!strcmp(v->name, "hp")) data = &x->hp;
            else if (!strcmp(v->name, "seed")) data = &x->seed_in;
            else return errf(err, errlen, "bind: unknown input %%%s", v->name);
        } else {
            continue;
        }
        if (pc_exec_bind(x->e, i, data)) return errf(err, errlen, "bind: the backend refused %%%s", v->name);
    }
    return 0;
}

/* mean cross-entropy of logits [N,V] against targets (double accumulation) */
static double cross_entropy(const float *logits, const int32_t *targets, int64_t N, int V) {
    double sum = 0;
    for (int64_t i = 0; i < N; i++) {
        const float *l = logits + i * V;
        double mx = l[0];
        for (int j = 1; j < V; j++) mx = l[j] > mx ? l[j] : mx;
        double se = 0;
        for (int j = 0; j < V; j++) se += exp(l[j] - mx);
        sum += mx + log(se) - l[targets[i]];
    }
    return sum / (double)N;
}

static int run_mode(const opts *o, const model_t *base, const char *mode, shared_state *sh, char *err, size_t errlen) {
    const bench_cfg *bc = o->cfg;
    const int train = !strcmp(mode, "train");
    const int B = bc->B, S = bc->S, V = bc->vocab;
    run_t x;
    memset(&x, 0, sizeof x);
    int rc = -1;
    pc_llama_config lc = pc_llama_config_from_l2c(&base->m->cfg);
    const pc_l2c_model *m = base->m;
    double t0 = now_s();
    if (!strcmp(mode, "merged")) {
        if (model_merged(&x.merged, base->m, bc, o->seed, err, errlen)) goto done;
        m = x.merged.m;
    }
    double merge_s = now_s() - t0;
    t0 = now_s();
    if (!(x.g = build_graph(bc, &lc, mode, m, o->bf16, err, errlen))) goto done;
    double graph_s = now_s() - t0;
    double gflop = graph_flop(x.g) * 1e-9;
    pc_exec_opts eo = {.kind = o->backend, .threads = o->threads};
    t0 = now_s();
    if (!(x.e = pc_exec_new(x.g, &eo, err, errlen))) goto done;
    double exec_s = now_s() - t0;
    x.tokens = malloc((size_t)B * (size_t)S * sizeof *x.tokens);
    x.targets = malloc((size_t)B * (size_t)S * sizeof *x.targets);
    x.times = malloc((size_t)(o->steps > 0 ? o->steps : 1) * sizeof *x.times);
    if (!x.tokens || !x.targets || !x.times) {
        errf(err, errlen, "out of memory");
        goto done;
    }
    t0 = now_s();
    if (bind_all(&x, m, train, o->seed, err, errlen)) goto done;
    double bind_s = now_s() - t0;
    int64_t params = 0, trainable = 0;
    for (pc_val i = 0; i < x.g->nvals; i++)
        if (x.g->vals[i].op == PC_OP_param) {
            params += pc_shape_numel(x.g->vals[i].shape);
            if (x.g->vals[i].flags & PC_TRAINABLE) trainable += pc_shape_numel(x.g->vals[i].shape);
        }
    pc_val out = PC_NONE;
    for (int i = 0; i < x.g->noutputs; i++) {
        const pc_value *v = pc_v(x.g, x.g->outputs[i]);
        if (train ? (v->flags & PC_LOSS) != 0 : !strcmp(v->name, "logits")) out = x.g->outputs[i];
    }
    if (out == PC_NONE) {
        errf(err, errlen, "the graph has no %s output", train ? "loss" : "logits");
        goto done;
    }
    double loss_first = NAN, loss_last = NAN, first_ms = 0, diff = -1;
    int n = 0;
    long faults0 = 0;
    double cpu0 = 0, wall0 = 0;
    for (int t = 1; t <= o->warmup + o->steps; t++) {
        make_batch(t, B, S, V, o->seed, x.tokens, x.targets);
        if (t == o->warmup + 1) {
            faults0 = minor_faults();
            cpu0 = cpu_s();
            wall0 = now_s();
        }
        x.hp = (pc_adamw_hp){.lr = (float)LR, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                             .step = (float)t};
        x.seed_in = t;
        double ts = now_s();
        if (pc_exec_run(x.e, err, errlen)) goto done;
        if (train && pc_exec_apply_updates(x.e)) {
            errf(err, errlen, "step %d: applying the updates failed", t);
            goto done;
        }
        double dt = now_s() - ts;
        if (t == 1) first_ms = dt * 1e3;
        const float *res = pc_exec_data(x.e, out);
        if (!res) {
            errf(err, errlen, "step %d: no output data", t);
            goto done;
        }
        if (train) {
            loss_last = res[0];
            if (t == 1) loss_first = res[0];
            if (!isfinite(loss_last)) {
                errf(err, errlen, "step %d: the loss is %g", t, loss_last);
                goto done;
            }
        } else if (t == 1) {
            int64_t nl = (int64_t)B * S * V;
            loss_first = loss_last = cross_entropy(res, x.targets, (int64_t)B * S, V);
            if (!strcmp(mode, "unmerged") && sh) {
                free(sh->unmerged_logits);
                if ((sh->unmerged_logits = malloc((size_t)nl * sizeof(double)))) {
                    for (int64_t i = 0; i < nl; i++) sh->unmerged_logits[i] = res[i];
                    sh->nlogits = nl;
                }
            } else if (!strcmp(mode, "merged") && sh && sh->unmerged_logits && sh->nlogits == nl) {
                diff = 0;
                for (int64_t i = 0; i < nl; i++) {
                    double d = fabs(res[i] - sh->unmerged_logits[i]);
                    if (d > diff) diff = d;
                }
            }
        }
        if (t > o->warmup) x.times[n++] = dt;
        if (o->verbose) fprintf(stderr, "bench_train: %s %s step %d: %.3f ms\n", bc->name, mode, t, dt * 1e3);
    }
    double faults = (double)(minor_faults() - faults0) / (n ? n : 1);
    /* CPU time / wall time over the timed steps (batch generation included on both sides of the
     * ratio): well below 1 means the thread was descheduled or its vCPU shared (contention) */
    double cpu_util = (cpu_s() - cpu0) / (now_s() - wall0);
    double *order = malloc((size_t)(n ? n : 1) * sizeof *order); /* step times in run order */
    if (order) memcpy(order, x.times, (size_t)n * sizeof *order);
    qsort(x.times, (size_t)n, sizeof *x.times, cmp_d);
    double med = n ? x.times[n / 2] : NAN, best = n ? x.times[0] : NAN, tok = (double)B * S;
    const char *bname = pc_backend_name(o->backend);
    if (o->json) {
        printf("{\"bench\":\"peftc\",\"base_dtype\":\"%s\",\"config\":\"%s\",\"backend\":\"%s\",\"mode\":\"%s\",\"threads\":%d,\"B\":%d,\"S\":%d,"
               "\"tokens_per_step\":%d,\"steps\":%d,\"warmup\":%d,\"params\":%lld,\"trainable\":%lld,"
               "\"tokens_per_s_median\":%.1f,\"tokens_per_s_best\":%.1f,\"ms_per_step_median\":%.3f,"
               "\"ms_per_step_best\":%.3f,\"first_step_ms\":%.3f,\"gflop_per_step\":%.4f,\"gflops\":%.2f,"
               "\"gflops_best\":%.2f,\"peak_rss_mib\":%.1f,\"compile_s\":%.4f,\"graph_s\":%.4f,\"exec_new_s\":%.4f,"
               "\"bind_s\":%.4f,\"merge_s\":%.4f,\"minor_faults_per_step\":%.1f,\"cpu_util\":%.3f,\"loss_first\":%.7g,\"loss_last\":%.7g",
               o->bf16 ? "bf16" : "f32", bc->name, bname, mode, o->threads, B, S, B * S, o->steps, o->warmup, (long long)params,
               (long long)trainable, tok / med, tok / best, med * 1e3, best * 1e3, first_ms, gflop, gflop / med,
               gflop / best, peak_rss_mib(), graph_s + exec_s, graph_s, exec_s, bind_s, merge_s, faults, cpu_util,
               loss_first, loss_last);
        if (diff >= 0) printf(",\"max_abs_diff_vs_unmerged\":%.3g", diff);
        printf(",\"ms_steps\":[");
        for (int i = 0; order && i < n; i++) printf("%s%.3f", i ? "," : "", order[i] * 1e3);
        printf("]}\n");
    } else {
        printf("peftc %s %s %s: %.0f tok/s (best %.0f), %.2f ms/step, %.3f GFLOP/step, %.1f GFLOP/s, loss %.6f -> %.6f, "
               "peak RSS %.0f MiB, compile %.3f s (graph %.3f + backend %.3f), bind %.3f s",
               bc->name, bname, mode, tok / med, tok / best, med * 1e3, gflop, gflop / med, loss_first, loss_last,
               peak_rss_mib(), graph_s + exec_s, graph_s, exec_s, bind_s);
        if (diff >= 0) printf(", merged vs unmerged logits max |diff| %.3g", diff);
        printf("\n");
    }
    fflush(stdout);
    free(order);
    rc = 0;
done:
    run_free(&x);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_train --config stories260k|mid|large --backend ref|jit --steps N --warmup W\n"
               "                   [--infer [--mode base|unmerged|merged|all]] [--json] [--model PATH]\n"
               "                   [--seed S] [--threads T] [--verbose] [--base-dtype f32|bf16]\n"
               "--base-dtype bf16: the frozen base weights in bf16 (peftc train --base-dtype bf16); a train\n"
               "run gives the f32 originals' pages back after binding, as peftc train does\n");
}

int main(int argc, char **argv) {
    opts o = {.cfg = &CONFIGS[0], .backend = PC_BACKEND_REF, .steps = 10, .warmup = 3, .threads = 1,
              .model_path = PEFTC_BENCH_MODEL, .seed = 1234};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) o.json = 1;
        else if (!strcmp(a, "--verbose")) o.verbose = 1;
        else if (!strcmp(a, "--infer")) o.infer = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!v) { usage(stderr); return 2; }
        else if (!strcmp(a, "--config")) {
            o.cfg = NULL;
            for (size_t k = 0; k < sizeof CONFIGS / sizeof CONFIGS[0]; k++)
                if (!strcmp(v, CONFIGS[k].name)) o.cfg = &CONFIGS[k];
            if (!o.cfg) { fprintf(stderr, "bench_train: unknown config '%s'\n", v); return 2; }
            i++;
        } else if (!strcmp(a, "--backend")) {
            if (pc_backend_parse(v, &o.backend)) { fprintf(stderr, "bench_train: unknown backend '%s'\n", v); return 2; }
            i++;
        } else if (!strcmp(a, "--steps")) o.steps = atoi(v), i++;
        else if (!strcmp(a, "--warmup")) o.warmup = atoi(v), i++;
        else if (!strcmp(a, "--mode")) o.mode = v, i++;
        else if (!strcmp(a, "--model")) o.model_path = v, i++;
        else if (!strcmp(a, "--seed")) o.seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--threads")) o.threads = atoi(v), i++;
        else if (!strcmp(a, "--base-dtype") && v && (!strcmp(v, "bf16") || !strcmp(v, "f32"))) o.bf16 = !strcmp(v, "bf16"), i++;
        else { usage(stderr); return 2; }
    }
    if (o.steps < 1 || o.warmup < 0 || o.threads < 1) { fprintf(stderr, "bench_train: --steps >= 1, --warmup >= 0, --threads >= 1\n"); return 2; }
    const char *modes_all[] = {"base", "unmerged", "merged"}, *modes_one[1];
    const char **modes = modes_one;
    int nmodes = 1;
    if (!o.infer) {
        if (o.mode && strcmp(o.mode, "train")) { fprintf(stderr, "bench_train: --mode %s needs --infer\n", o.mode); return 2; }
        modes_one[0] = "train";
    } else if (!o.mode || !strcmp(o.mode, "all")) {
        modes = modes_all;
        nmodes = 3;
    } else if (!strcmp(o.mode, "base") || !strcmp(o.mode, "unmerged") || !strcmp(o.mode, "merged")) {
        modes_one[0] = o.mode;
    } else {
        fprintf(stderr, "bench_train: unknown --mode '%s'\n", o.mode);
        return 2;
    }

    char err[4096] = "";
    model_t base;
    memset(&base, 0, sizeof base);
    int rc = 1;
    if (o.cfg->from_file) {
        if (!(base.file = pc_l2c_open(o.model_path, err, sizeof err))) goto done;
        const pc_l2c_config *c = &base.file->cfg;
        if (c->dim != o.cfg->dim || c->hidden_dim != o.cfg->hidden || c->n_layers != o.cfg->layers ||
            c->n_heads != o.cfg->heads || c->n_kv_heads != o.cfg->kv_heads || c->vocab_size != o.cfg->vocab) {
            errf(err, sizeof err, "%s is not the %s checkpoint", o.model_path, o.cfg->name);
            goto done;
        }
        base.m = base.file;
    } else if (model_random(&base, o.cfg, o.seed, err, sizeof err)) {
        goto done;
    }
    shared_state sh = {0};
    rc = 0;
    for (int i = 0; i < nmodes && !rc; i++) rc = run_mode(&o, &base, modes[i], &sh, err, sizeof err) ? 1 : 0;
    free(sh.unmerged_logits);
done:
    if (rc) fprintf(stderr, "bench_train: %s\n", err);
    model_free(&base);
    return rc;
}
