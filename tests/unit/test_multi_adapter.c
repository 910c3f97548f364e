/* Several adapters on stories260K: a mixed batch (each row its adapter or the base model, one
 * pass through %adapter_ids) gives the logits of running each row alone with its adapter, on the
 * reference interpreter and the JIT, for LoRA adapters of different ranks, alphas, rsLoRA and
 * targets, and for IA3 (output and feedforward scaling); named adapters (active, delete, PEFT's
 * directory layout) and the refusals (methods that cannot mix, a name twice, an unknown name,
 * an adapter for another model). The adapters are written here with random tensors. */
#include "cu_main.h"
#include "compare.h"
#include "temp_dir.h"
#include "drivers/fold_weights.h"
#include "drivers/hot_swap.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"

enum { B = 6, S = 8 };

static const char *LORA_A = "{\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"r\":4,\"lora_alpha\":8,"
                            "\"target_modules\":[\"q_proj\",\"v_proj\"]}";
static const char *LORA_B = "{\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"r\":8,\"lora_alpha\":16,"
                            "\"use_rslora\":true,\"target_modules\":[\"q_proj\",\"k_proj\",\"v_proj\",\"o_proj\","
                            "\"gate_proj\",\"up_proj\",\"down_proj\"]}";
static const char *LORA_C = "{\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"r\":2,\"lora_alpha\":3,"
                            "\"target_modules\":[\"o_proj\",\"down_proj\"],\"rank_pattern\":{\"down_proj\":6}}";
static const char *IA3_A = "{\"peft_type\":\"IA3\",\"task_type\":\"CAUSAL_LM\",\"target_modules\":[\"k_proj\",\"v_proj\","
                           "\"down_proj\"],\"feedforward_modules\":[\"down_proj\"]}";
static const char *IA3_B = "{\"peft_type\":\"IA3\",\"task_type\":\"CAUSAL_LM\",\"target_modules\":[\"v_proj\","
                           "\"down_proj\",\"up_proj\"],\"feedforward_modules\":[\"down_proj\"]}";
static const char *PROMPT = "{\"peft_type\":\"PROMPT_TUNING\",\"task_type\":\"CAUSAL_LM\",\"num_virtual_tokens\":3}";

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* dir/adapter_config.json = config, and adapter_model.safetensors with every tensor the config
 * makes on stories260K, uniform in ±amp (seeded; `grow` adds a row to the first tensor: an
 * adapter that does not fit) */
static void make_adapter(const char *dir, const char *config, uint32_t seed, float amp, float center, bool grow) {
    char path[1024], err[2048] = "";
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    write_text(path, config);
    pc_session s;
    CU_ASSERT_FATAL(pc_session_open(&s, NULL, MODEL, NULL, path, err, sizeof err) == 0);
    pc_build_req req = {.task = PC_TASK_LM, .batch = 1, .seq = 4, .mode = PC_ADAPT_EVAL};
    pc_graph *g = pc_session_build(&s, &req, true, err, sizeof err);
    CU_ASSERT_FATAL(g != NULL);
    pc_st_writer *w = pc_st_writer_new();
    uint32_t x = seed;
    bool first = true;
    float *bufs[128];
    int nb = 0;
    for (pc_val v = 0; v < g->nvals; v++) {
        const pc_value *p = pc_v(g, v);
        if (p->op != PC_OP_param || !p->key || pc_session_is_base(&s, p->key)) continue;
        pc_shape sh = p->shape;
        if (grow && first) sh.dim[0]++;
        first = false;
        int64_t n = pc_shape_numel(sh);
        float *d = malloc((size_t)n * sizeof *d);
        for (int64_t i = 0; i < n; i++) {
            x = x * 1664525u + 1013904223u;
            d[i] = center + amp * (2.0f * (float)(x >> 8) / 16777216.0f - 1.0f);
        }
        CU_ASSERT(pc_st_writer_add(w, p->key, PC_F32, sh, d, err, sizeof err) == 0);
        CU_ASSERT_FATAL(nb < 128);
        bufs[nb++] = d; /* borrowed until the write */
    }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CU_ASSERT(pc_st_write(w, path, err, sizeof err) == 0);
    pc_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    pc_graph_free(g);
    pc_session_close(&s);
}

static char *tmp;

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmp, name); }

static void make_all(void) {
    if (tmp) return;
    tmp = pc_test_temp_dir("multi");
    char p[1024];
    path_of(p, sizeof p, "a"), make_adapter(p, LORA_A, 1, 0.3f, 0, false);
    path_of(p, sizeof p, "b"), make_adapter(p, LORA_B, 2, 0.2f, 0, false);
    path_of(p, sizeof p, "c"), make_adapter(p, LORA_C, 3, 0.3f, 0, false);
    path_of(p, sizeof p, "i1"), make_adapter(p, IA3_A, 4, 0.5f, 1.0f, false);
    path_of(p, sizeof p, "i2"), make_adapter(p, IA3_B, 5, 0.5f, 1.0f, false);
    path_of(p, sizeof p, "p"), make_adapter(p, PROMPT, 6, 0.5f, 0, false);
    path_of(p, sizeof p, "bad"), make_adapter(p, LORA_A, 7, 0.3f, 0, true);
    path_of(p, sizeof p, "a2"), make_adapter(p, LORA_A, 8, 0.3f, 0, false); /* a's config, other values */
}

static void tokens_of(int32_t *t, int n, uint32_t seed) {
    for (int i = 0; i < n; i++) seed = seed * 1664525u + 1013904223u, t[i] = (int32_t)(1 + (seed >> 8) % 500);
}

/* FORWARD logits [rows, S, V] of a session (mixed: ids bound) on a backend; malloc'd */
static float *run(pc_session *s, int rows, const int32_t *tokens, const int32_t *ids, pc_backend_kind kind,
                  int64_t *n) {
    char err[4096] = "";
    pc_store st = {0};
    pc_folded f = {0};
    pc_build_req req = {.task = PC_TASK_FORWARD, .batch = rows, .seq = S, .mode = PC_ADAPT_EVAL};
    pc_graph *g = pc_session_inference_graph(s, &req, &st, &f, err, sizeof err);
    pc_exec *r = g ? pc_exec_new(g, &(pc_exec_opts){.kind = kind, .threads = 1}, err, sizeof err) : NULL;
    int32_t *bound = NULL;
    float *out = NULL;
    if (r && !pc_session_bind_inference(s, g, &st, &f, r, err, sizeof err) &&
        !pc_exec_bind(r, pc_lookup(g, "tokens"), (void *)tokens) &&
        !pc_session_bind_adapter_ids(s, g, r, ids, &bound, err, sizeof err) && !pc_exec_run(r, err, sizeof err)) {
        pc_val lv = pc_lookup(g, "logits");
        *n = pc_shape_numel(pc_val_shape(g, lv));
        out = malloc((size_t)*n * sizeof *out);
        memcpy(out, pc_exec_data(r, lv), (size_t)*n * sizeof *out);
    }
    if (!out) fprintf(stderr, "\n  run: %s\n", err);
    if (s->mixed && g) CU_ASSERT(pc_lookup(g, "adapter_ids") != PC_NONE);
    free(bound);
    pc_exec_free(r);
    pc_store_free(&st);
    pc_folded_free(&f);
    pc_graph_free(g);
    return out;
}

/* the mixed batch of `names` with rows' ids vs each row alone with its adapter (a session opened
 * on that adapter's directory alone, or the bare model) */
static void check_mixed(const char *const *names, int nnames, const int32_t ids[B]) {
    make_all();
    char err[4096] = "", p[1024];
    pc_session s;
    CU_ASSERT_FATAL(pc_session_open(&s, NULL, MODEL, NULL, NULL, err, sizeof err) == 0);
    for (int i = 0; i < nnames; i++) {
        path_of(p, sizeof p, names[i]);
        if (pc_session_add_adapter(&s, names[i], p, err, sizeof err)) {
            fprintf(stderr, "\n  %s\n", err);
            CU_FAIL("add");
        }
    }
    s.mixed = true;
    int32_t tokens[B * S];
    tokens_of(tokens, B * S, 11);
    static const pc_backend_kind kinds[2] = {PC_BACKEND_REF, PC_BACKEND_JIT};
    for (int k = 0; k < 2; k++) {
        int64_t n = 0;
        float *mixed = run(&s, B, tokens, ids, kinds[k], &n);
        CU_ASSERT_FATAL(mixed != NULL);
        double worst = 0;
        for (int row = 0; row < B; row++) {
            pc_session one;
            const char *ad = NULL;
            if (ids[row] < nnames) path_of(p, sizeof p, names[ids[row]]), ad = p;
            CU_ASSERT_FATAL(pc_session_open(&one, NULL, MODEL, NULL, ad, err, sizeof err) == 0);
            int64_t m = 0;
            float *alone = run(&one, 1, tokens + row * S, NULL, kinds[k], &m);
            CU_ASSERT_FATAL(alone != NULL && m * B == n);
            double rel = max_abs_diff(mixed + row * m, alone, m) / max_abs(alone, m);
            if (rel > worst) worst = rel;
            CU_ASSERT(rel <= 1e-5);
            free(alone);
            pc_session_close(&one);
        }
        printf("\n  %s: rows vs alone: max relative logit difference %.2e", k ? "jit" : "ref", worst);
        free(mixed);
    }
    /* every adapter changes its rows: the per-row choice is not a no-op */
    int64_t n0 = 0, n1 = 0;
    int32_t base[B], first[B];
    for (int i = 0; i < B; i++) base[i] = nnames, first[i] = 0;
    float *lb = run(&s, B, tokens, base, PC_BACKEND_REF, &n0), *l0 = run(&s, B, tokens, first, PC_BACKEND_REF, &n1);
    CU_ASSERT(lb && l0 && max_abs_diff(lb, l0, n0) > 1e-3);
    free(lb), free(l0);
    pc_session_close(&s);
}

static void test_lora_mixed(void) {
    static const char *names[] = {"a", "b", "c"};
    static const int32_t ids[B] = {0, 1, 3, 2, 1, 0}; /* 3 = __base__ */
    check_mixed(names, 3, ids);
}

static void test_ia3_mixed(void) {
    static const char *names[] = {"i1", "i2"};
    static const int32_t ids[B] = {1, 0, 2, 0, 1, 1};
    check_mixed(names, 2, ids);
}

static void expect_error(int rc, const char *err, const char *want) {
    CU_ASSERT(rc != 0);
    if (!strstr(err, want)) {
        fprintf(stderr, "\n  wanted '%s' in: %s\n", want, err);
        CU_FAIL("message");
    }
}

static void test_refusals(void) {
    make_all();
    char err[4096] = "", p[1024], q[1024];
    pc_session s;
    CU_ASSERT_FATAL(pc_session_open(&s, NULL, MODEL, NULL, NULL, err, sizeof err) == 0);
    path_of(p, sizeof p, "a"), path_of(q, sizeof q, "b");
    CU_ASSERT(pc_session_add_adapter(&s, "x", p, err, sizeof err) == 0);
    expect_error(pc_session_add_adapter(&s, "x", q, err, sizeof err), err, "two adapters are named 'x'");
    expect_error(pc_session_add_adapter(&s, "__base__", q, err, sizeof err), err, "not __base__");
    expect_error(pc_session_set_active(&s, "nope", err, sizeof err), err, "no adapter is named 'nope' (loaded: x, __base__)");
    path_of(p, sizeof p, "bad");
    expect_error(pc_session_add_adapter(&s, "bad", p, err, sizeof err), err, "adapter 'bad' does not fit");
    CU_ASSERT(strstr(err, "adapter_model.safetensors") && strstr(err, "lora_A.weight") && strstr(err, "expected f32"));
    CU_ASSERT_EQUAL(s.nnamed, 1);
    /* methods that differ, and a method without a per-row form */
    path_of(p, sizeof p, "i1");
    CU_ASSERT(pc_session_add_adapter(&s, "y", p, err, sizeof err) == 0);
    s.mixed = true;
    pc_build_req req = {.task = PC_TASK_FORWARD, .batch = 2, .seq = S, .mode = PC_ADAPT_EVAL};
    pc_graph *g = pc_session_build(&s, &req, false, err, sizeof err);
    expect_error(g == NULL, err, "adapters 'x' (lora) and 'y' (ia3) cannot be mixed in one batch");
    pc_graph_free(g);
    CU_ASSERT(pc_session_delete_adapter(&s, "x", err, sizeof err) == 0);
    CU_ASSERT(pc_session_delete_adapter(&s, "y", err, sizeof err) == 0);
    CU_ASSERT(s.nnamed == 0 && s.adapter.cfg == NULL && s.method == NULL);
    path_of(p, sizeof p, "p");
    CU_ASSERT(pc_session_add_adapter(&s, "p", p, err, sizeof err) == 0);
    g = pc_session_build(&s, &req, false, err, sizeof err);
    expect_error(g == NULL, err, "prompt_tuning cannot be mixed in one batch");
    pc_graph_free(g);
    pc_session_close(&s);
}

/* active, delete, and PEFT's layout: "default" at the root, the others in subdirectories */
static void test_named_and_layout(void) {
    make_all();
    char err[4096] = "", p[1024], cmd[16384];
    path_of(p, sizeof p, "layout");
    snprintf(cmd, sizeof cmd, "mkdir -p %s/checkpoint-5 && cp %s/a/* %s && cp -r %s/b %s/zeta && cp -r %s/c %s/alpha && "
             "cp %s/c/* %s/checkpoint-5", p, tmp, p, tmp, p, tmp, p, tmp, p);
    CU_ASSERT_FATAL(system(cmd) == 0);
    pc_session s;
    CU_ASSERT_FATAL(pc_session_open(&s, NULL, MODEL, NULL, NULL, err, sizeof err) == 0);
    CU_ASSERT_FATAL(pc_session_add_adapters(&s, p, err, sizeof err) == 0);
    char names[256];
    pc_session_adapter_names(&s, names, sizeof names);
    CU_ASSERT_STRING_EQUAL(names, "default, alpha, zeta"); /* the root first, then by name; no checkpoint */
    CU_ASSERT_EQUAL(s.active, 0);
    CU_ASSERT(s.adapter.cfg && s.adapter.cfg->r == 4);
    CU_ASSERT(pc_session_set_active(&s, "zeta", err, sizeof err) == 0);
    CU_ASSERT(s.adapter.cfg && s.adapter.cfg->r == 8 && s.adapter.cfg->lora.use_rslora);
    CU_ASSERT(pc_session_set_active(&s, "__base__", err, sizeof err) == 0);
    CU_ASSERT(s.adapter.cfg == NULL && s.active == -1);
    CU_ASSERT(pc_session_set_active(&s, "alpha", err, sizeof err) == 0);
    CU_ASSERT(pc_session_delete_adapter(&s, "alpha", err, sizeof err) == 0);
    CU_ASSERT(s.active == 0 && s.nnamed == 2 && s.adapter.cfg->r == 4);
    expect_error(pc_session_add_adapters(&s, p, err, sizeof err), err, "two adapters are named 'default'");
    pc_session_close(&s);
    /* a directory of subdirectories only */
    snprintf(cmd, sizeof cmd, "rm %s/adapter_config.json %s/adapter_model.safetensors", p, p);
    CU_ASSERT_FATAL(system(cmd) == 0);
    CU_ASSERT_FATAL(pc_session_open(&s, NULL, MODEL, NULL, NULL, err, sizeof err) == 0);
    CU_ASSERT(pc_session_add_adapters(&s, p, err, sizeof err) == 0);
    pc_session_adapter_names(&s, names, sizeof names);
    CU_ASSERT_STRING_EQUAL(names, "alpha, zeta");
    pc_session_close(&s);
}

/* hot swap: a's weights replaced under a running JIT executor of the mixed graph, refreshed in
 * place (one executor compiled in all), equal to an executor compiled anew; a replacement that
 * builds another graph is refused and changes nothing */
static void test_hot_swap(void) {
    make_all();
    char err[4096] = "", p[1024];
    pc_session s;
    CU_ASSERT_FATAL(pc_session_open(&s, NULL, MODEL, NULL, NULL, err, sizeof err) == 0);
    path_of(p, sizeof p, "a");
    CU_ASSERT_FATAL(pc_session_add_adapter(&s, "a", p, err, sizeof err) == 0);
    path_of(p, sizeof p, "c");
    CU_ASSERT_FATAL(pc_session_add_adapter(&s, "c", p, err, sizeof err) == 0);
    s.mixed = true;
    int32_t tokens[B * S], ids[B] = {0, 1, 2, 0, 0, 1}, *bound = NULL;
    tokens_of(tokens, B * S, 5);
    pc_store st = {0};
    pc_folded f = {0};
    pc_build_req req = {.task = PC_TASK_FORWARD, .batch = B, .seq = S, .mode = PC_ADAPT_EVAL};
    pc_graph *g = pc_session_inference_graph(&s, &req, &st, &f, err, sizeof err);
    CU_ASSERT_FATAL(g != NULL);
    pc_exec *r = pc_exec_new(g, &(pc_exec_opts){.kind = PC_BACKEND_JIT, .threads = 1}, err, sizeof err);
    CU_ASSERT_FATAL(r && !pc_session_bind_inference(&s, g, &st, &f, r, err, sizeof err) &&
                    !pc_exec_bind(r, pc_lookup(g, "tokens"), tokens) &&
                    !pc_session_bind_adapter_ids(&s, g, r, ids, &bound, err, sizeof err));
    pc_val lv = pc_lookup(g, "logits");
    int64_t n = pc_shape_numel(pc_val_shape(g, lv));
    float *before = malloc((size_t)n * sizeof *before);
    CU_ASSERT_FATAL(pc_exec_run(r, err, sizeof err) == 0);
    memcpy(before, pc_exec_data(r, lv), (size_t)n * sizeof *before);
    /* another graph: refused, nothing changed */
    path_of(p, sizeof p, "b");
    int rc = pc_session_replace_adapter(&s, "a", p, err, sizeof err);
    expect_error(rc, err, "builds another graph than");
    CU_ASSERT(strstr(s.named[0].source, "/a") != NULL && s.named[0].files.cfg->r == 4);
    path_of(p, sizeof p, "a2");
    CU_ASSERT_FATAL(pc_session_replace_adapter(&s, "a", p, err, sizeof err) == 0);
    CU_ASSERT_FATAL(pc_session_refresh_inference(&s, &req, g, &st, &f, r, err, sizeof err) == 0);
    CU_ASSERT_FATAL(pc_exec_run(r, err, sizeof err) == 0);
    int64_t m = 0;
    float *fresh = run(&s, B, tokens, ids, PC_BACKEND_JIT, &m);
    CU_ASSERT_FATAL(fresh && m == n);
    const float *swapped = pc_exec_data(r, lv);
    double d_fresh = max_abs_diff(swapped, fresh, n) / max_abs(fresh, n);
    double d_before = max_abs_diff(swapped, before, n) / max_abs(before, n);
    printf("\n  the same executor after the swap vs one compiled anew: %.2e; vs before the swap: %.2e", d_fresh,
           d_before);
    CU_ASSERT(d_fresh <= 1e-6);
    CU_ASSERT(d_before > 1e-3);
    /* the rows of c and of the base model did not move */
    for (int row = 0; row < B; row++)
        if (ids[row] != 0)
            CU_ASSERT(max_abs_diff(swapped + row * (n / B), before + row * (n / B), n / B) == 0);
    free(fresh);
    free(before);
    free(bound);
    pc_exec_free(r);
    pc_store_free(&st);
    pc_folded_free(&f);
    pc_graph_free(g);
    pc_session_close(&s);
}

static void test_cleanup(void) {
    CU_ASSERT(cu_rm_tree(tmp) == 0);
    free(tmp);
    tmp = NULL;
}

static CU_TestInfo tests[] = {
    {"LoRA mixed batch = rows alone (ranks, alphas, rsLoRA, base rows)", test_lora_mixed},
    {"IA3 mixed batch = rows alone (output and feedforward scaling)", test_ia3_mixed},
    {"refusals: names, fit, methods that cannot mix", test_refusals},
    {"named adapters: active, delete, PEFT's directory layout", test_named_and_layout},
    {"hot swap: new weights under a running executor, no recompilation", test_hot_swap},
    {"cleanup", test_cleanup},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("multi_adapter", tests)
