/* Text generation on top of the Llama decode graph. */
#include "drivers/generate.h"
#include "drivers/merge.h"
#include "drivers/store.h"
#include "runtime/fileio.h"

#include <stdlib.h>
#include <string.h>

/* the unmerged adapter on the decode graph: rewrite it, then bind the adapter's tensors */
typedef struct {
    const pc_session *s;
    pc_store store;
} gen_adapter;

static int gen_adapt(void *ctx, pc_graph **g, char *err, size_t errlen) {
    gen_adapter *a = ctx;
    return pc_session_adapt(a->s, g, false, false, err, errlen);
}

static int gen_bind(void *ctx, const pc_graph *g, pc_exec *r, char *err, size_t errlen) {
    gen_adapter *a = ctx;
    const pc_st_file *files[1] = {a->s->adapter.weights};
    pc_store_free(&a->store);
    if (pc_store_init(&a->store, g, pc_session_is_base, (void *)a->s, files, 1, 0, err, errlen)) return -1;
    pc_session_fix_qk_rows(a->s, &a->store, 0);
    return pc_store_bind(&a->store, r) ? pc_errf(err, errlen, "binding the adapter failed") : 0;
}

int pc_generate_text(const pc_session *s, const pc_gen_request *q, pc_gen_output *out, char *err, size_t errlen) {
    *out = (pc_gen_output){0};
    if (!s->tok) return pc_errf(err, errlen, "generation needs a tokenizer");
    size_t plen = strlen(q->prompt), cap = pc_tok_encode_bound(plen), np;
    int32_t *prompt = malloc(cap * sizeof *prompt);
    if (!prompt) return pc_errf(err, errlen, "out of memory");
    if (pc_tok_encode(s->tok, q->prompt, plen, 1, 0, prompt, cap, &np, err, errlen)) { free(prompt); return -1; }
    if ((int)np >= s->cfg.seq_len) {
        free(prompt);
        return pc_errf(err, errlen, "the prompt has %zu tokens; the model's context is %d", np, s->cfg.seq_len);
    }
    int steps = (int)np - 1 + q->tokens;
    if (steps > s->cfg.seq_len) steps = s->cfg.seq_len;
    pc_merged_model mm = {0};
    pc_l2c_model view = *s->model;
    pc_llama_gen_opts o = {.steps = steps, .temperature = q->temperature, .topp = q->topp, .seed = q->seed,
                           .prompt = prompt, .n_prompt = (int)np, .exec = q->exec,
                           .cache_len = q->cache_len, .entries = q->entries};
    int rc = -1;
    gen_adapter ga = {.s = s};
    if (s->adapter.cfg && q->merge) {
        if (pc_merge_adapter(s, &mm, err, errlen)) goto done;
        view = pc_merged_view(s, &mm);
    } else if (s->adapter.cfg) {
        if (!s->adapter.weights) { pc_errf(err, errlen, "the adapter has no %s", PC_ADAPTER_WEIGHTS_NAME); goto done; }
        o.adapt = gen_adapt;
        o.bind = gen_bind;
        o.ctx = &ga;
    }
    if (!(out->ids = malloc(((size_t)steps + 2) * sizeof *out->ids))) { pc_errf(err, errlen, "out of memory"); goto done; }
    if (pc_llama_generate(&s->cfg, &view, &o, out->ids, &out->nids, NULL, NULL, err, errlen)) goto done;
    out->nprompt = (int)np;
    size_t tl;
    if (pc_tok_decode_seq(s->tok, 1, out->ids + 1, (size_t)(out->nids - 1), 1, &out->text, &tl, err, errlen)) goto done;
    rc = 0;
done:
    free(prompt);
    pc_store_free(&ga.store);
    pc_merged_free(&mm);
    if (rc) pc_gen_output_free(out);
    return rc;
}

void pc_gen_output_free(pc_gen_output *o) {
    free(o->ids);
    free(o->text);
    *o = (pc_gen_output){0};
}
