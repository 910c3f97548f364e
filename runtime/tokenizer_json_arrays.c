/* Byte-level BPE tokenizers from arrays (a GGUF file's tokenizer.ggml.*), built the way
 * transformers builds them from such a file (integrations/gguf), with the pre-tokenizer of
 * the original tokenizer.json for the known tokenizer.ggml.pre names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/tokenizer_json_internal.h"

static const char LLAMA3_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                               "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char TEKKEN_RE[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char GPT4O_RE[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef enum { PRE_GPT2, PRE_DIGITS_GPT2, PRE_SPLIT } pre_kind;

typedef struct {
    const char *name;
    pre_kind kind;
    const char *regex;
    bool nfc; /* Qwen2's files normalize to NFC */
} pre_entry;

static const pre_entry PRE[] = {
    {"gpt2", PRE_GPT2, NULL, false},
    {"default", PRE_GPT2, NULL, false},
    {"mpt", PRE_GPT2, NULL, false},
    {"olmo", PRE_GPT2, NULL, false},
    {"jais", PRE_GPT2, NULL, false},
    {"smollm", PRE_DIGITS_GPT2, NULL, false},
    {"starcoder", PRE_DIGITS_GPT2, NULL, false},
    {"refact", PRE_DIGITS_GPT2, NULL, false},
    {"codeshell", PRE_DIGITS_GPT2, NULL, false},
    {"exaone", PRE_DIGITS_GPT2, NULL, false},
    {"llama3", PRE_SPLIT, LLAMA3_RE, false},
    {"llama-v3", PRE_SPLIT, LLAMA3_RE, false},
    {"llama-bpe", PRE_SPLIT, LLAMA3_RE, false},
    {"falcon3", PRE_SPLIT, LLAMA3_RE, false},
    {"falcon-h1", PRE_SPLIT, LLAMA3_RE, false},
    {"pixtral", PRE_SPLIT, LLAMA3_RE, false},
    {"dbrx", PRE_SPLIT, LLAMA3_RE, false},
    {"smaug-bpe", PRE_SPLIT, LLAMA3_RE, false},
    {"qwen2", PRE_SPLIT, QWEN2_RE, true},
    {"deepseek-r1-qwen", PRE_SPLIT, QWEN2_RE, true},
    {"megrez", PRE_SPLIT, QWEN2_RE, true},
    {"tekken", PRE_SPLIT, TEKKEN_RE, false},
    {"gpt-4o", PRE_SPLIT, GPT4O_RE, false},
    {"llama4", PRE_SPLIT, GPT4O_RE, false},
};

/* the pre-tokenizer (and normalizer) of a spec */
static int build_pre(const pc_hft_ctx *cx, const pc_hftok_bpe_spec *spec, pc_hftok *t) {
    pre_kind kind = PRE_GPT2;
    const char *regex = NULL;
    bool nfc = false;
    if (spec->pre) {
        const pre_entry *e = NULL;
        for (size_t i = 0; i < sizeof PRE / sizeof *PRE && !e; i++)
            if (!strcmp(PRE[i].name, spec->pre)) e = &PRE[i];
        if (!e)
            return pc_hft_fail(cx, "pre",
                               "unsupported pre-tokenizer \"%s\" (pass its regex in "
                               "spec.regex)",
                               spec->pre);
        kind = e->kind;
        regex = e->regex;
        nfc = e->nfc;
        if (regex == LLAMA3_RE) pc_hft_model_set_ignore_merges(t->model, true);
    } else if (spec->regex) {
        kind = PRE_SPLIT;
        regex = spec->regex;
    }
    if (nfc && !(t->norm = pc_hft_norm_nfc())) return pc_hft_oom(cx, "pre");
    pc_hft_pretok *items[2] = {NULL, NULL};
    size_t n = 0;
    if (kind == PRE_SPLIT) {
        if (!(items[n++] = pc_hft_pretok_split_regex(cx, regex))) return -1;
        items[n++] = pc_hft_pretok_byte_level(false, false);
    } else if (kind == PRE_DIGITS_GPT2) {
        items[n++] = pc_hft_pretok_digits(true);
        items[n++] = pc_hft_pretok_byte_level(false, true);
    } else {
        items[n++] = pc_hft_pretok_byte_level(false, true);
    }
    for (size_t i = 0; i < n; i++)
        if (!items[i]) {
            for (size_t k = 0; k < n; k++) pc_hft_pretok_free(items[k]);
            return pc_hft_oom(cx, "pre");
        }
    t->pretok = n == 1 ? items[0] : pc_hft_pretok_sequence(items, n);
    return t->pretok ? 0 : pc_hft_oom(cx, "pre");
}

/* control (3) and user-defined (4) tokens spelled in the byte alphabet become added tokens */
static int build_added(const pc_hft_ctx *cx, const pc_hftok_bpe_spec *spec, pc_hftok *t) {
    t->added_map = pc_hft_vocab_new(16);
    if (!t->added_map) return pc_hft_oom(cx, "token_types");
    if (!spec->token_types) return 0;
    size_t cap = 0;
    for (size_t i = 0; i < spec->n_tokens; i++) {
        int32_t ty = spec->token_types[i];
        if (ty != 3 && ty != 4) continue;
        const char *s = spec->tokens[i];
        size_t n = strlen(s);
        bool spelled = n > 0;
        for (size_t k = 0; k < n && spelled;) {
            uint32_t c;
            k += (size_t)pc_utf8_next(s + k, n - k, &c);
            spelled = pc_hft_char_byte(c) >= 0;
        }
        int32_t id = pc_hft_model_token_to_id(t->model, s, n);
        if (!spelled || id < 0 || pc_hft_vocab_get(t->added_map, s, n) >= 0) continue;
        if (t->nadded == cap) {
            cap = cap ? cap * 2 : 16;
            pc_hft_added *v = realloc(t->added, cap * sizeof *v);
            if (!v) return pc_hft_oom(cx, "token_types");
            t->added = v;
        }
        pc_hft_added *a = &t->added[t->nadded];
        *a = (pc_hft_added){.len = n, .id = id, .special = ty == 3};
        if (!(a->content = pc_hft_strndup(s, n)) ||
            pc_hft_vocab_add(t->added_map, s, n, (int32_t)t->nadded))
            return pc_hft_oom(cx, "token_types");
        t->nadded++;
    }
    return 0;
}

pc_hftok *pc_hftok_from_bpe(const pc_hftok_bpe_spec *spec, char *err, size_t errlen) {
    pc_hft_ctx cx = {"byte-level BPE arrays", err, errlen};
    pc_hftok *t = calloc(1, sizeof *t);
    if (!t || !(t->name = pc_hft_strndup(cx.file, strlen(cx.file)))) {
        pc_hft_oom(&cx, NULL);
        goto fail;
    }
    if (!spec->tokens || spec->n_tokens == 0) {
        pc_hft_fail(&cx, "tokens", "empty");
        goto fail;
    }
    if (pc_hft_model_bpe_arrays(&cx, spec->tokens, spec->n_tokens, spec->merges, spec->n_merges,
                                &t->model) ||
        build_pre(&cx, spec, t) || build_added(&cx, spec, t))
        goto fail;
    if (spec->ignore_merges) pc_hft_model_set_ignore_merges(t->model, true);
    t->id_bound = pc_hft_model_id_bound(t->model);
    int32_t ids[2] = {spec->bos_id, spec->eos_id};
    const char *names[2] = {"bos_id", "eos_id"};
    for (int i = 0; i < 2; i++)
        if (ids[i] < -1 || ids[i] >= t->id_bound) {
            pc_hft_fail(&cx, names[i], "%d is not in the vocabulary (ids 0..%d)", ids[i],
                        t->id_bound - 1);
            goto fail;
        }
    if ((spec->add_bos && spec->bos_id < 0) || (spec->add_eos && spec->eos_id < 0)) {
        pc_hft_fail(&cx, spec->add_bos && spec->bos_id < 0 ? "add_bos" : "add_eos",
                    "set, but the id is -1");
        goto fail;
    }
    if (!(t->post = pc_hft_post_bos_eos(spec->add_bos ? spec->bos_id : -1,
                                        spec->add_eos ? spec->eos_id : -1)) ||
        !(t->dec = pc_hft_dec_byte_level())) {
        pc_hft_oom(&cx, NULL);
        goto fail;
    }
    if (pc_hft_finish(&cx, t)) goto fail;
    if (spec->bos_id >= 0) t->specials.bos = spec->bos_id;
    if (spec->eos_id >= 0) t->specials.eos = spec->eos_id;
    return t;
fail:
    pc_hftok_free(t);
    return NULL;
}
