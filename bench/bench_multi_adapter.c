/* bench_multi_adapter: the peftc side of bench/multi_adapter.sh. A batch of B rows on a Llama,
 * forward + cross-entropy (the eval graph), on the compiled backend, 1 thread, in three modes:
 *   one    every row on the first adapter: the ordinary single-adapter graph
 *   mixed  row i on adapter i mod N: one mixed graph (%adapter_ids, stacked A/B gathered per row)
 *   base   no adapter
 *
 *   bench_multi_adapter --model M --adapters DIR [--batch 8] [--seq 64] [--steps 20] [--warmup 3]
 *                       [--base-dtype f32|bf16]
 *
 * DIR is PEFT's multi-adapter layout (bench/torch_multi_adapter.py writes one with 8 LoRA
 * adapters). Also counted: the executors compiled while switching every row to another adapter
 * between runs of the mixed graph (the ids are an input: none). One JSON line per mode:
 * ms_per_step_median, tokens_per_s_median, compile_s. */
#include "backend/exec.h"
#include "drivers/fold_weights.h"
#include "drivers/session.h"
#include "drivers/store.h"
#include "ir/ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench(pc_session *s, const char *mode, int B, int S, int steps, int warmup) {
    char err[4096] = "";
    pc_store st = {0};
    pc_folded f = {0};
    pc_exec *r = NULL;
    int32_t *tokens = malloc((size_t)B * S * sizeof *tokens), *targets = malloc((size_t)B * S * sizeof *targets);
    int32_t *ids = malloc((size_t)B * sizeof *ids), *bound = NULL;
    double *ts = malloc((size_t)(steps + warmup) * sizeof *ts);
    int rc = -1, compiles = 0;
    pc_build_req req = {.task = PC_TASK_LM, .batch = B, .seq = S, .mode = PC_ADAPT_EVAL};
    double t0 = now_s();
    pc_graph *g = pc_session_inference_graph(s, &req, &st, &f, err, sizeof err);
    if (!g) goto done;
    r = pc_exec_new(g, &(pc_exec_opts){.kind = PC_BACKEND_JIT, .threads = 1}, err, sizeof err);
    compiles++;
    double compile_s = now_s() - t0;
    for (int i = 0; i < B; i++) ids[i] = i % s->nnamed;
    if (!r || pc_session_bind_inference(s, g, &st, &f, r, err, sizeof err) ||
        pc_exec_bind(r, pc_lookup(g, "tokens"), tokens) || pc_exec_bind(r, pc_lookup(g, "targets"), targets) ||
        pc_session_bind_adapter_ids(s, g, r, s->mixed ? ids : NULL, &bound, err, sizeof err))
        goto done;
    uint32_t x = 1;
    for (int k = 0; k < steps + warmup; k++) {
        for (int i = 0; i < B * S; i++) {
            x = x * 1664525u + 1013904223u;
            tokens[i] = (int32_t)((x >> 8) % (uint32_t)s->model.info.vocab);
            targets[i] = (int32_t)((x >> 4) % (uint32_t)s->model.info.vocab);
        }
        if (bound) /* switch every row to the next adapter: an input, nothing recompiles */
            for (int i = 0; i < B; i++) bound[i] = (i + k) % s->nnamed;
        double t = now_s();
        if (pc_exec_run(r, err, sizeof err)) goto done;
        ts[k] = now_s() - t;
    }
    qsort(ts + warmup, (size_t)steps, sizeof *ts, cmp_d);
    double med = ts[warmup + steps / 2];
    printf("{\"bench\":\"peftc_multi_adapter\",\"base_dtype\":\"%s\",\"mode\":\"%s\",\"adapters\":%d,\"batch\":%d,\"seq\":%d,\"steps\":%d,"
           "\"ms_per_step_median\":%.3f,\"tokens_per_s_median\":%.1f,\"compile_s\":%.3f,\"executors_compiled\":%d,"
           "\"loss\":%.6f}\n", pc_dtype_name(s->base_dtype), mode, s->mixed ? s->nnamed : (s->active >= 0), B, S, steps, 1e3 * med,
           (double)B * S / med, compile_s, compiles, *(const float *)pc_exec_data(r, g->outputs[0]));
    rc = 0;
done:
    if (rc) fprintf(stderr, "bench_multi_adapter: %s: %s\n", mode, err);
    pc_exec_free(r);
    pc_store_free(&st);
    pc_folded_free(&f);
    pc_graph_free(g);
    free(tokens), free(targets), free(ids), free(bound), free(ts);
    return rc;
}

int main(int argc, char **argv) {
    const char *model = NULL, *dir = NULL;
    int B = 8, S = 64, steps = 20, warmup = 3, bf16 = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--adapters")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq")) S = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--base-dtype")) bf16 = !strcmp(argv[i + 1], "bf16");
        else { fprintf(stderr, "bench_multi_adapter: unknown option %s\n", argv[i]); return 1; }
    }
    if (!model || !dir || B <= 0 || S <= 0 || steps <= 0 || warmup < 0) {
        fprintf(stderr, "usage: bench_multi_adapter --model M --adapters DIR [--batch 8] [--seq 64] [--steps 20] "
                "[--warmup 3] [--base-dtype f32|bf16]\n");
        return 1;
    }
    char err[4096];
    pc_session s;
    if (pc_session_open(&s, NULL, model, NULL, NULL, err, sizeof err) || pc_session_add_adapters(&s, dir, err, sizeof err) ||
        pc_session_set_base_dtype(&s, bf16 ? PC_BF16 : PC_F32, err, sizeof err)) {
        fprintf(stderr, "bench_multi_adapter: %s\n", err);
        return 1;
    }
    int rc = bench(&s, "one", B, S, steps, warmup);
    s.mixed = true;
    rc |= bench(&s, "mixed", B, S, steps, warmup);
    s.mixed = false;
    rc |= pc_session_set_active(&s, PC_BASE_ADAPTER_NAME, err, sizeof err) || bench(&s, "base", B, S, steps, warmup);
    pc_session_close(&s);
    return rc ? 1 : 0;
}
