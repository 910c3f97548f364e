/* Multitask prompt tuning against the adapter directory written by Hugging Face PEFT
 * (tests/golden/gen_peft_mpt.py): tests/data/peft_mpt_stories260k/, 4 virtual tokens, 3 tasks,
 * rank 2. Forward (logits, loss) and the three tensors' gradients on the reference interpreter
 * and the JIT for the mixed batch (task_ids [2,0]) and for each task; the three source-file inits
 * vs PEFT's initialised tensors; greedy generation per task vs PEFT's generate(task_ids=[t]);
 * an out-of-range task refused; not mergeable. */
#include "cu_main.h"
#include "compare.h"
#include "peft_fixture.h"
#include "drivers/decode.h"
#include "drivers/merge.h"
#include "runtime/adapter_config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MPT_DIR PF_DATA("peft_mpt_stories260k")

enum { T = 4, D = 64, NT = 3, K = 2 };

static void check_case(const char *expected, const char *label) {
    pf_fixture x;
    if (pf_open(&x, MPT_DIR, expected, PC_ADAPT_TRAIN, true, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    printf("\n  %s: task_ids [%d,%d]", label, (int)x.task_ids[0], (int)x.task_ids[1]);
    CU_ASSERT_EQUAL(x.s.adapter.cfg->peft_type, PC_PEFT_MULTITASK_PROMPT_TUNING);
    CU_ASSERT_EQUAL(pc_session_virtual_tokens(&x.s), T);
    pc_val ti = pc_lookup(x.g, "task_ids");
    CU_ASSERT(ti != PC_NONE && pc_shape_eq(pc_val_shape(x.g, ti), PC_SHAPE(PF_B)));
    int loaded, n = pf_trainable_from_file(&x, NULL, &loaded);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(loaded, 3);
    const pc_store_entry *c = pc_store_find(&x.store, "prefix_task_cols"), *r = pc_store_find(&x.store, "prefix_task_rows");
    CU_ASSERT(c && pc_shape_eq(c->shape, PC_SHAPE(NT, T, K)));
    CU_ASSERT(r && pc_shape_eq(r->shape, PC_SHAPE(NT, K, D)));
    pf_check_loss_logits_grads(&x, PC_BACKEND_REF, 3, NULL, NULL, 0);
    pf_check_loss_logits_grads(&x, PC_BACKEND_JIT, 3, NULL, NULL, 0);
    pf_close(&x);
}

/* 1. the mixed batch, then each task alone */
static void test_mpt_mixed_batch(void) { check_case(NULL, "mixed"); }
static void test_mpt_per_task(void) {
    char path[1024], label[32];
    for (int t = 0; t < NT; t++) {
        snprintf(path, sizeof path, "%s/expected_task%d.safetensors", MPT_DIR, t);
        snprintf(label, sizeof label, "task %d", t);
        check_case(path, label);
    }
}

/* a row whose task the adapter lacks (a per-example id from data): an execution error naming
 * %task_ids on both backends, not a read past the factors */
static void test_mpt_row_task_out_of_range(void) {
    pf_fixture x;
    if (pf_open(&x, MPT_DIR, NULL, PC_ADAPT_EVAL, false, true)) { CU_FAIL("setup"); pf_close(&x); return; }
    x.task_ids[1] = NT;
    static const pc_backend_kind kinds[2] = {PC_BACKEND_REF, PC_BACKEND_JIT};
    printf("\n");
    for (int k = 0; k < 2; k++) {
        char err[2048] = "";
        pc_exec *r = pc_exec_new(x.g, &(pc_exec_opts){.kind = kinds[k]}, err, sizeof err);
        CU_ASSERT_FATAL(r != NULL);
        CU_ASSERT_EQUAL_FATAL(pc_session_bind_base(&x.s, r, x.g, false, err, sizeof err), 0);
        CU_ASSERT_EQUAL_FATAL(pc_store_bind(&x.store, r), 0);
        CU_ASSERT(!pc_exec_bind(r, pc_lookup(x.g, "tokens"), x.tokens) && !pc_exec_bind(r, pc_lookup(x.g, "targets"), x.targets) &&
                  !pc_exec_bind(r, pc_lookup(x.g, "task_ids"), x.task_ids));
        CU_ASSERT_EQUAL(pc_exec_run(r, err, sizeof err), -1);
        printf("    [%s] task_ids [%d,%d]: \"%s\"\n", pc_backend_name(kinds[k]), (int)x.task_ids[0], (int)x.task_ids[1], err);
        CU_ASSERT(strstr(err, "task_ids") && strstr(err, "out of range"));
        pc_exec_free(r);
    }
    pf_close(&x);
}

/* the store of a fresh TRAIN graph for cfg (owned by x afterwards); -1 with a message */
static int open_config(pf_fixture *x, pc_adapter_config *cfg) {
    char err[2048] = "";
    memset(x, 0, sizeof *x);
    int rc = pc_session_open(&x->s, NULL, PF_MODEL, NULL, NULL, err, sizeof err);
    if (!rc) rc = pc_session_set_adapter(&x->s, cfg, "config", err, sizeof err);
    else pc_adapter_config_free(cfg);
    if (!rc) rc = pf_graph(x, PC_ADAPT_TRAIN, true);
    if (rc) fprintf(stderr, "%s\n", err);
    return rc;
}

/* 2. target-task inits from a source run's file (the fixture's own adapter file) vs PEFT's */
static void check_init(const char *mode, pc_prompt_init how, int num_tasks) {
    char err[2048] = "", src[1024], key[128];
    snprintf(src, sizeof src, "%s/adapter_model.safetensors", MPT_DIR);
    pc_adapter_config *cfg = pc_adapter_config_new(PC_PEFT_MULTITASK_PROMPT_TUNING);
    CU_ASSERT_FATAL(cfg != NULL);
    cfg->task_type = PC_TASK_CAUSAL_LM;
    cfg->prompt.num_virtual_tokens = T, cfg->prompt.num_tasks = num_tasks, cfg->prompt.num_ranks = K;
    cfg->prompt.prompt_tuning_init = how, cfg->prompt.prompt_tuning_init_task = 2;
    cfg->prompt.prompt_tuning_init_state_dict_path = strdup(src);
    pf_fixture x;
    CU_ASSERT_EQUAL_FATAL(open_config(&x, cfg), 0);
    pc_st_file *want = pc_st_open(PF_DATA("peft_mpt_stories260k/inits.safetensors"), err, sizeof err);
    CU_ASSERT_FATAL(want != NULL);
    static const char *const keys[3] = {"prompt_embeddings", "prefix_task_cols", "prefix_task_rows"};
    printf("\n    %-21s", mode);
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "%s.%s", mode, keys[i]);
        const pc_st_tensor *w = pc_st_find(want, key);
        const pc_store_entry *e = pc_store_find(&x.store, keys[i]);
        CU_ASSERT_FATAL(w != NULL && e != NULL);
        CU_ASSERT_FATAL(pc_shape_eq(w->shape, e->shape));
        double d = max_abs_diff(e->data, w->data, e->n);
        /* ONLY_SOURCE_SHARED keeps the factors' random init (PEFT's and ours are different draws) */
        bool from_file = strcmp(mode, "ONLY_SOURCE_SHARED") != 0 || i == 0;
        printf(" %s %s %.1e", keys[i], from_file ? "max |diff|" : "(random, not compared)", from_file ? d : 0.0);
        if (from_file) CU_ASSERT(d <= 1e-7);
        if (!from_file) { /* N(0, 0.02) draws: small and not all zero */
            double m = max_abs(e->data, e->n);
            CU_ASSERT(m > 1e-3 && m < 0.2);
        }
    }
    printf("\n");
    pc_st_close(want);
    pf_close(&x);
}

static void test_mpt_source_inits(void) {
    check_init("AVERAGE_SOURCE_TASKS", PC_PROMPT_INIT_AVERAGE_SOURCE_TASKS, 1);
    check_init("EXACT_SOURCE_TASK", PC_PROMPT_INIT_EXACT_SOURCE_TASK, 1);
    check_init("ONLY_SOURCE_SHARED", PC_PROMPT_INIT_ONLY_SOURCE_SHARED, NT);
}

/* TEXT: the shared prompt's rows are the tokenized text's embedding rows, as prompt tuning's
 * TEXT init makes them (BOS first, repeated to T) */
static void test_mpt_text_init(void) {
    static const char text[] = "ROMEO: JULIET:";
    pc_adapter_config *m = pc_adapter_config_new(PC_PEFT_MULTITASK_PROMPT_TUNING),
                      *p = pc_adapter_config_new(PC_PEFT_PROMPT_TUNING);
    CU_ASSERT_FATAL(m && p);
    pc_adapter_config *both[2] = {m, p};
    for (int i = 0; i < 2; i++) {
        both[i]->task_type = PC_TASK_CAUSAL_LM;
        both[i]->prompt.num_virtual_tokens = 12;
        both[i]->prompt.prompt_tuning_init = PC_PROMPT_INIT_TEXT;
        both[i]->prompt.prompt_tuning_init_text = strdup(text);
    }
    m->prompt.num_tasks = NT, m->prompt.num_ranks = K;
    pf_fixture a, b;
    int ra = open_config(&a, m), rb = open_config(&b, p);
    CU_ASSERT_EQUAL_FATAL(ra, 0);
    CU_ASSERT_EQUAL_FATAL(rb, 0);
    const pc_store_entry *ea = pc_store_find(&a.store, "prompt_embeddings"), *eb = pc_store_find(&b.store, "prompt_embeddings");
    CU_ASSERT_FATAL(ea && eb && ea->n == eb->n && ea->n == 12 * D);
    pc_shape es;
    const float *emb = pc_model_weight(&a.s.model, "model.embed_tokens.weight", &es);
    CU_ASSERT_FATAL(emb != NULL);
    double d = max_abs_diff(ea->data, eb->data, ea->n), first = max_abs_diff(ea->data, emb + 1 * D, D); /* row 0: BOS */
    printf("\n    TEXT: max |diff| vs prompt tuning's TEXT rows %.1e, row 0 vs BOS's embedding %.1e\n", d, first);
    CU_ASSERT(d == 0 && first == 0);
    pf_close(&a);
    pf_close(&b);
}

/* 3. greedy generation per task = PEFT's generate(task_ids=[t], use_cache=False), which is greedy
 * decoding with its forward (stopping at id 1) */
static void test_mpt_generate(void) {
    char err[2048] = "", name[32];
    pc_st_file *f = pc_st_open(PF_DATA("peft_mpt_stories260k/generate.safetensors"), err, sizeof err);
    CU_ASSERT_FATAL(f != NULL);
    const pc_st_tensor *pt = pc_st_find(f, "gen_prompt");
    CU_ASSERT_FATAL(pt != NULL && pt->dtype == PC_I32);
    const int np = (int)pc_shape_numel(pt->shape);
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, PF_MODEL, NULL, MPT_DIR, err, sizeof err), 0);
    static const pc_backend_kind kinds[2] = {PC_BACKEND_REF, PC_BACKEND_JIT};
    printf("\n");
    int distinct = 0;
    int32_t prev[64] = {0};
    for (int t = 0; t < NT; t++) {
        snprintf(name, sizeof name, "gen_task%d", t);
        const pc_st_tensor *w = pc_st_find(f, name);
        CU_ASSERT_FATAL(w != NULL && w->dtype == PC_I32);
        const int32_t *want = w->data;
        int nw = (int)pc_shape_numel(w->shape);
        if (nw > np && want[nw - 1] == 1) nw--; /* PEFT keeps the end token; peftc stops before it */
        s.task_id = t;
        for (int k = 0; k < 2; k++) {
            int32_t out[64];
            int ntok = 0;
            pc_exec_opts eo = {.kind = kinds[k]};
            pc_decode_opts o = {.steps = (int)pc_shape_numel(w->shape) - 1, .prompt = pt->data, .n_prompt = np,
                                .temperature = 0, .exec = &eo};
            int rc = pc_decode(&s, &o, out, &ntok, NULL, NULL, err, sizeof err);
            if (rc) fprintf(stderr, "decode: %s\n", err);
            CU_ASSERT_EQUAL_FATAL(rc, 0);
            bool same = ntok == nw && !memcmp(out, want, sizeof(int32_t) * (size_t)nw);
            if (!same) for (int i = 0; i < ntok; i++) printf("%d%s", (int)out[i], i + 1 < ntok ? "," : "\n");
            printf("    [%s] task %d: %d ids, %s PEFT's generate(use_cache=False)\n", pc_backend_name(kinds[k]), t, ntok,
                   same ? "equal to" : "DIFFERENT from");
            CU_ASSERT(same);
            if (k == 0) {
                distinct += t == 0 || memcmp(prev, out, sizeof(int32_t) * (size_t)ntok) != 0;
                memcpy(prev, out, sizeof(int32_t) * (size_t)ntok);
            }
        }
    }
    CU_ASSERT_EQUAL(distinct, NT); /* the task changes the text */
    /* a task the adapter does not have: a clear error, no generation */
    s.task_id = NT;
    int32_t out[64];
    int ntok = 0;
    pc_decode_opts o = {.steps = 8, .prompt = pt->data, .n_prompt = np};
    CU_ASSERT_EQUAL(pc_decode(&s, &o, out, &ntok, NULL, NULL, err, sizeof err), -1);
    printf("    task %d: \"%s\"\n", NT, err);
    CU_ASSERT(strstr(err, "out of range") && strstr(err, "num_tasks = 3"));
    pc_session_close(&s);
    pc_st_close(f);
}

/* 4. no merge rule */
static void test_mpt_not_mergeable(void) {
    char err[2048] = "";
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, NULL, PF_MODEL, NULL, MPT_DIR, err, sizeof err), 0);
    int nmod = -7;
    CU_ASSERT_EQUAL(pc_session_merge(&s, &nmod, err, sizeof err), -1);
    printf("\n    merge: \"%s\"\n", err);
    CU_ASSERT(strstr(err, "cannot be merged") != NULL);
    CU_ASSERT_FALSE(s.merged);
    pc_session_close(&s);
}

static CU_TestInfo tests[] = {
    {"mpt_mixed_batch", test_mpt_mixed_batch},
    {"mpt_per_task", test_mpt_per_task},
    {"mpt_row_task_out_of_range", test_mpt_row_task_out_of_range},
    {"mpt_source_inits", test_mpt_source_inits},
    {"mpt_text_init", test_mpt_text_init},
    {"mpt_generate", test_mpt_generate},
    {"mpt_not_mergeable", test_mpt_not_mergeable},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("peft_mpt", tests)
