#include "drivers/bf16_weights.h"
#include "runtime/bf16.h"
#include "runtime/fileio.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key;
    const float *src;
    uint16_t *data;
    size_t n;
} entry;

struct pc_bf16_weights {
    entry *e;
    int n, cap;
};

pc_bf16_weights *pc_bf16_weights_new(void) { return calloc(1, sizeof(pc_bf16_weights)); }

void pc_bf16_weights_free(pc_bf16_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].key);
        free(w->e[i].data);
    }
    free(w->e);
    free(w);
}

const uint16_t *pc_bf16_weights_get(pc_bf16_weights *w, const char *key, const float *src, size_t n) {
    if (!w || !key || !src) return NULL;
    for (int i = 0; i < w->n; i++)
        if (w->e[i].src == src && w->e[i].n == n && !strcmp(w->e[i].key, key)) return w->e[i].data;
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        entry *e = realloc(w->e, (size_t)cap * sizeof *e);
        if (!e) return NULL;
        w->e = e, w->cap = cap;
    }
    entry x = {strdup(key), src, aligned_alloc(64, (n * 2 + 63) / 64 * 64 + 64), n};
    if (!x.key || !x.data) {
        free(x.key);
        free(x.data);
        return NULL;
    }
    pc_f32_to_bf16_n(src, x.data, n);
    w->e[w->n++] = x;
    return x.data;
}

void pc_bf16_weights_drop_sources(const pc_bf16_weights *w) {
    for (int i = 0; w && i < w->n; i++) pc_pages_drop(w->e[i].src, w->e[i].n * sizeof(float));
}

size_t pc_bf16_weights_bytes(const pc_bf16_weights *w) {
    size_t b = 0;
    for (int i = 0; w && i < w->n; i++) b += w->e[i].n * 2;
    return b;
}
