/* A user-defined adapter, registered from C through the same rewrite mechanism the built-in
 * methods use: every targeted linear y = x Wᵀ gets a trainable per-output-channel gain g
 * (initialised to ones), y' = y ⊙ g — an IA3-style output scaling written in a dozen lines.
 * The example applies it to the attention output projections of the bundled stories260K,
 * differentiates, appends AdamW, trains 20 steps on tinyshakespeare with the reference
 * interpreter, and prints the loss.
 *
 *   ./build/example_custom_adapter [data/stories260K/stories260K.bin] [data/tinyshakespeare/input.txt]
 */
#include "drivers/session.h"
#include "drivers/store.h"
#include "passes/adapt.h"
#include "passes/passes.h"
#include "runtime/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the matcher: module names ending in "o_proj" */
static int match_o_proj(void *user, const char *module, char *err, size_t errlen) {
    (void)user, (void)err, (void)errlen;
    size_t n = strlen(module);
    return n >= 6 && strcmp(module + n - 6, "o_proj") == 0;
}

/* the builder: receives the matched linear and returns its replacement */
static pc_val build_gain(void *user, const pc_linear_site *site, char *err, size_t errlen) {
    (void)user, (void)err, (void)errlen;
    char key[512];
    snprintf(key, sizeof key, "%s.gain", site->module);
    pc_val g = pc_param_at(site->g, site->loc, NULL, key, PC_F32, PC_SHAPE(site->out), PC_TRAINABLE,
                           (pc_init){PC_INIT_ONES, 0, 0});
    return pc_mul_at(site->g, site->loc, site->base, g); /* [B,S,out] * [out] broadcasts */
}

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : PEFTC_EXAMPLE_DATA "/stories260K/stories260K.bin";
    const char *text = argc > 2 ? argv[2] : PEFTC_EXAMPLE_DATA "/tinyshakespeare/input.txt";
    const char *tokpath = PEFTC_EXAMPLE_DATA "/stories260K/tok512.bin";
    char err[2048];
    int B = 4, S = 32, rc = 1, n = 0;
    pc_session s;
    if (pc_session_open(&s, model, tokpath, NULL, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    pc_graph *g = pc_llama_train_graph(&s.cfg, B, S, 0, err, sizeof err);
    pc_linear_rewrite rw = {"gain", match_o_proj, build_gain, NULL};
    pc_adamw_opts ao = {.clip = 1};
    pc_token_seq data = {0};
    pc_store store = {0};
    pc_exec *r = NULL;
    int32_t *tok = malloc(sizeof(int32_t) * B * S), *tgt = malloc(sizeof(int32_t) * B * S);
    float hp[8] = {1e-2f, 0.9f, 0.999f, 1e-8f, 0, 0, 1.0f, 0};
    if (!g || pc_rewrite_linears(&g, &rw, &n, err, sizeof err) || pc_pass_autograd(g, err, sizeof err) ||
        pc_pass_adamw(g, &ao, err, sizeof err)) {
        fprintf(stderr, "%s\n", g ? err : "graph");
        goto done;
    }
    printf("rewrote %d linears; the train step has %d values\n", n, pc_graph_size(g));
    if (pc_data_load(&data, text, s.tok, err, sizeof err) ||
        pc_store_init(&store, g, pc_session_is_base, &s, NULL, 0, 1, err, sizeof err) ||
        !(r = pc_exec_new(g, NULL, err, sizeof err)) || pc_llama_bind_base(r, g, s.model, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        goto done;
    }
    pc_store_bind(&store, r);
    pc_exec_bind(r, pc_lookup(g, "tokens"), tok);
    pc_exec_bind(r, pc_lookup(g, "targets"), tgt);
    pc_exec_bind(r, pc_lookup(g, "hp"), hp);
    pc_token_span span = {data.ids, data.n};
    for (int t = 1; t <= 20; t++) {
        pc_data_sample(&span, (size_t)B, (size_t)S, 7, (uint64_t)t, 0, tok, tgt);
        hp[5] = (float)t;
        if (pc_exec_run(r, err, sizeof err) || pc_exec_apply_updates(r)) { fprintf(stderr, "%s\n", err); goto done; }
        if (t == 1 || t % 5 == 0) printf("step %2d  loss %.4f\n", t, *(const float *)pc_exec_data(r, pc_lookup(g, "loss")));
    }
    rc = 0;
done:
    pc_exec_free(r);
    pc_store_free(&store);
    pc_data_free(&data);
    pc_graph_free(g);
    pc_session_close(&s);
    free(tok);
    free(tgt);
    return rc;
}
