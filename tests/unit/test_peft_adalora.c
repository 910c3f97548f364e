/* AdaLoRA against Hugging Face PEFT 0.21 (tests/golden/gen_peft_adalora.py):
 *   tests/data/peft_adalora_stories260k/         35 modules x (lora_A, lora_E, lora_B), init_r=4,
 *                                                lora_alpha=8, orth_reg_weight=0.3, non-zero E
 *   .../alloc.safetensors                        PEFT's RankAllocator fed 10 fixed steps
 *   .../pruned/                                  what PEFT saved after them (two modules at rank 0)
 * Loss (task + orthogonal regularizer), logits and all 105 gradients on the reference interpreter
 * and the JIT; merge vs merge_and_unload and the unmerge round trip; the allocator replayed step
 * by step (budget, triplet scores, rank masks, masked E); the pruned checkpoint evaluated and
 * merged; the config errors; and a short `peftc train` whose saved adapter is pruned and loads. */
#include "cu_main.h"
#include "compare.h"
#include "peft_fixture.h"
#include "drivers/merge.h"
#include "drivers/train.h"
#include "passes/adapt.h"
#include "passes/adapters/adalora.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOKENIZER PEFTC_SOURCE_DIR "/data/stories260K/tok512.bin"
#define TEXT PEFTC_SOURCE_DIR "/data/tinyshakespeare/input.txt"
#define ADA_DIR PF_DATA("peft_adalora_stories260k")
#define ADA_EXPECTED ADA_DIR "/expected.safetensors"
#define PRUNED_DIR ADA_DIR "/pruned"

enum { NMOD = 35 };

/* 1. loss (task + regularizer), logits and the 105 gradients (ref and jit) */
static void test_loss_and_grads(void) {
    pf_fixture x;
    if (pf_open(&x, ADA_DIR, NULL, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_ADALORA);
    CU_ASSERT_FATAL(pc_lookup(x.g, "task_loss") != PC_NONE);
    int loaded, n = pf_trainable_from_file(&x, NULL, &loaded);
    CU_ASSERT_EQUAL(n, 3 * NMOD);
    CU_ASSERT_EQUAL(loaded, 3 * NMOD);
    const pc_st_tensor *orth = pc_st_find(x.ex, "orth_reg");
    CU_ASSERT_FATAL(orth != NULL);
    char note[64]; /* the loss PEFT's model returns includes the orthogonal regularizer */
    snprintf(note, sizeof note, "incl. 0.3 * orth %.7f", *(const float *)orth->data);
    pf_check_loss_logits_grads(&x, PC_BACKEND_REF, 3 * NMOD, note, NULL, 0);
    pf_check_loss_logits_grads(&x, PC_BACKEND_JIT, 3 * NMOD, note, NULL, 0);
    pf_close(&x);
}

/* 2. merge vs merge_and_unload; merged logits = PEFT's merged = unmerged; unmerge restores W */
static void test_merge(void) {
    pf_fixture m;
    if (pf_check_merge(&m, PF_MODEL, &(pf_merge_spec){.adapter = ADA_DIR, .modules = NMOD, .weights = 14,
                                                      .weights_label = "max |diff|", .unmerged_kind = PC_BACKEND_REF}) == 0) {
        /* the merged checkpoint, unmerged: the base comes back */
        pf_roundtrip rt;
        pf_unmerge_roundtrip(&m.s, PF_MODEL, ADA_DIR, &rt);
        CU_ASSERT_EQUAL(rt.unmerged, NMOD);
        CU_ASSERT_EQUAL(rt.weights, NMOD);
        printf("    unmerge of the merged checkpoint restores W within %.2e\n", rt.restored_abs);
        CU_ASSERT(rt.restored_abs <= 1e-6);
    }
    pf_close(&m);
}

/* ---- 3. the allocator replayed against PEFT's RankAllocator ---- */
typedef struct {
    const pc_st_file *f;
    int t, n;
    char **keys;
    float **vals; /* the params the allocator sees (it masks E in place) */
    pc_shape *shapes;
} replay;

static float *replay_get(void *ctx, const char *key, pc_shape *shape) {
    replay *r = ctx;
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->keys[i], key)) return *shape = r->shapes[i], r->vals[i];
    return NULL;
}

static const char *replay_key(void *ctx, int i) {
    replay *r = ctx;
    return i < r->n ? r->keys[i] : NULL;
}

static const float *replay_grad(void *ctx, const char *key, pc_shape *shape) {
    replay *r = ctx;
    char name[700];
    snprintf(name, sizeof name, "alloc.%d.grad.%s", r->t, key);
    const pc_st_tensor *t = pc_st_find(r->f, name);
    if (!t) return NULL;
    *shape = t->shape;
    return t->data;
}

static pc_adapter_config *parse(const char *json, char *err, size_t n) {
    return pc_adapter_config_parse(json, strlen(json), "alloc.json", err, n);
}

static void test_allocator_replay(void) {
    char err[1024] = "";
    replay r = {0};
    CU_ASSERT_PTR_NOT_NULL_FATAL(r.f = pc_st_open(ADA_DIR "/alloc.safetensors", err, sizeof err));
    pc_adapter_config *cfg = parse("{\"peft_type\":\"ADALORA\",\"target_modules\":[\"q_proj\",\"v_proj\"],\"init_r\":4,"
                                   "\"target_r\":2,\"lora_alpha\":8,\"total_step\":10,\"tinit\":2,\"tfinal\":3,"
                                   "\"deltaT\":2,\"beta1\":0.85,\"beta2\":0.85}", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    int cap = pc_st_count(r.f);
    r.keys = calloc((size_t)cap, sizeof *r.keys);
    r.vals = calloc((size_t)cap, sizeof *r.vals);
    r.shapes = calloc((size_t)cap, sizeof *r.shapes);
    for (int i = 0; i < cap; i++) {
        const pc_st_tensor *t = pc_st_get(r.f, i);
        if (strncmp(t->name, "alloc.1.param.", 14)) continue;
        r.keys[r.n] = strdup(t->name + 14);
        r.shapes[r.n] = t->shape;
        r.vals[r.n++] = malloc(t->nbytes ? t->nbytes : 1);
    }
    CU_ASSERT_EQUAL_FATAL(r.n, 30);
    pc_tensor_io io = {replay_get, NULL, &r, NULL, replay_key, replay_grad, &r};
    pc_adalora_state st = {.last_budget = -1};
    int bad_budget = 0, bad_keep = 0, nscore = 0, nkeep = 0;
    double worst_score = 0, worst_e = 0;
    printf("\n    budget per step:");
    for (r.t = 1; r.t <= 10; r.t++) {
        char name[800];
        for (int i = 0; i < r.n; i++) {
            snprintf(name, sizeof name, "alloc.%d.param.%s", r.t, r.keys[i]);
            const pc_st_tensor *p = pc_st_find(r.f, name);
            CU_ASSERT_FATAL(p != NULL);
            memcpy(r.vals[i], p->data, p->nbytes);
        }
        int rc = pc_adalora_step(&st, cfg, r.t, &io, err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        snprintf(name, sizeof name, "alloc.%d.budget", r.t);
        const pc_st_tensor *bt = pc_st_find(r.f, name);
        CU_ASSERT_FATAL(bt != NULL);
        int32_t want = *(const int32_t *)bt->data;
        printf(" %lld%s", (long long)st.last_budget, st.last_masked ? "*" : "");
        bad_budget += st.last_budget != want;
        for (int i = 0; i < st.nmods; i++) {
            const pc_adalora_module *m = &st.mods[i];
            snprintf(name, sizeof name, "alloc.%d.score.%s", r.t, m->module);
            const pc_st_tensor *sc = pc_st_find(r.f, name);
            CU_ASSERT((sc != NULL) == st.last_masked);
            if (sc && st.last_masked) {
                const float *w = sc->data;
                for (int64_t k = 0; k < m->r; k++) {
                    double d = fabs(m->score[k] - w[k]) / fmax(fabs(w[k]), 1e-30);
                    if (d > worst_score) worst_score = d;
                }
                nscore++;
            }
            snprintf(name, sizeof name, "alloc.%d.keep.%s", r.t, m->module);
            const pc_st_tensor *kp = pc_st_find(r.f, name);
            CU_ASSERT((kp != NULL) == st.have_pattern);
            if (kp) {
                for (int64_t k = 0; k < m->r; k++) bad_keep += m->keep[k] != (((const float *)kp->data)[k] != 0);
                nkeep++;
            }
            snprintf(name, sizeof name, "alloc.%d.E.%s", r.t, m->key[1]);
            const pc_st_tensor *et = pc_st_find(r.f, name);
            pc_shape sh;
            const float *e = replay_get(&r, m->key[1], &sh);
            CU_ASSERT_FATAL(et != NULL && e != NULL);
            double d = max_abs_diff(e, et->data, m->r);
            if (d > worst_e) worst_e = d;
        }
    }
    int zero = 0;
    for (int i = 0; i < st.nmods; i++) {
        int64_t kept = 0;
        for (int64_t k = 0; k < st.mods[i].r; k++) kept += st.mods[i].keep[k];
        zero += kept == 0;
    }
    printf("  (* = allocated)\n    scores: %d module-steps, worst rel diff %.2e; %d rank masks, %d entries differ; "
           "masked E max |diff| %.2e; %d modules end at rank 0\n", nscore, worst_score, nkeep, bad_keep, worst_e, zero);
    CU_ASSERT_EQUAL(bad_budget, 0);
    CU_ASSERT_EQUAL(nscore, 30);
    CU_ASSERT(worst_score <= 1e-5);
    CU_ASSERT_EQUAL(bad_keep, 0);
    CU_ASSERT(worst_e == 0);
    CU_ASSERT_EQUAL(zero, 2);
    CU_ASSERT_EQUAL(st.init_bgt, 40);
    CU_ASSERT_EQUAL(st.target_bgt, 20);
    pc_adalora_alloc_free(&st);
    for (int i = 0; i < r.n; i++) free(r.keys[i]), free(r.vals[i]);
    free(r.keys), free(r.vals), free(r.shapes);
    pc_adapter_config_free(cfg);
    pc_st_close((pc_st_file *)r.f);
}

/* 4. PEFT's pruned checkpoint: ranks from rank_pattern (0 for two modules), PEFT's logits, merge */
static void test_pruned_checkpoint(void) {
    char err[2048];
    pf_fixture x;
    if (pf_open(&x, PRUNED_DIR, ADA_EXPECTED, PC_ADAPT_EVAL, false, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    pc_st_file *pe = pc_st_open(PRUNED_DIR "/expected.safetensors", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pe);
    int nparams = 0, total_rank = 0;
    for (int i = 0; i < x.store.n; i++) {
        const pc_store_entry *e = &x.store.e[i];
        nparams++;
        CU_ASSERT(e->loaded);
        if (strstr(e->key, ".lora_E")) total_rank += (int)e->shape.dim[0];
        CU_ASSERT(!strstr(e->key, "layers.3.self_attn.v_proj") && !strstr(e->key, "layers.3.self_attn.q_proj"));
    }
    pc_exec *r = pf_run(&x, PC_BACKEND_REF), *j = pf_run(&x, PC_BACKEND_JIT);
    CU_ASSERT_FATAL(r && j);
    double er = pf_logits_diff(&x, r, pe, "logits"), ej = pf_logits_diff(&x, j, pe, "logits");
    printf("\n    %d params (8 modules, ranks summing to %d; two at rank 0 have none); logits vs PEFT: ref %.2e, jit %.2e\n",
           nparams, total_rank, er, ej);
    CU_ASSERT_EQUAL(nparams, 24);
    CU_ASSERT_EQUAL(total_rank, 20);
    CU_ASSERT(er <= 1e-4 && ej <= 1e-4);
    pc_exec_free(r);
    pc_exec_free(j);
    pf_close(&x);
    /* merged in memory: every targeted module, the rank-0 ones unchanged; same logits */
    if (pf_open(&x, PRUNED_DIR, ADA_EXPECTED, PC_ADAPT_EVAL, false, false)) { CU_FAIL("setup"); pf_close(&x); pc_st_close(pe); return; }
    int nmod = 0;
    CU_ASSERT_EQUAL_FATAL(pc_session_merge(&x.s, &nmod, err, sizeof err), 0);
    CU_ASSERT_EQUAL(nmod, 10);
    CU_ASSERT_EQUAL_FATAL(pf_graph(&x, PC_ADAPT_EVAL, false), 0);
    r = pf_run(&x, PC_BACKEND_REF);
    CU_ASSERT_FATAL(r != NULL);
    double em = pf_logits_diff(&x, r, pe, "logits");
    printf("    merged: logits vs PEFT %.2e\n", em);
    CU_ASSERT(em <= 1e-4);
    pc_exec_free(r);
    pf_close(&x);
    pc_st_close(pe);
}

/* 5. bad configs: an error naming the file and the field */
static void test_config_errors(void) {
    static const struct { const char *extra, *field; } cases[] = {
        {"\"init_r\":4,\"target_r\":6,\"total_step\":10", "field \"target_r\""},
        {"\"tinit\":5,\"tfinal\":5,\"total_step\":10", "tinit"},
        {"\"init_r\":4", "total_step"},
        {"\"total_step\":10,\"beta1\":1.0", "field \"beta1\""},
        {"\"total_step\":10,\"bias\":\"all\"", "field \"bias\""},
        {"\"total_step\":10,\"rank_pattern\":{\"model.layers.0.self_attn.q_proj.lora_E\":[true,false]}", "field \"rank_pattern\""},
    };
    char dir[] = "/tmp/peftc_adalora_cfg_XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    printf("\n");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[600], err[2048] = "";
        snprintf(path, sizeof path, "%s/bad%zu.json", dir, i);
        FILE *f = fopen(path, "w");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fprintf(f, "{\"peft_type\":\"ADALORA\",\"task_type\":\"CAUSAL_LM\",\"target_modules\":[\"q_proj\"],%s}", cases[i].extra);
        fclose(f);
        pc_session s;
        pc_adapt_ctx *cx = NULL;
        int rc = pc_session_open(&s, NULL, PF_MODEL, NULL, path, err, sizeof err);
        if (rc == 0) cx = pc_session_adapter(&s, PC_ADAPT_TRAIN, true, 0, err, sizeof err);
        printf("    %s -> %s\n", cases[i].extra, err);
        CU_ASSERT(rc != 0 || cx == NULL);
        CU_ASSERT(strstr(err, path) != NULL && strstr(err, cases[i].field) != NULL);
        pc_adapt_free(cx);
        if (rc == 0) pc_session_close(&s);
        unlink(path);
    }
    rmdir(dir);
}

/* 6. `peftc train` with pruning: the saved config holds rank_pattern, the tensors are pruned to
 * it (E non-zero where kept), and the directory evaluates */
static void test_train_prunes(void) {
    char dir[] = "/tmp/peftc_adalora_train_XXXXXX", cfg[600], out[600], err[2048] = "";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(cfg, sizeof cfg, "%s/a.json", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    FILE *f = fopen(cfg, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("{\"peft_type\":\"ADALORA\",\"task_type\":\"CAUSAL_LM\",\"target_modules\":[\"q_proj\",\"v_proj\"],"
          "\"init_r\":4,\"target_r\":2,\"lora_alpha\":8,\"total_step\":8,\"tinit\":2,\"tfinal\":2,\"deltaT\":2}", f);
    fclose(f);
    pc_train_opts o = pc_train_defaults();
    o.model = PF_MODEL, o.tokenizer = TOKENIZER, o.data = TEXT, o.adapter = cfg, o.out = out;
    o.steps = 10, o.batch = 2, o.seq = 16, o.eval_every = 0, o.eval_batches = 1, o.warmup = 1, o.quiet = true;
    pc_train_result res;
    int rc = pc_train(&o, &res, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    pc_train_result_free(&res);
    pc_adapter_config *c = pc_adapter_config_load(out, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_FALSE(c->rank_pattern.is_null);
    CU_ASSERT_EQUAL(c->rank_pattern.n, 10);
    char path[700];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", out);
    pc_st_file *st = pc_st_open(path, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    int64_t total = 0;
    int bad = 0;
    for (size_t i = 0; i < c->rank_pattern.n; i++) {
        const pc_pattern_entry *e = &c->rank_pattern.items[i];
        CU_ASSERT_EQUAL(e->mask_len, 4);
        char key[700];
        snprintf(key, sizeof key, "base_model.model.%.*s.lora_E", (int)(strlen(e->key) - 7), e->key);
        const pc_st_tensor *t = pc_st_find(st, key);
        CU_ASSERT_FATAL(t != NULL);
        bad += t->shape.dim[0] != (int64_t)e->value.v;
        for (int64_t k = 0; k < t->shape.dim[0]; k++) bad += ((const float *)t->data)[k] == 0.0f;
        total += (int64_t)e->value.v;
    }
    printf("\n    10 steps (total_step 8): %zu modules in rank_pattern, %lld ranks kept of 40, %d mismatches\n",
           c->rank_pattern.n, (long long)total, bad);
    CU_ASSERT_EQUAL(total, 20);
    CU_ASSERT_EQUAL(bad, 0);
    pc_st_close(st);
    pc_adapter_config_free(c);
    pf_fixture x;
    if (pf_open(&x, out, ADA_EXPECTED, PC_ADAPT_EVAL, false, true) == 0) {
        pc_exec *r = pf_run(&x, PC_BACKEND_REF);
        CU_ASSERT(r != NULL);
        pc_exec_free(r);
    } else {
        CU_FAIL("the trained adapter does not load");
    }
    pf_close(&x);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

static CU_TestInfo tests[] = {
    {"loss_and_grads", test_loss_and_grads},
    {"merge_unmerge", test_merge},
    {"allocator_replay", test_allocator_replay},
    {"pruned_checkpoint", test_pruned_checkpoint},
    {"config_errors", test_config_errors},
    {"train_prunes", test_train_prunes},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_adalora", tests)
