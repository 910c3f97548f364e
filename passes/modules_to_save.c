/* PEFT's modules_to_save as a re-keying of params (see modules_to_save.h). */
#include "passes/modules_to_save.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool ends_with(const char *s, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n >= k && memcmp(s + n - k, suf, k) == 0;
}

int pc_modules_to_save_match(const pc_spec *mts, const char *key) {
    if (!mts || mts->kind != PC_SPEC_LIST || !key) return 0;
    const char *last = strrchr(key, '.');
    if (!last) return 0; /* a tensor of no module */
    /* the module "a.b.c" of "a.b.c.weight", then its parents "a.b" and "a" */
    for (size_t n = (size_t)(last - key); n > 0;) {
        for (size_t i = 0; i < mts->n; i++)
            if (mts->items[i][0] && ends_with(key, n, mts->items[i])) return 1;
        while (n > 0 && key[n - 1] != '.') n--;
        if (n > 0) n--; /* drop the dot */
    }
    return 0;
}

int pc_modules_to_save_apply(pc_graph *g, const pc_spec *mts, bool trainable, int (*is_base)(void *ctx, const char *key),
                             void *ctx, int *n, char *err, size_t errlen) {
    int count = 0;
    if (n) *n = 0;
    for (pc_val i = 0; g && i < g->nvals; i++) {
        pc_value *v = &g->vals[i];
        if (v->op != PC_OP_param || !(v->flags & PC_FROZEN) || !v->key) continue;
        if (!is_base(ctx, v->key) || !pc_modules_to_save_match(mts, v->key)) continue;
        size_t len = strlen(PC_PEFT_KEY_PREFIX) + strlen(v->key) + 1;
        char *key = malloc(len);
        if (!key) return pc_errf(err, errlen, "out of memory");
        snprintf(key, len, "%s%s", PC_PEFT_KEY_PREFIX, v->key);
        if (pc_lookup_key(g, key) != PC_NONE) {
            pc_errf(err, errlen, "modules_to_save: the graph already has a param keyed %s", key);
            free(key);
            return -1;
        }
        free(v->key);
        v->key = key;
        if (trainable) {
            v->flags = (v->flags & ~PC_FROZEN) | PC_TRAINABLE;
            v->init = (pc_init){PC_INIT_ZEROS, 0, 0};
        }
        count++;
    }
    if (n) *n = count;
    return 0;
}
