/* The generation loop over a family's decode graph, B rows at a time. */
#include "drivers/decode.h"
#include "backend/entry.h"
#include "drivers/fold_weights.h"
#include "drivers/hot_swap.h"
#include "drivers/sample.h"
#include "drivers/store.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* everything one decode graph holds, freed in one place */
struct pc_decoder {
    const pc_session *s;
    const struct pc_entry_provider *entries;
    pc_build_req req;
    int B, L, V;
    int64_t T;
    size_t row; /* floats of one position's keys (or values) in one layer */
    pc_graph *g;
    pc_exec *r;
    pc_store store;
    pc_folded folded;
    float *cache, *mask, *work;
    int32_t *tok, posv;
    pc_prob_index *scratch;
    pc_val *outs, vlog;
    int32_t *adapter_rows; /* %adapter_ids of a mixed graph */
    void *en; /* the entry function (entries) */
    char (*inames)[32];
    const char **inp;
    void **iptr;
    pc_entry_args ea;
    /* per row of a run */
    uint64_t *state;
    int *np, *steps;
    unsigned char *done;
};

void pc_decoder_free(pc_decoder *x) {
    if (!x) return;
    if (x->en) x->entries->close(x->en);
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
    free(x->tok);
    free(x->scratch);
    free(x->outs);
    free(x->adapter_rows);
    free(x->state);
    free(x->np);
    free(x->steps);
    free(x->done);
    free(x);
}

int pc_decode_capacity(int positions, const int *cache_sizes, int n, int64_t *T, char *err, size_t errlen) {
    *T = positions;
    if (n <= 0) return 0;
    int k = 0;
    while (k < n && cache_sizes[k] < positions) k++;
    if (k == n)
        return pc_errf(err, errlen, "generate: %d positions do not fit the KV cache of %d", positions, cache_sizes[n - 1]);
    *T = cache_sizes[k];
    return 0;
}

pc_decoder *pc_decoder_open(const pc_session *s, int B, int64_t T, const pc_exec_opts *exec,
                            const struct pc_entry_provider *entries, char *err, size_t errlen) {
    if (!s || B <= 0 || T <= 0) return pc_errf(err, errlen, "generate: bad decoder shape (B %d, T %lld)", B, (long long)T), NULL;
    pc_decoder *x = calloc(1, sizeof *x);
    if (!x) return pc_errf(err, errlen, "out of memory"), NULL;
    const pc_model_info *mi = &s->model.info;
    x->s = s, x->entries = entries, x->B = B, x->T = T, x->L = mi->n_layers, x->V = mi->vocab;
    x->row = (size_t)s->model.kv_row;
    const int L = x->L, V = x->V;
    const size_t cache_n = (size_t)B * (size_t)T * x->row; /* one layer's keys (or values), every row */
    x->req = (pc_build_req){.task = PC_TASK_DECODE, .batch = B, .seq = T, .mode = PC_ADAPT_DECODE};
    if (!(x->g = pc_session_inference_graph(s, &x->req, &x->store, &x->folded, err, errlen))) goto fail;
    x->cache = calloc(2 * (size_t)L * cache_n, sizeof *x->cache);
    x->mask = malloc((size_t)(T + 1) * sizeof *x->mask);
    x->work = malloc((size_t)V * sizeof *x->work);
    x->scratch = malloc((size_t)V * sizeof *x->scratch);
    x->outs = malloc(2 * (size_t)L * sizeof *x->outs);
    x->tok = calloc((size_t)B, sizeof *x->tok);
    x->state = calloc((size_t)B, sizeof *x->state);
    x->np = calloc((size_t)B, sizeof *x->np);
    x->steps = calloc((size_t)B, sizeof *x->steps);
    x->done = calloc((size_t)B, 1);
    if (!x->cache || !x->mask || !x->work || !x->scratch || !x->outs || !x->tok || !x->state || !x->np || !x->steps ||
        !x->done) {
        /* the KV cache is the big one: T positions of every layer and row */
        pc_errf(err, errlen, "generate: out of memory allocating the KV cache (%zu bytes for %lld positions of %d "
                "rows) and sampling buffers (%zu bytes)", 2 * (size_t)L * cache_n * sizeof *x->cache, (long long)T, B,
                2 * (size_t)V * sizeof *x->work);
        goto fail;
    }
    if (!(x->r = pc_exec_new(x->g, exec, err, errlen))) goto fail;
    if (pc_session_bind_inference(s, x->g, &x->store, &x->folded, x->r, err, errlen)) goto fail;
    /* a mixed graph (several adapters): every row the active adapter until a run says otherwise */
    if (pc_session_bind_adapter_ids(s, x->g, x->r, NULL, &x->adapter_rows, err, errlen)) goto fail;
    x->vlog = pc_lookup(x->g, "logits");
    if (pc_exec_bind(x->r, pc_lookup(x->g, "token"), x->tok) || pc_exec_bind(x->r, pc_lookup(x->g, "pos"), &x->posv) ||
        pc_exec_bind(x->r, pc_lookup(x->g, "mask"), x->mask)) {
        pc_errf(err, errlen, "generate: cannot bind the decode inputs");
        goto fail;
    }
    char name[64];
    for (int i = 0; i < 2 * L; i++) {
        snprintf(name, sizeof name, "%s_cache.%d", i < L ? "k" : "v", i % L);
        if (pc_exec_bind(x->r, pc_lookup(x->g, name), x->cache + (size_t)i * cache_n)) {
            pc_errf(err, errlen, "generate: cannot bind %%%s", name);
            goto fail;
        }
        snprintf(name, sizeof name, "%s_new.%d", i < L ? "k" : "v", i % L);
        x->outs[i] = pc_lookup(x->g, name);
    }
    if (entries && (!exec || exec->kind == PC_BACKEND_JIT)) {
        int n = 3 + 2 * L + (x->adapter_rows ? 1 : 0);
        x->inames = calloc((size_t)n, sizeof *x->inames);
        x->inp = calloc((size_t)n, sizeof *x->inp);
        x->iptr = calloc((size_t)n, sizeof *x->iptr);
        if (!x->inames || !x->inp || !x->iptr) { pc_errf(err, errlen, "generate: out of memory"); goto fail; }
        snprintf(x->inames[0], sizeof x->inames[0], "token"), x->iptr[0] = x->tok;
        snprintf(x->inames[1], sizeof x->inames[1], "pos"), x->iptr[1] = &x->posv;
        snprintf(x->inames[2], sizeof x->inames[2], "mask"), x->iptr[2] = x->mask;
        for (int i = 0; i < 2 * L; i++) {
            snprintf(x->inames[3 + i], sizeof x->inames[3 + i], "%s_cache.%d", i < L ? "k" : "v", i % L);
            x->iptr[3 + i] = x->cache + (size_t)i * cache_n;
        }
        if (x->adapter_rows)
            snprintf(x->inames[n - 1], sizeof x->inames[n - 1], "adapter_ids"), x->iptr[n - 1] = x->adapter_rows;
        for (int i = 0; i < n; i++) x->inp[i] = x->inames[i];
        if (pc_entry_args_init(&x->ea, x->g, x->inp, x->iptr, n, err, errlen) ||
            !(x->en = entries->open(entries, x->r, x->g, err, errlen)))
            goto fail;
    }
    return x;
fail:
    pc_decoder_free(x);
    return NULL;
}

int pc_decoder_refresh(pc_decoder *x, char *err, size_t errlen) {
    return pc_session_refresh_inference(x->s, &x->req, x->g, &x->store, &x->folded, x->r, err, errlen);
}

/* checks row b's request; its positions in *steps */
static int row_check(const pc_decoder *x, int b, const pc_decode_row *w, int P, int *steps, char *err, size_t errlen) {
    const pc_model_info *mi = &x->s->model.info;
    const int room = mi->context - P;
    *steps = w->steps <= 0 || w->steps > room ? room : w->steps;
    const int np = w->prompt && w->n_prompt > 0 ? w->n_prompt : 1;
    const char *who = x->B > 1 ? "generate: row " : "generate";
    char rowname[32] = "";
    if (x->B > 1) snprintf(rowname, sizeof rowname, "%d", b);
    if ((!w->prompt || w->n_prompt <= 0) && mi->start_id < 0)
        return pc_errf(err, errlen, "%s%s: %s has no BOS token to start from: give a prompt", who, rowname, x->s->model.path);
    if (np > *steps)
        return pc_errf(err, errlen, "%s%s: the prompt (%d tokens) is longer than steps (%d)", who, rowname, np, *steps);
    for (int i = 0; i < np && w->prompt && w->n_prompt > 0; i++)
        if (w->prompt[i] < 0 || w->prompt[i] >= x->V)
            return pc_errf(err, errlen, "%s%s: prompt token %d (%d) is out of the vocabulary [0, %d)", who, rowname, i,
                           (int)w->prompt[i], x->V);
    if (P + *steps > x->T)
        return pc_errf(err, errlen, "generate: %d positions do not fit the KV cache of %lld", P + *steps, (long long)x->T);
    const pc_session *s = x->s;
    if (w->adapter < -1 || w->adapter > s->nnamed)
        return pc_errf(err, errlen, "%s%s: adapter id %d is out of range (0..%d)", who, rowname, (int)w->adapter, s->nnamed);
    if (w->adapter >= 0 && !x->adapter_rows && w->adapter != (s->active < 0 ? s->nnamed : s->active))
        return pc_errf(err, errlen, "%s%s: adapter %d asked of a graph built for one adapter (not a mixed session)", who,
                       rowname, (int)w->adapter);
    return 0;
}

int pc_decoder_run(pc_decoder *x, pc_decode_row *rows, int n, float temperature, float topp, char *err,
                   size_t errlen) {
    if (!x || !rows || n <= 0 || n > x->B) return pc_errf(err, errlen, "generate: bad rows (%d of %d)", n, x ? x->B : 0);
    const pc_session *s = x->s;
    const pc_model_info *mi = &s->model.info;
    /* P positions before the text: Pk prefix rows the decode graph fills itself, then the
     * virtual tokens the loop feeds */
    const int P = s->merged ? 0 : pc_session_virtual_tokens(s), V = x->V, L = x->L, B = x->B;
    const int Pk = s->merged ? 0 : pc_session_prefix_positions(s);
    const int32_t start = mi->start_id; /* an empty prompt starts from the model's BOS */
    const int32_t active = s->active < 0 ? s->nnamed : s->active;
    int maxsteps = 0;
    for (int b = 0; b < B; b++) {
        x->done[b] = b >= n;
        if (x->adapter_rows) x->adapter_rows[b] = b < n && rows[b].adapter >= 0 ? rows[b].adapter : active;
        if (b >= n) continue;
        pc_decode_row *w = &rows[b];
        w->ntokens = w->npos = 0;
        if (row_check(x, b, w, P, &x->steps[b], err, errlen)) return -1;
        x->np[b] = w->prompt && w->n_prompt > 0 ? w->n_prompt : 1;
        for (int i = 0; i < x->np[b]; i++) w->tokens[i] = w->prompt && w->n_prompt > 0 ? w->prompt[i] : start;
        w->ntokens = x->np[b];
        x->state[b] = w->seed ? w->seed : 0x9E3779B97F4A7C15ull;
        if (x->steps[b] > maxsteps) maxsteps = x->steps[b];
    }
    const size_t row = x->row, cache_n = (size_t)B * (size_t)x->T * row;
    /* cache position c holds prefix row c (c < Pk), virtual token c - Pk (c < P), then real
     * position c - P; every row at the same position */
    for (int c = Pk; c < P + maxsteps; c++) {
        const int pos = c - P;
        int live = 0;
        for (int b = 0; b < B; b++) {
            bool on = !x->done[b] && pos < x->steps[b];
            live += on;
            /* an idle row is fed its BOS-or-0 token: computed, never read */
            x->tok[b] = c < P ? V + c - Pk : on ? rows[b].tokens[pos] : (start >= 0 ? start : 0);
        }
        if (!live) break;
        x->posv = c;
        for (int64_t j = 0; j < x->T; j++) x->mask[j] = j < c ? 0.0f : -1e30f;
        x->mask[x->T] = 0.0f;
        if (x->en ? x->entries->call(x->en, x->ea.args, err, errlen) : pc_exec_run(x->r, err, errlen)) {
            char msg[4096]; /* which position: a numerical fault names it */
            snprintf(msg, sizeof msg, "%s", err);
            if (c < P) pc_errf(err, errlen, "virtual token %d: %s", c - Pk, msg);
            else pc_errf(err, errlen, "position %d: %s", pos, msg);
            return -1;
        }
        const float *lg = x->en ? pc_entry_args_output(&x->ea, x->vlog) : pc_exec_data(x->r, x->vlog);
        if (!lg) return pc_errf(err, errlen, "generate: no logits after the run");
        for (int i = 0; i < 2 * L; i++) {
            const float *kv = x->en ? pc_entry_args_output(&x->ea, x->outs[i]) : pc_exec_data(x->r, x->outs[i]);
            if (!kv) return pc_errf(err, errlen, "generate: no %s after the run", pc_val_name(x->g, x->outs[i]));
            for (int b = 0; b < B; b++) /* k_new [B,1,...]: row b's new entry at position c */
                memcpy(x->cache + (size_t)i * cache_n + ((size_t)b * (size_t)x->T + (size_t)c) * row, kv + (size_t)b * row,
                       row * sizeof *kv);
        }
        if (c < P) continue; /* a virtual token predicts nothing */
        for (int b = 0; b < n; b++) {
            pc_decode_row *w = &rows[b];
            if (x->done[b] || pos >= x->steps[b]) continue;
            const float *lb = lg + (size_t)b * (size_t)V;
            w->npos = pos + 1;
            if (w->logits) memcpy(w->logits + (size_t)pos * (size_t)V, lb, (size_t)V * sizeof *lb);
            if (pos + 1 < x->np[b]) continue; /* still forcing the prompt */
            memcpy(x->work, lb, (size_t)V * sizeof *x->work);
            int next = pc_sample(x->work, V, temperature, topp, &x->state[b], x->scratch);
            if (next < 0) return pc_errf(err, errlen, "generate: sampling failed");
            if (next == mi->stop_id) { x->done[b] = 1; continue; }
            w->tokens[w->ntokens++] = next;
        }
    }
    return 0;
}

int pc_decode(const pc_session *s, const pc_decode_opts *o, int32_t *tokens, int *ntokens, float *logits, int *npos,
              char *err, size_t errlen) {
    if (ntokens) *ntokens = 0;
    if (npos) *npos = 0;
    if (!s || !o || !tokens || !ntokens) return pc_errf(err, errlen, "generate: NULL argument");
    const pc_model_info *mi = &s->model.info;
    const int P = s->merged ? 0 : pc_session_virtual_tokens(s);
    const int room = mi->context - P;
    int steps = o->steps <= 0 || o->steps > room ? room : o->steps;
    if ((!o->prompt || o->n_prompt <= 0) && mi->start_id < 0)
        return pc_errf(err, errlen, "generate: %s has no BOS token to start from: give a prompt", s->model.path);
    int np = o->prompt && o->n_prompt > 0 ? o->n_prompt : 1;
    if (np > steps) return pc_errf(err, errlen, "generate: the prompt (%d tokens) is longer than steps (%d)", np, steps);
    int64_t T;
    if (pc_decode_capacity(P + steps, o->cache_sizes, o->ncache_sizes, &T, err, errlen)) return -1;
    pc_decode_row w = {.prompt = o->prompt, .n_prompt = o->n_prompt, .steps = steps, .adapter = -1, .seed = o->seed,
                       .tokens = tokens, .logits = logits};
    pc_decoder *d = pc_decoder_open(s, 1, T, o->exec, o->entries, err, errlen);
    int rc = d ? pc_decoder_run(d, &w, 1, o->temperature, o->topp, err, errlen) : -1;
    pc_decoder_free(d);
    if (rc) return -1;
    *ntokens = w.ntokens;
    if (npos) *npos = w.npos;
    return 0;
}
