/* A GGUF file's tokenizer (tokenizer.ggml.*) as the byte-level BPE transformers builds from it. */
#include "runtime/gguf_tokenizer.h"
#include "runtime/fileio.h"

#include <stdlib.h>

pc_hftok *pc_gguf_tokenizer(const pc_gguf *g, char *err, size_t errlen) {
    const char *model = NULL, *pre = NULL;
    if (pc_gguf_kv_type(g, "tokenizer.ggml.model") < 0) {
        if (errlen) err[0] = 0;
        return NULL; /* no tokenizer in the file */
    }
    if (pc_gguf_get_str(g, "tokenizer.ggml.model", &model, NULL, err, errlen)) return NULL;
    if (strcmp(model, "gpt2") != 0) {
        pc_errf(err, errlen, "%s: metadata key 'tokenizer.ggml.model': \"%s\" is not supported (gpt2, the byte-level "
                "BPE, is); give --tokenizer", pc_gguf_path(g), model);
        return NULL;
    }
    uint64_t ntok = 0, nmerge = 0, ntype = 0;
    pc_gguf_vtype et;
    int64_t bos = -1, eos = -1;
    int add_bos = 0, add_eos = 0;
    bool types = pc_gguf_kv_type(g, "tokenizer.ggml.token_type") >= 0;
    if (pc_gguf_get_array(g, "tokenizer.ggml.tokens", &et, &ntok, err, errlen) ||
        pc_gguf_get_array(g, "tokenizer.ggml.merges", &et, &nmerge, err, errlen) ||
        (types && pc_gguf_get_array(g, "tokenizer.ggml.token_type", &et, &ntype, err, errlen)) ||
        (pc_gguf_kv_type(g, "tokenizer.ggml.pre") >= 0 && pc_gguf_get_str(g, "tokenizer.ggml.pre", &pre, NULL, err, errlen)) ||
        (pc_gguf_kv_type(g, "tokenizer.ggml.bos_token_id") >= 0 &&
         pc_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos, err, errlen)) ||
        (pc_gguf_kv_type(g, "tokenizer.ggml.eos_token_id") >= 0 &&
         pc_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos, err, errlen)) ||
        (pc_gguf_kv_type(g, "tokenizer.ggml.add_bos_token") >= 0 &&
         pc_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, err, errlen)) ||
        (pc_gguf_kv_type(g, "tokenizer.ggml.add_eos_token") >= 0 &&
         pc_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &add_eos, err, errlen)))
        return NULL;
    if (types && ntype != ntok) {
        pc_errf(err, errlen, "%s: metadata key 'tokenizer.ggml.token_type': %llu entries for %llu tokens", pc_gguf_path(g),
                (unsigned long long)ntype, (unsigned long long)ntok);
        return NULL;
    }
    const char **tokens = calloc(ntok ? ntok : 1, sizeof *tokens), **merges = calloc(nmerge ? nmerge : 1, sizeof *merges);
    int32_t *tt = types ? calloc(ntok ? ntok : 1, sizeof *tt) : NULL;
    pc_hftok *t = NULL;
    if (!tokens || !merges || (types && !tt)) {
        pc_errf(err, errlen, "%s: out of memory reading the tokenizer (%llu tokens)", pc_gguf_path(g), (unsigned long long)ntok);
        goto done;
    }
    for (uint64_t i = 0; i < ntok; i++) {
        int64_t ty = 0;
        if (pc_gguf_array_str(g, "tokenizer.ggml.tokens", i, &tokens[i], NULL, err, errlen) ||
            (types && pc_gguf_array_int(g, "tokenizer.ggml.token_type", i, &ty, err, errlen)))
            goto done;
        if (tt) tt[i] = (int32_t)ty;
    }
    for (uint64_t i = 0; i < nmerge; i++)
        if (pc_gguf_array_str(g, "tokenizer.ggml.merges", i, &merges[i], NULL, err, errlen)) goto done;
    pc_hftok_bpe_spec spec = {.tokens = tokens, .n_tokens = ntok, .merges = merges, .n_merges = nmerge,
                              .token_types = tt, .pre = pre, .bos_id = (int32_t)bos, .eos_id = (int32_t)eos,
                              .add_bos = add_bos != 0, .add_eos = add_eos != 0};
    char msg[512];
    if (!(t = pc_hftok_from_bpe(&spec, msg, sizeof msg))) pc_errf(err, errlen, "%s: %s", pc_gguf_path(g), msg);
done:
    free(tokens);
    free(merges);
    free(tt);
    return t;
}
