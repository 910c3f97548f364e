/* Batches of task data and multiple-choice scoring (see task_batch.h). */
#include "drivers/task_batch.h"
#include "runtime/fileio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int push(pc_td_item **items, size_t *n, size_t *cap, pc_td_item it) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        pc_td_item *p = realloc(*items, c * sizeof *p);
        if (!p) return -1;
        *items = p, *cap = c;
    }
    (*items)[(*n)++] = it;
    return 0;
}

/* the longest row of example e */
static int row_len(const pc_td_example *e) {
    if (!e->nchoices) return e->n;
    int m = 0;
    for (int c = 0; c < e->nchoices; c++)
        if (e->choice_off[c + 1] - e->choice_off[c] > m) m = e->choice_off[c + 1] - e->choice_off[c];
    return e->n_context + m;
}

int pc_td_items(const pc_task_data *d, const size_t *idx, size_t n, size_t S, pc_td_item **items, size_t *nitems,
                char *err, size_t errlen) {
    size_t cap = *nitems;
    for (size_t k = 0; k < n; k++) {
        size_t i = idx ? idx[k] : k;
        const pc_td_example *e = &d->ex[i];
        int len = row_len(e);
        if (d->shape == PC_TD_TEXT) {
            /* windows ids[w*S .. w*S+S+1), the last one shorter; each id after the first a target once */
            for (int start = 0; start + 1 < e->n; start += (int)S) {
                int l = e->n - start < (int)S + 1 ? e->n - start : (int)S + 1;
                if (push(items, nitems, &cap, (pc_td_item){(uint32_t)i, start, l})) return pc_errf(err, errlen, "out of memory");
            }
            continue;
        }
        if ((size_t)len > S + 1)
            return pc_errf(err, errlen, "%s:%d: %d tokens%s, more than a row of --seq %zu holds (give --seq %d or more)",
                           d->path, e->line, len, d->shape == PC_TD_CHOICE ? " (the context and its longest choice)" : "",
                           S, len - 1);
        if (push(items, nitems, &cap, (pc_td_item){(uint32_t)i, 0, len})) return pc_errf(err, errlen, "out of memory");
    }
    return 0;
}

int pc_task_batch_init(pc_task_batch *b, size_t E, size_t C, size_t S, int max_row, int default_task, char *err,
                       size_t errlen) {
    *b = (pc_task_batch){.E = E, .C = C ? C : 1, .S = S, .default_task = default_task};
    b->row = malloc(((size_t)max_row + 1) * sizeof *b->row);
    size_t R = E * b->C;
    b->tokens = malloc(R * S * sizeof *b->tokens);
    b->targets = malloc(R * S * sizeof *b->targets);
    b->labels = malloc(E * sizeof *b->labels);
    b->task_ids = malloc(R * sizeof *b->task_ids);
    if (!b->tokens || !b->targets || !b->labels || !b->task_ids || !b->row) {
        pc_task_batch_free(b);
        return pc_errf(err, errlen, "out of memory allocating batches of %zu x %zu tokens", R, S);
    }
    return 0;
}

void pc_task_batch_free(pc_task_batch *b) {
    free(b->tokens);
    free(b->targets);
    free(b->labels);
    free(b->task_ids);
    free(b->row);
    *b = (pc_task_batch){0};
}

/* row r from ids[0..n), targets from index first_target on; returns the targets written */
static size_t fill_row(pc_task_batch *b, size_t r, const int32_t *ids, int n, int first_target) {
    int32_t *tok = b->tokens + r * b->S, *tgt = b->targets + r * b->S;
    size_t m = n > 0 ? (size_t)n - 1 : 0, count = 0;
    for (size_t t = 0; t < b->S; t++) {
        bool real = t < m;
        tok[t] = real ? ids[t] : 0;
        tgt[t] = real && (int)t + 1 >= first_target ? ids[t + 1] : PC_TASK_IGNORE;
        count += tgt[t] != PC_TASK_IGNORE;
    }
    return count;
}

size_t pc_task_batch_fill(pc_task_batch *b, const pc_task_data *d, const pc_td_item *items, size_t n) {
    size_t C = b->C, targets = 0;
    int32_t *buf = b->row;
    for (size_t i = 0; i < b->E; i++) {
        const pc_td_example *e = i < n ? &d->ex[items[i].ex] : NULL;
        b->labels[i] = e && e->nchoices ? e->label : PC_TASK_IGNORE;
        for (size_t c = 0; c < C; c++) {
            size_t r = i * C + c;
            b->task_ids[r] = e && e->task >= 0 ? e->task : b->default_task;
            if (!e || (e->nchoices ? (int)c >= e->nchoices : c > 0)) {
                fill_row(b, r, NULL, 0, 0);
            } else if (e->nchoices) {
                int first, len = pc_td_row(e, (int)c, buf, &first);
                targets += fill_row(b, r, buf, len, first);
            } else {
                /* a window: targets from the example's first target id on */
                int first = e->n_context - items[i].start;
                targets += fill_row(b, r, e->ids + items[i].start, items[i].len, first > 1 ? first : 1);
            }
        }
    }
    return targets;
}

int pc_task_batch_inputs(const pc_task_batch *b, const pc_task_data *d, const char **names, void **ptrs) {
    int n = 0;
    names[n] = "tokens", ptrs[n++] = b->tokens;
    names[n] = "targets", ptrs[n++] = b->targets;
    names[n] = "task_ids", ptrs[n++] = b->task_ids;
    if (d->shape == PC_TD_CHOICE) names[n] = "labels", ptrs[n++] = b->labels;
    return n;
}

void pc_mc_tally_add(pc_mc_tally *t, const pc_task_batch *b, const pc_task_data *d, const pc_td_item *items, size_t n,
                     const float *nll) {
    const size_t C = b->C, S = b->S;
    for (size_t i = 0; i < n; i++) {
        const pc_td_example *e = &d->ex[items[i].ex];
        double score[4096] = {0}, lm = 0, ul = 0;
        size_t ul_n = 0;
        int best = 0;
        for (int c = 0; c < e->nchoices; c++) {
            const float *row = nll + (i * C + (size_t)c) * S;
            const int32_t *tgt = b->targets + (i * C + (size_t)c) * S;
            double s = 0, u = 0;
            size_t k = 0;
            for (size_t p = 0; p < S; p++) {
                if (tgt[p] == PC_TASK_IGNORE) continue;
                s += row[p];
                u += -log(1.0 - exp(-(double)row[p]) + 0.01);
                k++;
            }
            score[c] = k ? -s / (double)k : -1e9;
            if (c == e->label) lm = k ? s / (double)k : 0;
            else ul += u, ul_n += k;
            if (score[c] > score[best]) best = c;
        }
        /* the cross-entropy of the label under softmax(scores), by log-sum-exp */
        double mx = score[best], z = 0;
        for (int c = 0; c < e->nchoices; c++) z += exp(score[c] - mx);
        t->sum_ln += mx + log(z) - score[e->label];
        t->sum_lm += lm;
        t->sum_ul += ul_n ? ul / (double)ul_n : 0;
        t->correct += best == e->label;
        t->n++;
    }
}
