/* Prompt tuning (PEFT's PromptTuningConfig; reference/peft.md §9): P trainable soft embeddings
 * `prompt_embeddings [P, D]` are prepended to the input embeddings of every sequence. Virtual
 * tokens take positions 0..P-1, real tokens P..P+S-1, all under the causal mask; the virtual
 * positions are never predicted (the head drops them). A decode graph instead appends the table
 * to the vocabulary (ids V..V+P-1), and the generation loop feeds those ids first.
 * Init: RANDOM N(0, 1) (nn.Embedding's), TEXT (the tokenized prompt_tuning_init_text, BOS
 * included, repeated or cut to P, rows copied from the frozen embeddings) or SAMPLE_VOCAB
 * (uniformly drawn vocabulary rows). Not mergeable. */
#include "passes/adapt.h"
#include "passes/adapters/virtual_tokens.h"
#include "ir/ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t P, D;
} prompt_state;

static int pt_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    prompt_state *st = state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    const pc_model_info *mi = pc_adapt_model(cx);
    st->P = cfg->prompt.num_virtual_tokens;
    st->D = mi->dim;
    if (pc_virtual_check_config(cx, err, errlen)) return -1;
    if (cfg->prompt.prompt_tuning_init == PC_PROMPT_INIT_TEXT && !cfg->prompt.prompt_tuning_init_text)
        return snprintf(err, errlen, "field \"prompt_tuning_init_text\": TEXT init needs the text"), -1;
    return 0;
}

static pc_val table(pc_adapt_ctx *cx, const prompt_state *st, const pc_site *s) {
    pc_site top = *s;
    top.module = NULL; /* PEFT keys it "prompt_embeddings", without a module */
    return pc_adapt_param(cx, &top, "prompt_embeddings", PC_SHAPE(st->P, st->D), (pc_init){PC_INIT_NORMAL, 1.0, 0});
}

static int pt_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    prompt_state *st = state;
    bool decode = pc_adapt_get_mode(cx) == PC_ADAPT_DECODE;
    if (s->kind == PC_SITE_EMBED) {
        pc_val t = table(cx, st, s);
        if (decode) pc_virtual_decode_embed(s, t);
        else pc_virtual_prepend(s, t);
        return 1;
    }
    return pc_virtual_other_site(s, st->P, decode, "prompt tuning", err, errlen);
}

static int pt_virtual_tokens(pc_adapt_ctx *cx, void *state) {
    (void)cx;
    return (int)((prompt_state *)state)->P;
}

/* TEXT and SAMPLE_VOCAB: rows of the frozen token embeddings */
static int pt_init(pc_adapt_ctx *cx, void *state, const char *key, float *data, pc_shape shape, pc_base_lookup base,
                   void *base_ctx, char *err, size_t errlen) {
    prompt_state *st = state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    pc_prompt_init how = cfg->prompt.prompt_tuning_init;
    if (strcmp(key, "prompt_embeddings") || (how != PC_PROMPT_INIT_TEXT && how != PC_PROMPT_INIT_SAMPLE_VOCAB)) return 0;
    pc_shape es;
    const float *emb = base(base_ctx, "model.embed_tokens.weight", &es);
    if (!emb || es.rank != 2 || es.dim[1] != shape.dim[1])
        return snprintf(err, errlen, "prompt_tuning_init: the model has no embedding table of width %lld", (long long)shape.dim[1]), -1;
    int64_t V = es.dim[0], D = es.dim[1];
    int32_t *ids = malloc((size_t)(st->P + 4096) * sizeof *ids);
    if (!ids) return snprintf(err, errlen, "out of memory"), -1;
    int n = 0;
    if (how == PC_PROMPT_INIT_TEXT) {
        n = pc_adapt_tokenize(cx, cfg->prompt.prompt_tuning_init_text, ids, (int)st->P + 4096);
        if (n <= 0) {
            free(ids);
            return snprintf(err, errlen, "field \"prompt_tuning_init_text\": %s", n < 0 ? "no tokenizer to encode it" : "encodes to no tokens"), -1;
        }
    } else {
        /* PEFT draws with torch.randint; peftc with its own seeded stream */
        uint64_t x = pc_adapt_seed(cx) ^ 0x5EED5EEDull;
        for (n = 0; n < st->P; n++) {
            x += 0x9E3779B97F4A7C15ull;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            ids[n] = (int32_t)((z ^ (z >> 31)) % (uint64_t)V);
        }
    }
    /* repeated ceil(P / n) times, then cut to P (PEFT) */
    for (int64_t i = 0; i < st->P; i++) {
        int32_t id = ids[i % n];
        if (id < 0 || id >= V) { free(ids); return snprintf(err, errlen, "token id %d out of the vocabulary", (int)id), -1; }
        memcpy(data + i * D, emb + (int64_t)id * D, (size_t)D * sizeof *data);
    }
    free(ids);
    return 1;
}

const pc_adapter_method pc_method_prompt_tuning = {
    .name = "prompt_tuning",
    .peft_type = "PROMPT_TUNING",
    .sites = PC_SITE_EMBED | PC_SITE_POSITIONS | PC_SITE_HEAD,
    .state_size = sizeof(prompt_state),
    .begin = pt_begin,
    .rewrite = pt_rewrite,
    .not_mergeable = "prompt tuning prepends virtual tokens; there is no weight to fold them into "
                     "(run it unmerged: peftc eval/generate without --merge)",
    .virtual_tokens = pt_virtual_tokens,
    .init_from_base = pt_init,
};
