/* peftc combine (drivers/combine.c) against PEFT 0.21's add_weighted_adapter
 * (tests/golden/gen_peft_combine.py, tests/data/peft_combine_stories260k):
 *   - cat, linear and the one-adapter case: every tensor vs PEFT's (relative 1e-6), and the
 *     config equal to PEFT's saved adapter_config.json (r, lora_alpha, the united targets, ...);
 *   - svd: B·A vs PEFT's B·A per module (relative 1e-4; the factors' signs are arbitrary);
 *   - ties, magnitude_prune (tensors) and ties_svd (B·A) vs PEFT; dare_linear's semantics;
 *   - svd with svd_rank 3 and svd_clamp 0.9 vs PEFT's steps replayed with the same sign rule;
 *   - each result written, loaded by a session and run: logits and loss vs PEFT's (1e-5);
 *   - IA3: a weighted sum;
 *   - refusals: each names the adapter, file or field, and nothing is written. */
#include "cu_main.h"
#include "peft_fixture.h"
#include "temp_dir.h"
#include "drivers/combine.h"
#include "runtime/adapter_io.h"
#include "runtime/atomic_dir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR PF_DATA("peft_combine_stories260k")
#define EXPECTED DIR "/expected.safetensors"

static const pc_combine_input ABC[] = {{"a", DIR "/a", 0.7}, {"b", DIR "/b", -0.4}, {"c", DIR "/c", 1.3}};
static const pc_combine_input SINGLE[] = {{"b", DIR "/b", 0.5}};

/* max |got - want| / max |want| over every "<combo>.<key>" tensor of the fixture; -1 when a key
 * is missing on either side or a shape differs */
static double tensors_rel(const pc_combined *c, const pc_st_file *ex, const char *combo, int *n) {
    double worst = 0;
    *n = 0;
    size_t lp = strlen(combo);
    for (int i = 0; i < pc_st_count(ex); i++) {
        const pc_st_tensor *e = pc_st_get(ex, i);
        if (strncmp(e->name, combo, lp) || e->name[lp] != '.' || strncmp(e->name + lp + 1, "base_model.", 11)) continue;
        const pc_combined_tensor *g = pc_combined_find(c, e->name + lp + 1);
        if (!g || g->shape.rank != 2 || g->shape.dim[0] != e->shape.dim[0] || g->shape.dim[1] != e->shape.dim[1]) {
            printf("\n    %s: missing or misshapen", e->name);
            return -1;
        }
        const float *w = e->data;
        size_t len = (size_t)e->shape.dim[0] * e->shape.dim[1];
        double d = 0, m = 0;
        for (size_t k = 0; k < len; k++) d = fmax(d, fabs(g->data[k] - w[k])), m = fmax(m, fabs(w[k]));
        worst = fmax(worst, m > 0 ? d / m : d);
        (*n)++;
    }
    if (*n != c->ntensors) {
        printf("\n    %s: %d tensors in the fixture, %d combined", combo, *n, c->ntensors);
        return -1;
    }
    return worst;
}

/* B·A of a module from row-major B [out, r] and A [r, in] */
static void product(const float *B, const float *A, int out, int r, int in, double *dw) {
    for (int o = 0; o < out; o++)
        for (int j = 0; j < in; j++) {
            double x = 0;
            for (int k = 0; k < r; k++) x += (double)B[o * r + k] * A[k * in + j];
            dw[o * in + j] = x;
        }
}

/* max over modules of |B·A - B'·A'| / max |B'·A'| (PEFT's factors primed) */
static double products_rel(const pc_combined *c, const pc_st_file *ex, const char *combo, int *n) {
    double worst = 0;
    *n = 0;
    for (int i = 0; i < c->ntensors; i++) {
        const char *ka = c->tensors[i].key, *suf = strstr(ka, ".lora_A.weight");
        if (!suf) continue;
        char kb[1024], ea[1100], eb[1100];
        snprintf(kb, sizeof kb, "%.*s.lora_B.weight", (int)(suf - ka), ka);
        snprintf(ea, sizeof ea, "%s.%s", combo, ka);
        snprintf(eb, sizeof eb, "%s.%s", combo, kb);
        const pc_combined_tensor *A = &c->tensors[i], *B = pc_combined_find(c, kb);
        const pc_st_tensor *PA = pc_st_find(ex, ea), *PB = pc_st_find(ex, eb);
        if (!B || !PA || !PB || PA->shape.dim[0] != A->shape.dim[0]) return -1;
        int out = (int)B->shape.dim[0], r = (int)A->shape.dim[0], in = (int)A->shape.dim[1];
        double *g = malloc(sizeof(double) * out * in), *w = malloc(sizeof(double) * out * in);
        product(B->data, A->data, out, r, in, g);
        product(PB->data, PA->data, out, r, in, w);
        double d = 0, m = 0;
        for (int k = 0; k < out * in; k++) d = fmax(d, fabs(g[k] - w[k])), m = fmax(m, fabs(w[k]));
        worst = fmax(worst, d / m);
        free(g), free(w);
        (*n)++;
    }
    return worst;
}

/* the combined config equals PEFT's saved one (pc_adapter_config_equal: every field; lists as sets) */
static void check_config(const pc_combined *c, const char *combo) {
    char path[4096], err[1024];
    snprintf(path, sizeof path, DIR "/%s_config.json", combo);
    pc_adapter_config *peft = pc_adapter_config_load(path, err, sizeof err);
    CU_ASSERT_FATAL(peft != NULL);
    bool same = pc_adapter_config_equal(c->cfg, peft);
    printf("\n    %s: config r %d, lora_alpha %g, %zu target modules: %s PEFT's", combo, c->cfg->r,
           c->cfg->lora.lora_alpha.v, c->cfg->target_modules.n, same ? "equal to" : "DIFFERENT from");
    CU_ASSERT(same);
    pc_adapter_config_free(peft);
}

/* max |logit| of a fixture tensor */
static double max_abs(const pc_st_file *f, const char *key) {
    const pc_st_tensor *t = pc_st_find(f, key);
    double m = 0;
    for (size_t k = 0; t && k < t->nbytes / sizeof(float); k++) m = fmax(m, fabs(((const float *)t->data)[k]));
    return m;
}

/* the session's run of the fixture's batch with `adapter`: logits vs "<combo>.logits" (relative
 * to max |logit|, 1e-5) and, where the fixture has it, the loss vs "<combo>.loss" (relative 1e-5) */
static void check_run(const char *adapter, const char *combo) {
    char key[64];
    pf_fixture x;
    if (pf_open(&x, adapter, EXPECTED, PC_ADAPT_EVAL, false, true)) {
        CU_FAIL("setup");
        pf_close(&x);
        return;
    }
    pc_exec *r = pf_run(&x, PC_BACKEND_JIT);
    CU_ASSERT_FATAL(r != NULL);
    snprintf(key, sizeof key, "%s.logits", combo);
    if (pc_st_find(x.ex, key)) { /* the pruned types keep the loss only (fixture size) */
        double d = pf_logits_diff(&x, r, NULL, key), m = max_abs(x.ex, key);
        printf("\n    %s: logits max |diff| vs PEFT %.3e (max |logit| %.1f: rel %.2e)", combo, d, m, d / m);
        CU_ASSERT(m > 1 && d <= 1e-5 * m);
    }
    snprintf(key, sizeof key, "%s.loss", combo);
    const pc_st_tensor *wl = pc_st_find(x.ex, key);
    pc_val lv = pf_output(x.g, true);
    CU_ASSERT(lv != PC_NONE && (wl || !strcmp(combo, "c")));
    if (wl && lv != PC_NONE) {
        float loss = *(const float *)pc_exec_data(r, lv), want = *(const float *)wl->data;
        printf(", loss %.7f (PEFT %.7f, rel %.2e)", loss, want, fabs(loss - want) / fabs(want));
        CU_ASSERT(fabs(loss - want) <= 1e-5 * fabs(want));
    }
    pc_exec_free(r);
    pf_close(&x);
}

/* writes the result and runs it (check_run) */
static void check_logits(const pc_combined *c, const char *combo) {
    char *tmp = pc_test_temp_dir("combine"), dir[4200], err[4096];
    snprintf(dir, sizeof dir, "%s/%s", tmp, combo);
    CU_ASSERT_EQUAL_FATAL(pc_combined_save(c, dir, err, sizeof err), 0);
    check_run(dir, combo);
    pc_remove_tree(tmp);
    free(tmp);
}

static void run_combo_opts(const char *combo, const pc_combine_input *in, int n, pc_combine_opts o, bool exact) {
    char err[4096];
    pc_combined c;
    int rc = pc_combine(in, n, &o, &c, err, sizeof err);
    if (rc) printf("\n    %s", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    char perr[512];
    pc_st_file *ex = pc_st_open(EXPECTED, perr, sizeof perr);
    CU_ASSERT_FATAL(ex != NULL);
    int nt;
    double d = exact ? tensors_rel(&c, ex, combo, &nt) : products_rel(&c, ex, combo, &nt);
    printf("\n    %s (%s): %d %s, max rel diff vs PEFT %.3e", combo, c.type, nt, exact ? "tensors" : "B*A products", d);
    CU_ASSERT(nt > 0 && d >= 0 && d <= (exact ? 1e-6 : 1e-4));
    check_config(&c, combo);
    check_logits(&c, combo);
    pc_st_close(ex);
    pc_combined_free(&c);
}

static void run_combo(const char *combo, const pc_combine_input *in, int n, const char *type, bool exact) {
    run_combo_opts(combo, in, n, (pc_combine_opts){.type = type}, exact);
}

static void test_cat(void) { run_combo("cat", ABC, 3, "cat", true); }
static void test_linear(void) { run_combo("linear", ABC, 2, "linear", true); }
static void test_svd(void) { run_combo("svd", ABC, 3, "svd", false); }
/* one adapter: PEFT switches svd to linear; b's rsLoRA passes to the result (scale √r: PEFT's overscaling) */
static void test_single(void) { run_combo("single", SINGLE, 1, "svd", true); }

/* PEFT's pruned merges: ties and magnitude_prune on A and B (exact), ties_svd with the count
 * election on the ΔWᵢ (B·A) */
static void test_ties(void) {
    run_combo_opts("ties", ABC, 2, (pc_combine_opts){.type = "ties", .pruned = true, .density = 0.5}, true);
}
static void test_magnitude_prune(void) {
    run_combo_opts("magnitude_prune", ABC, 2,
                   (pc_combine_opts){.type = "magnitude_prune", .pruned = true, .density = 0.4}, true);
}
static void test_ties_svd(void) {
    run_combo_opts("ties_svd", ABC, 3,
                   (pc_combine_opts){.type = "ties_svd", .pruned = true, .density = 0.6, .frequency = true}, false);
}

/* DARE: PEFT's semantics with peftc's draws: density 1 is the plain merge; at 0.5 about half the
 * entries of each input survive, rescaled by 2; the same seed gives the same result */
static void test_dare(void) {
    char err[4096];
    pc_combined lin, d1, h1, h2, h3;
    CU_ASSERT_EQUAL_FATAL(pc_combine(ABC, 2, &(pc_combine_opts){.type = "linear"}, &lin, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_combine(ABC, 2, &(pc_combine_opts){.type = "dare_linear", .pruned = true, .density = 1},
                                     &d1, err, sizeof err), 0);
    pc_combine_opts half = {.type = "dare_linear", .pruned = true, .density = 0.5, .seed = 7};
    CU_ASSERT_EQUAL_FATAL(pc_combine(ABC, 2, &half, &h1, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_combine(ABC, 2, &half, &h2, err, sizeof err), 0);
    half.seed = 8;
    CU_ASSERT_EQUAL_FATAL(pc_combine(ABC, 2, &half, &h3, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(lin.ntensors, d1.ntensors);
    bool same1 = true, same_seed = true, other_seed = true;
    for (int i = 0; i < lin.ntensors; i++) {
        size_t len = (size_t)lin.tensors[i].shape.dim[0] * lin.tensors[i].shape.dim[1];
        same1 &= !memcmp(lin.tensors[i].data, d1.tensors[i].data, len * sizeof(float));
        same_seed &= !memcmp(h1.tensors[i].data, h2.tensors[i].data, len * sizeof(float));
        other_seed &= !memcmp(h1.tensors[i].data, h3.tensors[i].data, len * sizeof(float));
    }
    CU_ASSERT(same1 && same_seed && !other_seed);
    /* one input (a on its own would be linear: PEFT's rule), so a and a weight-0 b: the entries
     * of A that survive are 2·√(w·s)·A, the rest 0 */
    pc_combine_input a0[] = {ABC[0], {"z", DIR "/b", 0.0}};
    pc_combined p;
    CU_ASSERT_EQUAL_FATAL(pc_combine(a0, 2, &half, &p, err, sizeof err), 0);
    pc_combined a1;
    CU_ASSERT_EQUAL_FATAL(pc_combine(a0, 2, &(pc_combine_opts){.type = "linear"}, &a1, err, sizeof err), 0);
    size_t kept = 0, total = 0, bad = 0;
    for (int i = 0; i < p.ntensors; i++) {
        size_t len = (size_t)p.tensors[i].shape.dim[0] * p.tensors[i].shape.dim[1];
        for (size_t k = 0; k < len; k++) {
            float x = p.tensors[i].data[k], y = a1.tensors[i].data[k];
            if (y == 0) continue; /* b's own modules (k_proj): weight 0 */
            total++;
            if (x != 0) kept++, bad += fabsf(x - 2 * y) > 1e-6f * fabsf(y);
        }
    }
    printf("\n    dare_linear density 0.5: %zu of %zu entries kept (%.3f), %zu not 2x the linear value", kept, total,
           (double)kept / total, bad);
    CU_ASSERT(fabs((double)kept / total - 0.5) < 0.02 && bad == 0);
    pc_combined *all[] = {&lin, &d1, &h1, &h2, &h3, &p, &a1};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pc_combined_free(all[i]);
}

/* input c alone: its rank_pattern / alpha_pattern read as PEFT runs them (what the combos rely on) */
static void test_input_c(void) { check_run(DIR "/c", "c"); }

/* svd_rank 3, svd_clamp 0.9: the factors themselves, signs fixed on both sides */
static void test_svd_clamp(void) {
    char err[4096], perr[512];
    pc_combined c;
    pc_combine_opts o = {.type = "svd", .svd_rank = 3, .clamp = true, .svd_clamp = 0.9};
    CU_ASSERT_EQUAL_FATAL(pc_combine(ABC, 3, &o, &c, err, sizeof err), 0);
    CU_ASSERT_EQUAL(c.cfg->r, 3);
    pc_st_file *ex = pc_st_open(EXPECTED, perr, sizeof perr);
    CU_ASSERT_FATAL(ex != NULL);
    int nt;
    double d = tensors_rel(&c, ex, "svd_clamp", &nt);
    printf("\n    svd_clamp: %d tensors, max rel diff vs PEFT's steps (fixed signs) %.3e", nt, d);
    CU_ASSERT(nt == 50 && d >= 0 && d <= 1e-4);
    pc_st_close(ex);
    pc_combined_free(&c);
}

/* max over modules of |B·A - B'·A'| / max |B'·A'| between two results (any ranks) */
static double results_rel(const pc_combined *x, const pc_combined *y) {
    double worst = 0;
    for (int i = 0; i < x->ntensors; i++) {
        const char *ka = x->tensors[i].key, *suf = strstr(ka, ".lora_A.weight");
        if (!suf) continue;
        char kb[1024];
        snprintf(kb, sizeof kb, "%.*s.lora_B.weight", (int)(suf - ka), ka);
        const pc_combined_tensor *xa = &x->tensors[i], *xb = pc_combined_find(x, kb), *ya = pc_combined_find(y, ka),
                                 *yb = pc_combined_find(y, kb);
        if (!xb || !ya || !yb) return INFINITY;
        int out = (int)xb->shape.dim[0], in = (int)xa->shape.dim[1];
        double *g = malloc(sizeof(double) * out * in), *w = malloc(sizeof(double) * out * in), d = 0, m = 0;
        product(xb->data, xa->data, out, (int)xa->shape.dim[0], in, g);
        product(yb->data, ya->data, out, (int)ya->shape.dim[0], in, w);
        for (int k = 0; k < out * in; k++) d = fmax(d, fabs(g[k] - w[k])), m = fmax(m, fabs(w[k]));
        worst = fmax(worst, d / m);
        free(g), free(w);
    }
    return worst;
}

/* svd at rank Σ rᵢ = 11 (the low-rank path: ΔW never formed) and at 12 (more than ΔW's rank: the
 * full SVD of ΔW) are both exact: B·A equals cat's */
static void test_svd_full_rank(void) {
    char err[4096];
    pc_combined cat, s11, s12;
    CU_ASSERT_EQUAL_FATAL(pc_combine(ABC, 3, &(pc_combine_opts){.type = "cat"}, &cat, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pc_combine(ABC, 3, &(pc_combine_opts){.type = "svd", .svd_rank = 11}, &s11, err, sizeof err),
                          0);
    CU_ASSERT_EQUAL_FATAL(pc_combine(ABC, 3, &(pc_combine_opts){.type = "svd", .svd_rank = 12}, &s12, err, sizeof err),
                          0);
    double d11 = results_rel(&s11, &cat), d12 = results_rel(&s12, &cat);
    printf("\n    svd rank 11 vs cat: B*A max rel diff %.3e; rank 12: %.3e", d11, d12);
    CU_ASSERT(d11 <= 1e-5 && d12 <= 1e-5);
    CU_ASSERT(s11.cfg->r == 11 && s12.cfg->r == 12);
    pc_combined_free(&cat), pc_combined_free(&s11), pc_combined_free(&s12);
}

/* IA3: l = Σ wᵢ lᵢ (the fixture's IA3 adapter under two names) */
static void test_ia3(void) {
    const char *ia3 = PF_DATA("peft_ia3_stories260k");
    pc_combine_input in[] = {{"x", ia3, 0.5}, {"y", ia3, -0.25}};
    char err[4096], perr[512];
    pc_combined c;
    int rc = pc_combine(in, 2, &(pc_combine_opts){0}, &c, err, sizeof err);
    if (rc) printf("\n    %s", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    char wpath[4096];
    snprintf(wpath, sizeof wpath, "%s/adapter_model.safetensors", ia3);
    pc_st_file *f = pc_st_open(wpath, perr, sizeof perr);
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL(c.ntensors, pc_st_count(f));
    double d = 0;
    for (int i = 0; i < c.ntensors; i++) {
        const pc_st_tensor *t = pc_st_find(f, c.tensors[i].key);
        CU_ASSERT_FATAL(t != NULL);
        const float *l = t->data;
        for (int64_t k = 0; k < t->shape.dim[0] * t->shape.dim[1]; k++)
            d = fmax(d, fabs(c.tensors[i].data[k] - (l[k] * 0.5f + l[k] * -0.25f)));
    }
    printf("\n    IA3: %d tensors, max |l - (0.5 l - 0.25 l)| %.3e", c.ntensors, d);
    CU_ASSERT(d == 0);
    CU_ASSERT(c.cfg->peft_type == PC_PEFT_IA3 && c.cfg->ia3.feedforward_modules.n == 1);
    pc_st_close(f);
    pc_combined_free(&c);
}

/* a copy of adapter a with one config field changed (edit), weights linked */
static char *variant(const char *tag, void (*edit)(pc_adapter_config *)) {
    char *tmp = pc_test_temp_dir(tag), path[4200], err[1024];
    pc_adapter_config *cfg = pc_adapter_config_load(DIR "/a", err, sizeof err);
    CU_ASSERT_FATAL(cfg != NULL);
    edit(cfg);
    snprintf(path, sizeof path, "%s/adapter_config.json", tmp);
    CU_ASSERT_FATAL(pc_adapter_config_write(cfg, path, err, sizeof err) == 0);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", tmp);
    CU_ASSERT_FATAL(symlink(DIR "/a/adapter_model.safetensors", path) == 0);
    pc_adapter_config_free(cfg);
    return tmp;
}
static void other_base(pc_adapter_config *c) { pc_config_set_str(&c->base_model_name_or_path, "other-model"); }
static void regex_targets(pc_adapter_config *c) {
    pc_spec_set_string(&c->target_modules, ".*(q_proj|v_proj|down_proj)");
}
static void dora(pc_adapter_config *c) { c->lora.use_dora = true; }

static void refused_opts(const pc_combine_input *in, int n, pc_combine_opts o, const char *want1, const char *want2) {
    char err[4096] = "";
    pc_combined c;
    int rc = pc_combine(in, n, &o, &c, err, sizeof err);
    printf("\n    %s", err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT(strstr(err, want1) != NULL);
    CU_ASSERT(!want2 || strstr(err, want2) != NULL);
    CU_ASSERT(c.cfg == NULL && c.ntensors == 0);
}
static void refused(const pc_combine_input *in, int n, const char *type, const char *want1, const char *want2) {
    refused_opts(in, n, (pc_combine_opts){.type = type}, want1, want2);
}

static void test_refusals(void) {
    refused((pc_combine_input[]){{"a", DIR "/a", 1}, {"a", DIR "/b", 1}}, 2, "cat", "adapter name 'a' is given twice",
            NULL);
    refused((pc_combine_input[]){{"a", DIR "/a", 1}, {"i", PF_DATA("peft_ia3_stories260k"), 1}}, 2, "cat",
            "adapter 'i'", "field \"peft_type\": IA3, but adapter 'a'");
    refused((pc_combine_input[]){{"h", PF_DATA("peft_loha_stories260k"), 1}, {"a", DIR "/a", 1}}, 2, "cat",
            "adapter 'h'", "LoHaModel has no add_weighted_adapter");
    refused((pc_combine_input[]){{"k", PF_DATA("peft_lokr_stories260k"), 1}}, 1, NULL, "adapter 'k'",
            "LoKrModel has no add_weighted_adapter");
    refused((pc_combine_input[]){{"d", PF_DATA("peft_adalora_stories260k"), 1}}, 1, NULL, "adapter 'd'",
            "does not support add_weighted_adapter");
    refused((pc_combine_input[]){{"p", PF_DATA("peft_prompt_stories260k"), 1}}, 1, NULL, "adapter 'p'",
            "PROMPT_TUNING");
    refused(ABC, 3, "linear", "adapter 'c'", "linear needs equal ranks");
    refused_opts((pc_combine_input[]){{"i", PF_DATA("peft_ia3_stories260k"), 1}}, 1,
                 (pc_combine_opts){.pruned = true, .density = 0.5}, "do not apply to IA3", NULL);
    refused((pc_combine_input[]){{"i", PF_DATA("peft_ia3_stories260k"), 1}}, 1, "cat", "--type cat: PEFT's IA3",
            NULL);
    refused(ABC, 3, "slerp", "--type slerp: unknown combination type", NULL);
    refused(ABC, 2, "ties", "--type ties needs --density", NULL);
    refused_opts(ABC, 3, (pc_combine_opts){.type = "ties", .pruned = true, .density = 0.5}, "adapter 'c'",
                 "ties needs equal ranks");
    refused_opts(ABC, 2, (pc_combine_opts){.type = "cat", .pruned = true, .density = 0.5},
                 "--density applies to ties, dare_* and magnitude_prune types, not cat", NULL);
    refused_opts(ABC, 2, (pc_combine_opts){.type = "linear", .frequency = true},
                 "--majority-sign-method applies to the ties and dare_ties types", NULL);
    refused_opts(ABC, 2, (pc_combine_opts){.type = "cat", .svd_rank = 2}, "--svd-rank / --svd-clamp apply", NULL);
    refused((pc_combine_input[]){{"a", DIR "/a", 1}, {"m", DIR "/missing", 1}}, 2, "cat", "adapter 'm'", "/missing");
    refused((pc_combine_input[]){{"a", DIR "/a", NAN}}, 1, NULL, "adapter 'a': weight nan", NULL);
    char *ob = variant("combine_base", other_base), *rx = variant("combine_rx", regex_targets),
         *dr = variant("combine_dora", dora);
    refused((pc_combine_input[]){{"a", DIR "/a", 1}, {"o", ob, 1}}, 2, "cat", "field \"base_model_name_or_path\"",
            "different base models");
    refused((pc_combine_input[]){{"a", DIR "/a", 1}, {"r", rx, 1}}, 2, "cat", "adapter 'r'",
            "field \"target_modules\" is a string");
    refused((pc_combine_input[]){{"d", dr, 1}, {"a", DIR "/a", 1}}, 2, "cat", "field \"use_dora\"", NULL);
    /* svd rank past what a module allows */
    char err[4096];
    pc_combined c;
    CU_ASSERT_EQUAL(pc_combine(ABC, 3, &(pc_combine_opts){.type = "svd", .svd_rank = 65}, &c, err,
                               sizeof err), -1);
    printf("\n    %s", err);
    CU_ASSERT(strstr(err, "--svd-rank 65") != NULL);
    /* a regex-targeted adapter with another: the targets join as PEFT joins them */
    CU_ASSERT_EQUAL_FATAL(pc_combine((pc_combine_input[]){{"r", rx, 1}, {"r2", rx, 0.5}}, 2,
                                     &(pc_combine_opts){.type = "cat"}, &c, err, sizeof err), 0);
    CU_ASSERT(c.cfg->target_modules.kind == PC_SPEC_STRING &&
              !strcmp(c.cfg->target_modules.str, "(.*(q_proj|v_proj|down_proj))|(.*(q_proj|v_proj|down_proj))"));
    CU_ASSERT_EQUAL(c.cfg->r, 8);
    pc_combined_free(&c);
    for (char **d = (char *[]){ob, rx, dr, NULL}; *d; d++) pc_remove_tree(*d), free(*d);
}

static CU_TestInfo tests[] = {
    {"cat vs PEFT", test_cat},
    {"linear vs PEFT", test_linear},
    {"svd vs PEFT (B*A)", test_svd},
    {"one adapter (linear, rsLoRA kept) vs PEFT", test_single},
    {"ties vs PEFT", test_ties},
    {"magnitude_prune vs PEFT", test_magnitude_prune},
    {"ties_svd (frequency) vs PEFT (B*A)", test_ties_svd},
    {"dare_linear: semantics", test_dare},
    {"input with rank/alpha patterns vs PEFT", test_input_c},
    {"svd at full rank: low-rank and full paths exact", test_svd_full_rank},
    {"svd rank 3 with clamp 0.9 vs PEFT's steps", test_svd_clamp},
    {"IA3 weighted sum", test_ia3},
    {"refusals", test_refusals},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("combine", tests)
