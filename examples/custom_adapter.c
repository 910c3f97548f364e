/* A user-defined adapter method, registered by name through the same interface the built-in
 * methods use (include/peftc/adapter.h is all it includes): every targeted linear y = x Wᵀ gets
 * a trainable per-output-channel gain g, initialised to ones, y' = y ⊙ g, and training adds
 * gain_l2 · Σ (g − 1)² to the loss (a field the method reads from its own config).
 *
 * The program is the peftc command line with the method added, so every verb knows it:
 *
 *   ./build/example_custom_adapter train --adapter examples/configs/gain.json --steps 100 --out out/gain
 *   ./build/example_custom_adapter eval --adapter out/gain --data data/tinyshakespeare/input.txt --seq 64
 *   ./build/example_custom_adapter merge --adapter out/gain --out out/gain.bin
 *   ./build/example_custom_adapter dump --stage adapted --adapter examples/configs/gain.json
 *
 * With no arguments it trains 20 steps on the bundled data into out/custom_adapter. */
#include "peftc/adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double l2;        /* gain_l2 of the config */
    pc_val *gains;    /* the gains this graph made, for the loss term (owned) */
    int cap;
    int n;
} gain_state;

static int gain_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    gain_state *st = state;
    if (pc_adapt_config_number(cx, "gain_l2", 0.0, &st->l2) < 0 || st->l2 < 0)
        return snprintf(err, errlen, "field \"gain_l2\": must be a number >= 0"), -1;
    return 0;
}

/* the rewrite: receives each linear site, returns its replacement */
static int gain_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    gain_state *st = state;
    int hit = pc_adapt_targets(cx, s->module);
    if (hit <= 0) return hit < 0 ? (snprintf(err, errlen, "matching %s failed", s->module), -1) : 0;
    pc_val g = pc_adapt_param(cx, s, "gain", PC_SHAPE(s->out), (pc_init){PC_INIT_ONES, 0, 0});
    s->value = pc_mul_at(s->g, s->loc, s->value, g); /* [B,S,out] * [out] broadcasts */
    if (st->n == st->cap) { /* every gain must join the loss term: grow, never drop one */
        int cap = st->cap ? 2 * st->cap : 16;
        pc_val *a = realloc(st->gains, (size_t)cap * sizeof *a);
        if (!a) return snprintf(err, errlen, "out of memory"), -1;
        st->gains = a, st->cap = cap;
    }
    st->gains[st->n++] = g;
    return 1;
}

/* merging: W' = diag(g) W */
static int gain_merge(pc_adapt_ctx *cx, void *state, const pc_site *s, pc_val *w, pc_val *b, char *err, size_t errlen) {
    (void)state, (void)b, (void)err, (void)errlen;
    if (pc_adapt_targets(cx, s->module) != 1) return 0;
    pc_val g = pc_adapt_param(cx, s, "gain", PC_SHAPE(s->out), (pc_init){PC_INIT_ONES, 0, 0});
    *w = pc_mul_at(s->g, s->loc, s->weight, pc_reshape_at(s->g, s->loc, g, PC_SHAPE(s->out, 1)));
    return 1;
}

static void gain_end(void *state) { free(((gain_state *)state)->gains); }

/* gain_l2 · Σ (g − 1)² over the gains of the graph */
static pc_val gain_loss(pc_adapt_ctx *cx, void *state, pc_graph *g, pc_val loss, char *err, size_t errlen) {
    (void)cx, (void)loss, (void)err, (void)errlen;
    const gain_state *st = state;
    if (st->l2 <= 0 || st->n == 0) return PC_NONE;
    pc_val sum = PC_NONE;
    for (int i = 0; i < st->n; i++) {
        pc_val d = pc_sum(g, pc_square(g, pc_scale(g, st->gains[i], 1.0, -1.0)), 0, NULL, 0);
        sum = sum == PC_NONE ? d : pc_add(g, sum, d);
    }
    return pc_scale(g, sum, st->l2, 0.0);
}

static const pc_adapter_method gain_method = {
    .name = "gain",
    .peft_type = "GAIN",
    .sites = PC_SITE_LINEAR,
    .state_size = sizeof(gain_state),
    .begin = gain_begin,
    .end = gain_end,
    .rewrite = gain_rewrite,
    .merge_linear = gain_merge,
    .loss_term = gain_loss,
};

int main(int argc, char **argv) {
    char err[512];
    pc_registry *reg = pc_registry_new();
    if (!reg || pc_registry_add(reg, &gain_method, err, sizeof err)) {
        fprintf(stderr, "%s\n", reg ? err : "out of memory");
        pc_registry_free(reg);
        return 1;
    }
    char *dflt[] = {argv[0], "train", "--adapter", PEFTC_EXAMPLE_DIR "/configs/gain.json", "--steps", "20",
                    "--eval-every", "10", "--out", "out/custom_adapter", NULL};
    int rc = argc > 1 ? pc_cli_main(reg, argc, argv) : pc_cli_main(reg, 10, dflt);
    pc_registry_free(reg);
    return rc;
}
