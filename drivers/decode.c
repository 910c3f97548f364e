/* The generation loop over a family's decode graph. */
#include "drivers/decode.h"
#include "backend/entry.h"
#include "drivers/sample.h"
#include "drivers/fold_weights.h"
#include "drivers/store.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* everything one generation holds, freed in one place */
typedef struct {
    pc_graph *g;
    pc_exec *r;
    pc_store store;
    pc_folded folded;
    float *cache, *mask, *work;
    pc_prob_index *scratch;
    pc_val *outs;
    int32_t *adapter_rows; /* %adapter_ids of a mixed graph */
    void *en; /* the entry function (o->entries) */
    char (*inames)[32];
    const char **inp;
    void **iptr;
    pc_entry_args ea;
} gen;

static void gen_free(gen *x, const pc_decode_opts *o) {
    if (x->en) o->entries->close(x->en);
    pc_entry_args_free(&x->ea);
    free(x->inames);
    free(x->inp);
    free(x->iptr);
    pc_exec_free(x->r);
    pc_store_free(&x->store);
    pc_folded_free(&x->folded);
    pc_graph_free(x->g);
    free(x->cache);
    free(x->mask);
    free(x->work);
    free(x->scratch);
    free(x->outs);
    free(x->adapter_rows);
}

int pc_decode(const pc_session *s, const pc_decode_opts *o, int32_t *tokens, int *ntokens, float *logits, int *npos,
              char *err, size_t errlen) {
    if (ntokens) *ntokens = 0;
    if (npos) *npos = 0;
    if (!s || !o || !tokens || !ntokens) return pc_errf(err, errlen, "generate: NULL argument");
    const pc_model_info *mi = &s->model.info;
    /* P positions before the text: Pk prefix rows the decode graph fills itself, then the
     * virtual tokens the loop feeds */
    const int P = s->merged ? 0 : pc_session_virtual_tokens(s), L = mi->n_layers, V = mi->vocab;
    const int Pk = s->merged ? 0 : pc_session_prefix_positions(s);
    const int room = mi->context - P;
    int steps = o->steps <= 0 || o->steps > room ? room : o->steps;
    const int32_t start = mi->start_id; /* an empty prompt starts from the model's BOS */
    if ((!o->prompt || o->n_prompt <= 0) && start < 0)
        return pc_errf(err, errlen, "generate: %s has no BOS token to start from: give a prompt", s->model.path);
    const int32_t *prompt = o->prompt && o->n_prompt > 0 ? o->prompt : &start;
    int np = o->prompt && o->n_prompt > 0 ? o->n_prompt : 1;
    if (np > steps) return pc_errf(err, errlen, "generate: the prompt (%d tokens) is longer than steps (%d)", np, steps);
    for (int i = 0; i < np; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return pc_errf(err, errlen, "generate: prompt token %d (%d) is out of the vocabulary [0, %d)", i, (int)prompt[i], V);
    int64_t T = P + steps;
    if (o->ncache_sizes > 0) {
        int k = 0;
        while (k < o->ncache_sizes && o->cache_sizes[k] < P + steps) k++;
        if (k == o->ncache_sizes)
            return pc_errf(err, errlen, "generate: %d positions do not fit the KV cache of %d", P + steps,
                           o->cache_sizes[o->ncache_sizes - 1]);
        T = o->cache_sizes[k];
    }
    const size_t row = (size_t)s->model.kv_row, cache_n = (size_t)T * row;
    gen x = {0};
    int rc = -1;
    pc_build_req req = {.task = PC_TASK_DECODE, .batch = 1, .seq = T, .mode = PC_ADAPT_DECODE};
    if (!(x.g = pc_session_inference_graph(s, &req, &x.store, &x.folded, err, errlen))) goto done;
    x.cache = calloc(2 * (size_t)L * cache_n, sizeof *x.cache);
    x.mask = malloc((size_t)(T + 1) * sizeof *x.mask);
    x.work = malloc((size_t)V * sizeof *x.work);
    x.scratch = malloc((size_t)V * sizeof *x.scratch);
    x.outs = malloc(2 * (size_t)L * sizeof *x.outs);
    if (!x.cache || !x.mask || !x.work || !x.scratch || !x.outs) {
        /* the KV cache is the big one: T positions of every layer */
        pc_errf(err, errlen, "generate: out of memory allocating the KV cache (%zu bytes for %lld positions) and "
                "sampling buffers (%zu bytes)", 2 * (size_t)L * cache_n * sizeof *x.cache, (long long)T,
                2 * (size_t)V * sizeof *x.work);
        goto done;
    }
    if (!(x.r = pc_exec_new(x.g, o->exec, err, errlen))) goto done;
    if (pc_session_bind_inference(s, x.g, &x.store, &x.folded, x.r, err, errlen)) goto done;
    /* a mixed graph (several adapters): the one row runs the active adapter */
    if (pc_session_bind_adapter_ids(s, x.g, x.r, NULL, &x.adapter_rows, err, errlen)) goto done;
    int32_t tok = 0, posv = 0;
    pc_val vlog = pc_lookup(x.g, "logits");
    if (pc_exec_bind(x.r, pc_lookup(x.g, "token"), &tok) || pc_exec_bind(x.r, pc_lookup(x.g, "pos"), &posv) ||
        pc_exec_bind(x.r, pc_lookup(x.g, "mask"), x.mask)) {
        pc_errf(err, errlen, "generate: cannot bind the decode inputs");
        goto done;
    }
    char name[64];
    for (int i = 0; i < 2 * L; i++) {
        snprintf(name, sizeof name, "%s_cache.%d", i < L ? "k" : "v", i % L);
        if (pc_exec_bind(x.r, pc_lookup(x.g, name), x.cache + (size_t)i * cache_n)) {
            pc_errf(err, errlen, "generate: cannot bind %%%s", name);
            goto done;
        }
        snprintf(name, sizeof name, "%s_new.%d", i < L ? "k" : "v", i % L);
        x.outs[i] = pc_lookup(x.g, name);
    }
    if (o->entries && (!o->exec || o->exec->kind == PC_BACKEND_JIT)) {
        int n = 3 + 2 * L + (x.adapter_rows ? 1 : 0);
        x.inames = calloc((size_t)n, sizeof *x.inames);
        x.inp = calloc((size_t)n, sizeof *x.inp);
        x.iptr = calloc((size_t)n, sizeof *x.iptr);
        if (!x.inames || !x.inp || !x.iptr) { pc_errf(err, errlen, "generate: out of memory"); goto done; }
        snprintf(x.inames[0], sizeof x.inames[0], "token"), x.iptr[0] = &tok;
        snprintf(x.inames[1], sizeof x.inames[1], "pos"), x.iptr[1] = &posv;
        snprintf(x.inames[2], sizeof x.inames[2], "mask"), x.iptr[2] = x.mask;
        for (int i = 0; i < 2 * L; i++) {
            snprintf(x.inames[3 + i], sizeof x.inames[3 + i], "%s_cache.%d", i < L ? "k" : "v", i % L);
            x.iptr[3 + i] = x.cache + (size_t)i * cache_n;
        }
        if (x.adapter_rows) snprintf(x.inames[n - 1], sizeof x.inames[n - 1], "adapter_ids"), x.iptr[n - 1] = x.adapter_rows;
        for (int i = 0; i < n; i++) x.inp[i] = x.inames[i];
        if (pc_entry_args_init(&x.ea, x.g, x.inp, x.iptr, n, err, errlen) ||
            !(x.en = o->entries->open(o->entries, x.r, x.g, err, errlen)))
            goto done;
    }
    uint64_t state = o->seed ? o->seed : 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < np; i++) tokens[i] = prompt[i];
    int n = np, pos = 0;
    /* cache position c holds prefix row c (c < Pk), virtual token c - Pk (c < P), then real
     * position c - P */
    for (int c = Pk; c < P + steps; c++) {
        pos = c - P;
        tok = c < P ? V + c - Pk : tokens[pos];
        posv = c;
        for (int64_t j = 0; j < T; j++) x.mask[j] = j < c ? 0.0f : -1e30f;
        x.mask[T] = 0.0f;
        if (x.en ? o->entries->call(x.en, x.ea.args, err, errlen) : pc_exec_run(x.r, err, errlen)) {
            char msg[4096]; /* which position: a numerical fault names it */
            snprintf(msg, sizeof msg, "%s", err);
            if (c < P) pc_errf(err, errlen, "virtual token %d: %s", c - Pk, msg);
            else pc_errf(err, errlen, "position %d: %s", pos, msg);
            goto done;
        }
        const float *lg = x.en ? pc_entry_args_output(&x.ea, vlog) : pc_exec_data(x.r, vlog);
        if (!lg) { pc_errf(err, errlen, "generate: no logits after the run"); goto done; }
        for (int i = 0; i < 2 * L; i++) {
            const float *kv = x.en ? pc_entry_args_output(&x.ea, x.outs[i]) : pc_exec_data(x.r, x.outs[i]);
            if (!kv) { pc_errf(err, errlen, "generate: no %s after the run", pc_val_name(x.g, x.outs[i])); goto done; }
            memcpy(x.cache + (size_t)i * cache_n + (size_t)c * row, kv, row * sizeof *kv);
        }
        if (c < P) continue; /* a virtual token predicts nothing */
        if (logits) memcpy(logits + (size_t)pos * (size_t)V, lg, (size_t)V * sizeof *lg);
        if (pos + 1 < np) continue; /* still forcing the prompt */
        memcpy(x.work, lg, (size_t)V * sizeof *x.work);
        int next = pc_sample(x.work, V, o->temperature, o->topp, &state, x.scratch);
        if (next < 0) { pc_errf(err, errlen, "generate: sampling failed"); goto done; }
        if (next == mi->stop_id) break;
        tokens[n++] = next;
    }
    *ntokens = n;
    if (npos) *npos = pos + 1 > 0 ? pos + 1 : 0;
    rc = 0;
done:
    gen_free(&x, o);
    return rc;
}
