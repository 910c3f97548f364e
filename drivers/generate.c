/* Text generation: tokenize, run the generation loop, decode. */
#include "drivers/generate.h"
#include "drivers/decode.h"
#include "drivers/merge.h"
#include "runtime/fileio.h"

#include <stdlib.h>
#include <string.h>

int pc_generate_text(pc_session *s, const pc_gen_request *q, pc_gen_output *out, char *err, size_t errlen) {
    *out = (pc_gen_output){0};
    if (pc_session_need_tokenizer(s, "generation", err, errlen)) return -1;
    if (s->adapter.cfg && q->merge && pc_session_merge(s, NULL, err, errlen)) return -1;
    if (s->adapter.cfg && !s->merged && !s->adapter.weights)
        return pc_session_missing_weights(s, NULL, err, errlen);
    const int room = s->model.info.context - (s->merged ? 0 : pc_session_virtual_tokens(s));
    size_t np;
    int32_t *prompt;
    if (pc_text_encode(s->tok, q->prompt, strlen(q->prompt), true, &prompt, &np, err, errlen)) return -1;
    if ((int)np >= room) {
        free(prompt);
        return pc_errf(err, errlen, "the prompt has %zu tokens; the model's context%s is %d", np,
                       room < s->model.info.context ? " less the adapter's virtual tokens" : "", room);
    }
    int steps = (int)np - 1 + q->tokens;
    if (steps > room) steps = room;
    pc_decode_opts o = {.steps = steps, .temperature = q->temperature, .topp = q->topp, .seed = q->seed,
                        .prompt = prompt, .n_prompt = (int)np, .exec = q->exec, .cache_sizes = q->cache_sizes,
                        .ncache_sizes = q->ncache_sizes,
                        .entries = q->entries};
    int rc = -1;
    if (!(out->ids = malloc(((size_t)steps + 2) * sizeof *out->ids))) { pc_errf(err, errlen, "out of memory"); goto done; }
    if (pc_decode(s, &o, out->ids, &out->nids, NULL, NULL, err, errlen)) goto done;
    out->nprompt = (int)np;
    size_t tl;
    if (pc_text_decode(s->tok, out->ids, (size_t)out->nids, &out->text, &tl, err, errlen)) goto done;
    rc = 0;
done:
    free(prompt);
    if (rc) pc_gen_output_free(out);
    return rc;
}

void pc_gen_output_free(pc_gen_output *o) {
    free(o->ids);
    free(o->text);
    *o = (pc_gen_output){0};
}
