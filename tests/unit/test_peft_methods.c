/* IA3 and prompt tuning against adapter directories written by Hugging Face PEFT
 * (tests/golden/gen_peft_ia3_prompt.py):
 *   tests/data/peft_ia3_stories260k/     15 ia3_l vectors (k/v scale outputs, down scales inputs)
 *   tests/data/peft_prompt_stories260k/  prompt_embeddings [4,64]
 * Forward (logits, loss) and every adapter gradient on the reference interpreter and the JIT,
 * IA3's merge vs PEFT's merge_and_unload, prompt tuning refusing to merge, and generation
 * feeding the virtual tokens first (decode logits = the LM graph's). */
#include "cu_main.h"
#include "compare.h"
#include "backend/exec.h"
#include "drivers/decode.h"
#include "drivers/merge.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "passes/pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define IA3_DIR PEFTC_SOURCE_DIR "/tests/data/peft_ia3_stories260k"
#define PROMPT_DIR PEFTC_SOURCE_DIR "/tests/data/peft_prompt_stories260k"

enum { B = 2, S = 16, V = 512, N = B * S, P = 4, D = 64 };

/* a session on an adapter directory, one LM graph [2,16] with logits, its store, the fixture */
typedef struct {
    pc_session s;
    pc_st_file *ex;
    pc_graph *g;
    pc_store store;
    int32_t tokens[N], targets[N];
} fixture;

static int fx_graph(fixture *x, pc_adapt_mode mode, bool trainable) {
    char err[2048];
    pc_build_req req = {.task = PC_TASK_LM, .batch = B, .seq = S, .output_logits = true, .mode = mode};
    if (!(x->g = pc_session_build(&x->s, &req, trainable, err, sizeof err))) { fprintf(stderr, "build: %s\n", err); return -1; }
    if (trainable && pc_run_pipeline(&x->g, "autograd", NULL, err, sizeof err)) { fprintf(stderr, "autograd: %s\n", err); return -1; }
    if (pc_session_store(&x->s, x->g, &x->store, NULL, 0, err, sizeof err)) { fprintf(stderr, "store: %s\n", err); return -1; }
    return 0;
}

static int fx_open(fixture *x, const char *dir, pc_adapt_mode mode, bool trainable, bool build) {
    char err[2048], path[1024];
    memset(x, 0, sizeof *x);
    if (pc_session_open(&x->s, NULL, MODEL, NULL, dir, err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (!(x->ex = pc_st_open(path, err, sizeof err))) { fprintf(stderr, "%s\n", err); return -1; }
    const pc_st_tensor *tk = pc_st_find(x->ex, "tokens"), *tg = pc_st_find(x->ex, "targets");
    if (!tk || !tg || tk->dtype != PC_I32 || tg->dtype != PC_I32 || pc_shape_numel(tk->shape) != N ||
        pc_shape_numel(tg->shape) != N) {
        fprintf(stderr, "%s: bad tokens/targets\n", path);
        return -1;
    }
    memcpy(x->tokens, tk->data, sizeof x->tokens);
    memcpy(x->targets, tg->data, sizeof x->targets);
    return build ? fx_graph(x, mode, trainable) : 0;
}

static void fx_close(fixture *x) {
    pc_store_free(&x->store);
    pc_graph_free(x->g);
    pc_st_close(x->ex);
    pc_session_close(&x->s);
}

/* an executor of x->g on `kind` with base, store, tokens and targets bound, run once */
static pc_exec *fx_run(fixture *x, pc_backend_kind kind) {
    char err[2048] = "";
    pc_exec *r = pc_exec_new(x->g, &(pc_exec_opts){.kind = kind}, err, sizeof err);
    if (!r) { fprintf(stderr, "exec_new: %s\n", err); return NULL; }
    if (pc_session_bind_base(&x->s, r, x->g, false, err, sizeof err) || pc_store_bind(&x->store, r) ||
        pc_exec_bind(r, pc_lookup(x->g, "tokens"), x->tokens) || pc_exec_bind(r, pc_lookup(x->g, "targets"), x->targets) ||
        pc_exec_run(r, err, sizeof err)) {
        fprintf(stderr, "bind/run: %s\n", err);
        pc_exec_free(r);
        return NULL;
    }
    return r;
}



static pc_val output_where(const pc_graph *g, bool loss) {
    for (int i = 0; i < g->noutputs; i++) {
        const pc_value *o = pc_v(g, g->outputs[i]);
        if (loss ? (o->flags & PC_LOSS) != 0 : (!(o->flags & PC_LOSS) && o->shape.rank == 3)) return g->outputs[i];
    }
    return PC_NONE;
}

/* the logits output, checked to be [2,16,512] */
static const float *logits_of(const fixture *x, const pc_exec *r) {
    pc_val lv = output_where(x->g, false);
    if (lv == PC_NONE || !pc_shape_eq(pc_val_shape(x->g, lv), PC_SHAPE(B, S, V))) return NULL;
    return pc_exec_data(r, lv);
}

static double logits_vs(const fixture *x, const pc_exec *r, const char *key) {
    const float *l = logits_of(x, r);
    const pc_st_tensor *w = pc_st_find(x->ex, key);
    if (!l || !w || pc_shape_numel(w->shape) != (int64_t)N * V) return INFINITY;
    return max_abs_diff(l, w->data, (int64_t)N * V);
}

/* loss, logits and the gradient of every trainable adapter tensor vs expected.safetensors */
static void check_forward_backward(fixture *x, pc_backend_kind kind, int want_grads) {
    pc_exec *r = fx_run(x, kind);
    CU_ASSERT_FATAL(r != NULL);
    const char *bk = pc_backend_name(kind);
    pc_val lv = output_where(x->g, true);
    const pc_st_tensor *wl = pc_st_find(x->ex, "loss");
    CU_ASSERT_FATAL(lv != PC_NONE && wl != NULL);
    float loss = *(const float *)pc_exec_data(r, lv), want = *(const float *)wl->data;
    double le = logits_vs(x, r, "logits");
    printf("\n    [%s] loss %.7f (PEFT %.7f, rel %.2e), logits max |diff| %.2e\n", bk, loss, want,
           fabs(loss - want) / fabs(want), le);
    CU_ASSERT(fabs(loss - want) <= 1e-5 * fabs(want));
    CU_ASSERT(le <= 1e-4);
    double worst = 0, worst_abs = 0;
    int checked = 0;
    for (int i = 0; i < x->store.n; i++) {
        const pc_store_entry *e = &x->store.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        char gname[700], gkey[700];
        snprintf(gname, sizeof gname, "grad.%s", pc_val_name(x->g, e->v));
        snprintf(gkey, sizeof gkey, "grad.%s", e->key);
        pc_val gv = pc_lookup(x->g, gname);
        const pc_st_tensor *wg = pc_st_find(x->ex, gkey);
        CU_ASSERT_FATAL(gv != PC_NONE && (pc_v(x->g, gv)->flags & PC_OUTPUT) && wg != NULL);
        CU_ASSERT_FATAL(pc_shape_numel(wg->shape) == e->n && pc_shape_eq(pc_val_shape(x->g, gv), e->shape));
        double d = max_abs_diff(pc_exec_data(r, gv), wg->data, e->n), scale = max_abs(wg->data, e->n);
        double rel = d / (scale > 1 ? scale : 1); /* 1e-4 x max|g|, or 1e-4 abs */
        if (rel > worst) worst = rel;
        if (d > worst_abs) worst_abs = d;
        checked++;
    }
    printf("    [%s] %d gradients: max |diff| %.2e, worst rel (to max(1, max|g|)) %.2e\n", bk, checked, worst_abs, worst);
    CU_ASSERT_EQUAL(checked, want_grads);
    CU_ASSERT(worst <= 1e-4);
    pc_exec_free(r);
}

/* 1. IA3: loss, logits and the 15 ia3_l gradients (ref and jit) */
static void test_ia3_loss_and_grads(void) {
    fixture x;
    if (fx_open(&x, IA3_DIR, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); fx_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_IA3);
    int n = 0, loaded = 0;
    for (int i = 0; i < x.store.n; i++) {
        const pc_store_entry *e = &x.store.e[i];
        if (!(e->flags & PC_TRAINABLE)) continue;
        n++;
        const pc_st_tensor *f = pc_st_find(x.s.adapter.weights, e->key);
        CU_ASSERT(f != NULL && strstr(e->key, ".ia3_l") != NULL);
        if (e->loaded && f && f->nbytes == (size_t)e->n * sizeof(float) && !memcmp(f->data, e->data, f->nbytes)) loaded++;
    }
    CU_ASSERT_EQUAL(n, 15);
    CU_ASSERT_EQUAL(loaded, 15); /* the trainable vectors start from the file's values */
    check_forward_backward(&x, PC_BACKEND_REF, 15);
    check_forward_backward(&x, PC_BACKEND_JIT, 15);
    fx_close(&x);
}

/* 2. IA3 merge vs merge_and_unload, and merged logits = unmerged logits */
static void test_ia3_merge(void) {
    char err[2048];
    fixture m, u;
    if (fx_open(&m, IA3_DIR, PC_ADAPT_EVAL, false, false)) { CU_FAIL("setup"); fx_close(&m); return; }
    int nmod = 0;
    int rc = pc_session_merge(&m.s, &nmod, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(m.s.merged);
    CU_ASSERT_EQUAL(nmod, 15);
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < pc_st_count(m.ex); i++) {
        const pc_st_tensor *t = pc_st_get(m.ex, i);
        if (strncmp(t->name, "merged.", 7) || !strcmp(t->name, "merged_logits")) continue;
        pc_shape ms;
        const float *w = pc_model_weight(&m.s.model, t->name + 7, &ms);
        CU_ASSERT_FATAL(w != NULL && pc_shape_eq(ms, t->shape));
        double e = max_abs_diff(w, t->data, pc_shape_numel(t->shape));
        if (e > worst) worst = e;
        const float *base = m.s.model.family->weight(&m.s.model, t->name + 7, NULL);
        CU_ASSERT(base && max_abs_diff(base, t->data, pc_shape_numel(t->shape)) > 1e-3); /* really changed */
        checked++;
    }
    printf("\n    %d merged modules; %d merged weights (layers 0, 4) max |diff| %.2e\n", nmod, checked, worst);
    CU_ASSERT_EQUAL(checked, 6);
    CU_ASSERT(worst <= 1e-6);
    /* the merged model's graph: no adapter params */
    CU_ASSERT_EQUAL_FATAL(fx_graph(&m, PC_ADAPT_EVAL, false), 0);
    CU_ASSERT_EQUAL(m.store.n, 0);
    pc_exec *rm = fx_run(&m, PC_BACKEND_REF);
    CU_ASSERT_FATAL(rm != NULL);
    double em = logits_vs(&m, rm, "merged_logits");
    /* the unmerged EVAL graph */
    pc_exec *ru = NULL;
    if (fx_open(&u, IA3_DIR, PC_ADAPT_EVAL, false, true) == 0) ru = fx_run(&u, PC_BACKEND_REF);
    CU_ASSERT(ru != NULL);
    if (ru) {
        double eu = logits_vs(&u, ru, "logits");
        const float *lm = logits_of(&m, rm), *lu = logits_of(&u, ru);
        double mu = lm && lu ? max_abs_diff(lm, lu, (int64_t)N * V) : INFINITY;
        printf("    logits max |diff|: merged vs PEFT merged %.2e, unmerged (eval) vs PEFT %.2e, merged vs unmerged %.2e\n",
               em, eu, mu);
        CU_ASSERT(eu <= 1e-4);
        CU_ASSERT(mu <= 1e-4);
    }
    CU_ASSERT(em <= 1e-4);
    pc_exec_free(ru);
    pc_exec_free(rm);
    fx_close(&u);
    fx_close(&m);
}

/* 3. prompt tuning: loss, logits at the 16 real positions and the table's gradient */
static void test_prompt_loss_and_grad(void) {
    fixture x;
    if (fx_open(&x, PROMPT_DIR, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); fx_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_PROMPT_TUNING);
    CU_ASSERT_EQUAL(pc_session_virtual_tokens(&x.s), P);
    const pc_store_entry *e = pc_store_find(&x.store, "prompt_embeddings");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT(e->flags & PC_TRAINABLE);
    CU_ASSERT(e->loaded);
    CU_ASSERT(pc_shape_eq(e->shape, PC_SHAPE(P, D)));
    const pc_st_tensor *f = pc_st_find(x.s.adapter.weights, "prompt_embeddings");
    CU_ASSERT(f && f->nbytes == sizeof(float) * P * D && !memcmp(f->data, e->data, f->nbytes));
    pc_val lv = output_where(x.g, false);
    CU_ASSERT(lv != PC_NONE && pc_shape_eq(pc_val_shape(x.g, lv), PC_SHAPE(B, S, V)));
    check_forward_backward(&x, PC_BACKEND_REF, 1);
    check_forward_backward(&x, PC_BACKEND_JIT, 1);
    fx_close(&x);
}

/* 4. prompt tuning has no merge rule */
static void test_prompt_not_mergeable(void) {
    char err[2048] = "";
    pc_session s;
    int rc = pc_session_open(&s, NULL, MODEL, NULL, PROMPT_DIR, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    int nmod = -7;
    rc = pc_session_merge(&s, &nmod, err, sizeof err);
    printf("\n    merge: rc %d, \"%s\"\n", rc, err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(strstr(err, "cannot be merged") != NULL);
    CU_ASSERT_FALSE(s.merged);
    pc_session_close(&s);
}

/* 5. generation feeds the 4 virtual tokens first (ids 512..515 at positions 0..3): its logits
 * for row 0 equal the LM graph's */
static void test_prompt_decode_matches_lm(void) {
    char err[2048] = "";
    fixture x;
    if (fx_open(&x, PROMPT_DIR, PC_ADAPT_EVAL, false, true)) { CU_FAIL("setup"); fx_close(&x); return; }
    pc_exec *r = fx_run(&x, PC_BACKEND_REF);
    CU_ASSERT_FATAL(r != NULL);
    const float *lm = logits_of(&x, r);
    CU_ASSERT_FATAL(lm != NULL);
    const pc_st_tensor *want = pc_st_find(x.ex, "logits");
    CU_ASSERT_FATAL(want != NULL);
    static const pc_backend_kind kinds[2] = {PC_BACKEND_REF, PC_BACKEND_JIT};
    float *logits = calloc((size_t)S * V, sizeof *logits);
    CU_ASSERT_FATAL(logits != NULL);
    printf("\n");
    for (int k = 0; k < 2; k++) {
        int32_t out[S + 1];
        int ntok = 0, npos = 0;
        pc_exec_opts eo = {.kind = kinds[k]};
        pc_decode_opts o = {.steps = S, .prompt = x.tokens, .n_prompt = S, .temperature = 0, .exec = &eo};
        for (int i = 0; i < S * V; i++) logits[i] = NAN;
        int rc = pc_decode(&x.s, &o, out, &ntok, logits, &npos, err, sizeof err);
        if (rc) fprintf(stderr, "decode: %s\n", err);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_EQUAL(npos, S);
        CU_ASSERT(ntok >= S && !memcmp(out, x.tokens, sizeof(int32_t) * S));
        double e = max_abs_diff(logits, lm, (int64_t)S * V), ew = max_abs_diff(logits, want->data, (int64_t)S * V);
        printf("    [%s] decode row 0, %d positions: max |diff| vs LM graph %.2e, vs PEFT %.2e\n",
               pc_backend_name(kinds[k]), npos, e, ew);
        CU_ASSERT(e <= 1e-4);
        CU_ASSERT(ew <= 1e-4);
    }
    free(logits);
    pc_exec_free(r);
    fx_close(&x);
}

/* merge into a checkpoint file, then unmerge it again: the base weights come back (PEFT's
 * unmerge; IA3 divides by l + 1e-8) */
static void unmerge_roundtrip(const char *dir, int want_modules, double tol) {
    char err[2048], path[] = "/tmp/peftc_unmerge_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    pc_session a, b;
    int n = 0;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&a, NULL, MODEL, NULL, dir, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_session_merge(&a, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, want_modules);
    CU_ASSERT_EQUAL_FATAL(pc_session_write_model(&a, path, err, sizeof err), 0);
    int rc = pc_session_open(&b, NULL, path, NULL, dir, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(pc_session_unmerge(&b, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, want_modules);
    double worst = 0, moved = 0;
    int checked = 0;
    for (int i = 0; i < a.model.nover; i++) {
        const pc_weight *m = &a.model.over[i];
        pc_shape sh;
        const float *base = a.model.family->weight(&a.model, m->key, &sh);
        const float *back = pc_model_weight(&b.model, m->key, NULL);
        CU_ASSERT_FATAL(base && back);
        int64_t k = pc_shape_numel(sh);
        double e = max_abs_diff(back, base, k) / fmax(1.0, max_abs(base, k)), d = max_abs_diff(m->data, base, k);
        if (e > worst) worst = e;
        if (d > moved) moved = d;
        checked++;
    }
    printf("\n    %s: %d weights, merge moved them by up to %.3g, unmerge restores within %.3g\n", dir + strlen(PEFTC_SOURCE_DIR) + 1,
           checked, moved, worst);
    CU_ASSERT(checked == want_modules);
    CU_ASSERT(moved > 1e-3);
    CU_ASSERT(worst <= tol);
    pc_session_close(&a);
    pc_session_close(&b);
    unlink(path);
}

static void test_unmerge_restores_base(void) {
    unmerge_roundtrip(IA3_DIR, 15, 1e-5);
    unmerge_roundtrip(PEFTC_SOURCE_DIR "/tests/data/peft_lora_stories260k_l2c", 35, 1e-6);
}

static CU_TestInfo tests[] = {
    {"unmerge_restores_base", test_unmerge_restores_base},
    {"ia3_loss_and_grads", test_ia3_loss_and_grads},
    {"ia3_merge", test_ia3_merge},
    {"prompt_loss_and_grad", test_prompt_loss_and_grad},
    {"prompt_not_mergeable", test_prompt_not_mergeable},
    {"prompt_decode_matches_lm", test_prompt_decode_matches_lm},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_methods", tests)
