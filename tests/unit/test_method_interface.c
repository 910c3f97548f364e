/* The adapter-method interface seen from a user's method: the registry, and every optional hook a
 * method may set (loss_term, step_hook, save_tensors) driven by the real trainer on stories260K. */
#include "cu_main.h"
#include "drivers/train.h"
#include "ir/ir.h"
#include "runtime/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define TOKENIZER PEFTC_SOURCE_DIR "/data/stories260K/tok512.bin"
#define TEXT PEFTC_SOURCE_DIR "/data/tinyshakespeare/input.txt"

/* what the hooks saw, shared through the method's state (a per-application copy points here) */
typedef struct {
    int steps_seen[8], nsteps;
    int saves;
    double gain_sum_at_save;
} probe_log;

typedef struct {
    probe_log *log;
    pc_val gains[16];
    int n;
} probe_state;

/* the test's record (test code only): a method's state is per application, so begin points it here */
static probe_log g_log_storage;

static int probe_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    (void)cx, (void)err, (void)errlen;
    ((probe_state *)state)->log = &g_log_storage;
    return 0;
}

static int probe_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    (void)err, (void)errlen;
    probe_state *st = state;
    if (pc_adapt_targets(cx, s->module) != 1) return 0;
    pc_val g = pc_adapt_param(cx, s, "probe_gain", PC_SHAPE(s->out), (pc_init){PC_INIT_ONES, 0, 0});
    s->value = pc_mul_at(s->g, s->loc, s->value, g);
    if (st->n < 16) st->gains[st->n++] = g;
    return 1;
}

/* a constant 0.25 plus nothing trainable: the trainer's loss must include it */
static pc_val probe_loss(pc_adapt_ctx *cx, void *state, pc_graph *g, pc_val loss, char *err, size_t errlen) {
    (void)cx, (void)state, (void)loss, (void)err, (void)errlen;
    return pc_scalar(g, 0.25f);
}

static int probe_step(pc_adapt_ctx *cx, void *state, int step, const pc_tensor_io *io, char *err, size_t errlen) {
    (void)cx;
    probe_state *st = state;
    pc_shape sh;
    if (!io->get(io->get_ctx, "base_model.model.model.layers.0.self_attn.o_proj.probe_gain", &sh) || sh.dim[0] != 64)
        return snprintf(err, errlen, "step %d: the gain is not readable", step), -1;
    if (st->log->nsteps < 8) st->log->steps_seen[st->log->nsteps++] = step;
    return 0;
}

/* the file holds the gains under their keys and one computed tensor: their mean per module */
static int probe_save(pc_adapt_ctx *cx, void *state, const pc_tensor_io *io, char *err, size_t errlen) {
    (void)cx;
    probe_state *st = state;
    char key[256];
    for (int layer = 0; layer < 5; layer++) {
        snprintf(key, sizeof key, "base_model.model.model.layers.%d.self_attn.o_proj.probe_gain", layer);
        pc_shape sh;
        float *g = io->get(io->get_ctx, key, &sh);
        if (!g) return snprintf(err, errlen, "no %s", key), -1;
        float mean = 0;
        for (int64_t i = 0; i < sh.dim[0]; i++) mean += g[i] / (float)sh.dim[0];
        st->log->gain_sum_at_save += mean;
        if (io->put(io->put_ctx, key, sh, g)) return -1;
        snprintf(key, sizeof key, "probe_mean.%d", layer);
        if (io->put(io->put_ctx, key, PC_SHAPE(1), &mean)) return -1;
    }
    st->log->saves++;
    return 1;
}

static const pc_adapter_method probe = {
    .name = "probe", .peft_type = "PROBE", .sites = PC_SITE_LINEAR, .state_size = sizeof(probe_state),
    .begin = probe_begin, .rewrite = probe_rewrite, .loss_term = probe_loss, .step_hook = probe_step,
    .save_tensors = probe_save,
};

static void test_registry(void) {
    char err[256];
    pc_registry *r = pc_registry_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT(pc_registry_count(r) >= 3);
    CU_ASSERT_PTR_NOT_NULL(pc_registry_find(r, "lora"));
    CU_ASSERT_PTR_EQUAL(pc_registry_find(r, "LORA"), pc_registry_find(r, "lora"));
    CU_ASSERT_PTR_NOT_NULL(pc_registry_find(r, "IA3"));
    CU_ASSERT_PTR_NOT_NULL(pc_registry_find(r, "PROMPT_TUNING"));
    CU_ASSERT_PTR_NULL(pc_registry_find(r, "PROBE"));
    CU_ASSERT_EQUAL(pc_registry_add(r, &probe, err, sizeof err), 0);
    CU_ASSERT_PTR_EQUAL(pc_registry_find(r, "PROBE"), &probe);
    /* a second method of the same name or peft_type, or one without a rewrite, is refused */
    CU_ASSERT_EQUAL(pc_registry_add(r, &probe, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "already registered"));
    pc_adapter_method bad = {.name = "bad"};
    CU_ASSERT_EQUAL(pc_registry_add(r, &bad, err, sizeof err), -1);
    pc_registry_free(r);
}

static void test_hooks_in_training(void) {
    char dir[] = "/tmp/peftc_probe_XXXXXX", cfg[512], out[512], err[2048];
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(cfg, sizeof cfg, "%s/probe.json", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    FILE *f = fopen(cfg, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("{\"peft_type\": \"PROBE\", \"task_type\": \"CAUSAL_LM\", \"target_modules\": [\"o_proj\"]}\n", f);
    fclose(f);
    pc_registry *r = pc_registry_new();
    CU_ASSERT_EQUAL_FATAL(pc_registry_add(r, &probe, err, sizeof err), 0);
    memset(&g_log_storage, 0, sizeof g_log_storage);

    /* the step graph: the task loss plus the method's term */
    pc_session s;
    CU_ASSERT_EQUAL_FATAL(pc_session_open(&s, r, MODEL, NULL, cfg, err, sizeof err), 0);
    pc_train_opts o = pc_train_defaults();
    o.batch = 2, o.seq = 16;
    pc_graph *g = NULL, *eg = NULL;
    int rc = pc_train_graphs(&s, &o, true, &g, &eg, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    pc_val loss = PC_NONE;
    for (int i = 0; i < g->noutputs; i++)
        if (pc_v(g, g->outputs[i])->flags & PC_LOSS) loss = g->outputs[i];
    CU_ASSERT_FATAL(loss != PC_NONE);
    CU_ASSERT_EQUAL(pc_v(g, loss)->op, PC_OP_add);
    CU_ASSERT_STRING_EQUAL(pc_val_name(g, pc_v(g, loss)->in[0]), "task_loss");
    /* the evaluation graph has no method term */
    pc_val eloss = PC_NONE;
    for (int i = 0; i < eg->noutputs; i++)
        if (pc_v(eg, eg->outputs[i])->flags & PC_LOSS) eloss = eg->outputs[i];
    CU_ASSERT(eloss != PC_NONE && pc_v(eg, eloss)->op == PC_OP_cross_entropy);
    pc_graph_free(g);
    pc_graph_free(eg);
    pc_session_close(&s);

    /* three steps: the hook after each, one save with the method's tensors */
    o = pc_train_defaults();
    o.model = MODEL, o.tokenizer = TOKENIZER, o.data = TEXT, o.adapter = cfg, o.out = out, o.registry = r;
    o.steps = 3, o.batch = 2, o.seq = 16, o.eval_every = 0, o.eval_batches = 1, o.warmup = 1, o.quiet = true;
    pc_train_result res;
    rc = pc_train(&o, &res, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    pc_train_result_free(&res);
    CU_ASSERT_EQUAL(g_log_storage.nsteps, 3);
    for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(g_log_storage.steps_seen[i], i + 1);
    CU_ASSERT_EQUAL(g_log_storage.saves, 1);
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", out);
    pc_st_file *st = pc_st_open(path, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(pc_st_count(st), 10);
    const pc_st_tensor *m0 = pc_st_find(st, "probe_mean.0");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m0);
    double sum = 0;
    for (int l = 0; l < 5; l++) {
        char key[64];
        snprintf(key, sizeof key, "probe_mean.%d", l);
        sum += ((const float *)pc_st_find(st, key)->data)[0];
    }
    CU_ASSERT(fabs(sum - g_log_storage.gain_sum_at_save) < 1e-5);
    CU_ASSERT(fabs(sum - 5.0) > 1e-6); /* training moved the gains */
    pc_st_close(st);
    pc_registry_free(r);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

static CU_TestInfo tests[] = {
    {"registry", test_registry},
    {"hooks_in_training", test_hooks_in_training},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("method_interface", tests)
