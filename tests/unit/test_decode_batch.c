/* The decoder kept open across requests (drivers/decode.h, peftc generate --prompts --batch):
 * on stories260K with two LoRA adapters in one mixed decode graph, rows decoded together, each
 * with its own prompt length, number of steps, adapter (or the base model) and sampler, give the
 * tokens and logits of generating each request alone with its adapter (pc_decode on a session
 * holding that adapter only), greedy and sampled, on the reference interpreter and the JIT, with
 * fewer requests than rows; and a hot swap under the open decoder (pc_session_replace_adapter +
 * pc_decoder_refresh) gives what a decoder built on the new weights gives. The second adapter
 * and the swapped-in one are the PEFT fixture's tensors transformed (written here). */
#include "cu_main.h"
#include "compare.h"
#include "temp_dir.h"
#include "drivers/decode.h"
#include "drivers/hot_swap.h"
#include "drivers/session.h"
#include "runtime/fileio.h"
#include "runtime/safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MODEL PEFTC_SOURCE_DIR "/data/stories260K/stories260K.bin"
#define FIXTURE PEFTC_SOURCE_DIR "/tests/data/peft_lora_stories260k_l2c"

enum { NREQ = 5, ROWS = 3, MAXSTEPS = 48, V = 512 };

static char *tmp;

/* dir = the fixture with every lora_B scaled by bscale and every lora_A's entries reversed when
 * flip: another adapter of the same shapes */
static void make_variant(const char *dir, float bscale, bool flip) {
    char err[2048] = "", path[1024];
    mkdir(dir, 0755);
    char *cfg = NULL;
    size_t n = 0;
    CU_ASSERT_FATAL(pc_read_file(FIXTURE "/adapter_config.json", &cfg, &n, err, sizeof err) == 0);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fwrite(cfg, 1, n, f);
    fclose(f);
    free(cfg);
    pc_st_file *in = pc_st_open(FIXTURE "/adapter_model.safetensors", err, sizeof err);
    CU_ASSERT_FATAL(in != NULL);
    pc_st_writer *w = pc_st_writer_new();
    float *bufs[256];
    int nb = pc_st_count(in);
    CU_ASSERT_FATAL(nb <= 256);
    for (int i = 0; i < nb; i++) {
        const pc_st_tensor *t = pc_st_get(in, i);
        int64_t m = pc_shape_numel(t->shape);
        float *d = bufs[i] = malloc((size_t)m * sizeof *d);
        CU_ASSERT_FATAL(d && pc_st_to_f32(in, t, d, err, sizeof err) == 0);
        bool is_b = strstr(t->name, "lora_B") != NULL;
        for (int64_t k = 0; is_b && k < m; k++) d[k] *= bscale;
        for (int64_t k = 0; !is_b && flip && k < m / 2; k++) {
            float x = d[k];
            d[k] = d[m - 1 - k], d[m - 1 - k] = x;
        }
        CU_ASSERT(pc_st_writer_add(w, t->name, PC_F32, t->shape, d, err, sizeof err) == 0);
    }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CU_ASSERT(pc_st_write(w, path, err, sizeof err) == 0);
    pc_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    pc_st_close(in);
}

static void setup(void) {
    if (tmp) return;
    tmp = pc_test_temp_dir("decode_batch");
    char p[1024];
    snprintf(p, sizeof p, "%s/b", tmp), make_variant(p, -3.0f, true);
    snprintf(p, sizeof p, "%s/a2", tmp), make_variant(p, 4.0f, false);
}

/* the requests: different prompt lengths, steps and adapters (2 = the base model) */
typedef struct {
    int32_t prompt[8];
    int np, steps, adapter;
    uint64_t seed;
} req;

static void requests(req *q) {
    static const int np[NREQ] = {1, 5, 3, 8, 2}, steps[NREQ] = {12, 30, 7, 48, 20}, ad[NREQ] = {0, 1, 2, 1, 0};
    uint32_t x = 17;
    for (int i = 0; i < NREQ; i++) {
        q[i] = (req){.np = np[i], .steps = steps[i], .adapter = ad[i], .seed = 100u + (uint64_t)i};
        q[i].prompt[0] = 1; /* BOS */
        for (int k = 1; k < np[i]; k++) x = x * 1664525u + 1013904223u, q[i].prompt[k] = (int32_t)(2 + (x >> 8) % 500);
    }
}

/* a session with adapters a (fixture or a_dir) and b by name; mixed or not */
static void open_session(pc_session *s, const char *a_dir, bool mixed) {
    char err[4096] = "", p[1024];
    CU_ASSERT_FATAL(pc_session_open(s, NULL, MODEL, NULL, NULL, err, sizeof err) == 0);
    CU_ASSERT_FATAL(pc_session_add_adapter(s, "a", a_dir, err, sizeof err) == 0);
    snprintf(p, sizeof p, "%s/b", tmp);
    CU_ASSERT_FATAL(pc_session_add_adapter(s, "b", p, err, sizeof err) == 0);
    s->mixed = mixed;
}

/* request q alone: a session holding its adapter only (one graph, no %adapter_ids) */
static void alone(const char *a_dir, const req *q, float temp, pc_backend_kind kind, int32_t *tokens, int *ntok,
                  float *logits, int *npos) {
    pc_session s;
    char err[4096] = "";
    open_session(&s, a_dir, false);
    CU_ASSERT_FATAL(pc_session_set_active(&s, q->adapter == 0 ? "a" : q->adapter == 1 ? "b" : PC_BASE_ADAPTER_NAME, err,
                                          sizeof err) == 0);
    pc_exec_opts eo = {.kind = kind, .threads = 1};
    pc_decode_opts o = {.steps = q->steps, .temperature = temp, .topp = 0.9f, .seed = q->seed, .prompt = q->prompt,
                        .n_prompt = q->np, .exec = &eo};
    int rc = pc_decode(&s, &o, tokens, ntok, logits, npos, err, sizeof err);
    if (rc) fprintf(stderr, "\n  alone: %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    pc_session_close(&s);
}

typedef struct {
    int32_t tokens[MAXSTEPS + 1];
    float logits[MAXSTEPS * V];
    pc_decode_row row;
} out;

/* every request through an open decoder of ROWS rows (ROWS, then the rest: fewer than ROWS) */
static void batched(pc_decoder *d, const req *q, float temp, out *o) {
    char err[4096] = "";
    for (int i0 = 0; i0 < NREQ; i0 += ROWS) {
        int n = NREQ - i0 < ROWS ? NREQ - i0 : ROWS;
        pc_decode_row rows[ROWS];
        for (int i = 0; i < n; i++)
            rows[i] = (pc_decode_row){.prompt = q[i0 + i].prompt, .n_prompt = q[i0 + i].np, .steps = q[i0 + i].steps,
                                      .adapter = q[i0 + i].adapter, .seed = q[i0 + i].seed,
                                      .tokens = o[i0 + i].tokens, .logits = o[i0 + i].logits};
        int rc = pc_decoder_run(d, rows, n, temp, 0.9f, err, sizeof err);
        if (rc) fprintf(stderr, "\n  batched: %s\n", err);
        CU_ASSERT_FATAL(rc == 0);
        for (int i = 0; i < n; i++) o[i0 + i].row = rows[i];
    }
}

/* each batched request vs the same alone: tokens equal, logits within 1e-5 of the largest;
 * returns the largest relative logit difference */
static double compare(const char *a_dir, const req *q, float temp, pc_backend_kind kind, const out *o) {
    double worst = 0;
    static int32_t tok[MAXSTEPS + 1];
    static float lg[MAXSTEPS * V];
    for (int i = 0; i < NREQ; i++) {
        int ntok = 0, npos = 0;
        alone(a_dir, &q[i], temp, kind, tok, &ntok, lg, &npos);
        CU_ASSERT_EQUAL(o[i].row.ntokens, ntok);
        CU_ASSERT_EQUAL(o[i].row.npos, npos);
        CU_ASSERT(ntok == o[i].row.ntokens && memcmp(tok, o[i].tokens, (size_t)ntok * sizeof *tok) == 0);
        int64_t n = (int64_t)npos * V;
        double d = n ? max_abs_diff(lg, o[i].logits, n) / max_abs(lg, n) : 0;
        worst = d > worst ? d : worst;
    }
    CU_ASSERT(worst <= 1e-5);
    return worst;
}

static void run_backend(pc_backend_kind kind) {
    setup();
    req q[NREQ];
    requests(q);
    pc_session s;
    open_session(&s, FIXTURE, true);
    char err[4096] = "";
    pc_exec_opts eo = {.kind = kind, .threads = 1};
    pc_decoder *d = pc_decoder_open(&s, ROWS, MAXSTEPS, &eo, NULL, err, sizeof err);
    if (!d) fprintf(stderr, "\n  open: %s\n", err);
    CU_ASSERT_FATAL(d != NULL);
    out *o = calloc(NREQ, sizeof *o);
    for (int sampled = 0; sampled <= 1; sampled++) {
        float temp = sampled ? 1.0f : 0.0f;
        batched(d, q, temp, o);
        double w = compare(FIXTURE, q, temp, kind, o);
        printf("\n  %s %s: %d requests in rows of %d = each alone, logits within %.2e", kind == PC_BACKEND_JIT ? "jit" : "ref",
               sampled ? "sampled" : "greedy", NREQ, ROWS, w);
    }
    /* the rows' adapters matter: request 1 (b) and the same prompt with a differ */
    req qa = q[1];
    qa.adapter = 0;
    int32_t tok[MAXSTEPS + 1];
    int ntok = 0;
    alone(FIXTURE, &qa, 0.0f, kind, tok, &ntok, NULL, NULL);
    batched(d, q, 0.0f, o);
    CU_ASSERT(ntok != o[1].row.ntokens || memcmp(tok, o[1].tokens, (size_t)ntok * sizeof *tok) != 0);
    /* hot swap of a under the open decoder = a decoder on the new weights */
    char p[1024];
    snprintf(p, sizeof p, "%s/a2", tmp);
    CU_ASSERT_FATAL(pc_session_replace_adapter(&s, "a", p, err, sizeof err) == 0);
    CU_ASSERT_FATAL(pc_decoder_refresh(d, err, sizeof err) == 0);
    out *o2 = calloc(NREQ, sizeof *o2);
    batched(d, q, 0.0f, o2);
    double w = compare(p, q, 0.0f, kind, o2);
    double moved = max_abs_diff(o[0].logits, o2[0].logits, V) / max_abs(o[0].logits, V);
    printf("\n  %s after a hot swap of a: = each alone on the new weights within %.2e; a's logits moved %.2e",
           kind == PC_BACKEND_JIT ? "jit" : "ref", w, moved);
    CU_ASSERT(moved > 1e-3);
    /* b's and the base model's rows did not move */
    CU_ASSERT(o[1].row.ntokens == o2[1].row.ntokens && memcmp(o[1].logits, o2[1].logits, sizeof o[1].logits) == 0);
    CU_ASSERT(memcmp(o[2].logits, o2[2].logits, sizeof o[2].logits) == 0);
    /* bad rows: more rows than the graph has, an adapter id out of range */
    pc_decode_row bad = {.prompt = q[0].prompt, .n_prompt = 1, .steps = 4, .adapter = 3, .tokens = o[0].tokens};
    CU_ASSERT(pc_decoder_run(d, &bad, 1, 0.0f, 0.9f, err, sizeof err) == -1 && strstr(err, "out of range"));
    bad.adapter = 0, bad.steps = MAXSTEPS + 1;
    CU_ASSERT(pc_decoder_run(d, &bad, 1, 0.0f, 0.9f, err, sizeof err) == -1 && strstr(err, "do not fit the KV cache"));
    CU_ASSERT(pc_decoder_run(d, &bad, ROWS + 1, 0.0f, 0.9f, err, sizeof err) == -1);
    free(o);
    free(o2);
    pc_decoder_free(d);
    pc_session_close(&s);
}

static void test_ref(void) { run_backend(PC_BACKEND_REF); }
static void test_jit(void) { run_backend(PC_BACKEND_JIT); }

static void test_cleanup(void) {
    CU_ASSERT(cu_rm_tree(tmp) == 0);
    free(tmp);
    tmp = NULL;
}

static CU_TestInfo tests[] = {
    {"rows of one mixed decode graph = each request alone, hot swap (ref)", test_ref},
    {"rows of one mixed decode graph = each request alone, hot swap (jit)", test_jit},
    {"cleanup", test_cleanup},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("decode_batch", tests)
