/* tokenizer.json (runtime/tokenizer_json.h) against Hugging Face tokenizers 0.23: the fixtures
 * of tests/golden/gen_tokenizer_json_fixture.py (trained byte-level BPE, SentencePiece-style
 * BPE, WordPiece; lines of tinyshakespeare, TinyStories, banking77 and edge cases), the real
 * all-MiniLM-L6-v2 tokenizer when $PEFTC_MINILM_DIR points at it, the array constructor (GGUF),
 * and hostile files. */
#include <CUnit/CUnit.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"
#include "runtime/gguf.h"
#include "runtime/tokenizer_json.h"

#define DIR PEFTC_SOURCE_DIR "/tests/data/tokenizer_json/"

static json_t *load_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!j) printf("\n    %s: %s (line %d)", path, je.text, je.line);
    return j;
}

/* ---- comparing with the library ---- */

static bool ids_equal(json_t *want, const int32_t *got, size_t n) {
    if (!json_is_array(want) || json_array_size(want) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(want, i)) != got[i]) return false;
    return true;
}

static void show_ids(const char *what, json_t *want, const int32_t *got, size_t n) {
    printf("\n      %s: want", what);
    for (size_t i = 0; i < json_array_size(want) && i < 24; i++)
        printf(" %lld", (long long)json_integer_value(json_array_get(want, i)));
    printf("%s\n      %*s  got ", json_array_size(want) > 24 ? " ..." : "", (int)strlen(what), "");
    for (size_t i = 0; i < n && i < 24; i++) printf(" %d", got[i]);
    printf("%s", n > 24 ? " ..." : "");
}

/* every case of NAME.expected.json through a loaded tokenizer; returns the mismatches */
static int check_cases(pc_hftok *t, const char *name, json_t *cases, json_t *exp) {
    int bad = 0, shown = 0;
    char err[512];
    json_t *ids = json_object_get(exp, "ids"), *plain = json_object_get(exp, "ids_plain");
    json_t *padded = json_object_get(exp, "padded"), *dec = json_object_get(exp, "decode");
    json_t *skip = json_object_get(exp, "decode_skip");
    size_t nc = json_array_size(cases);
    CU_ASSERT_EQUAL_FATAL(json_array_size(ids), nc);
    CU_ASSERT_EQUAL((long long)pc_hftok_vocab_size(t),
                    json_integer_value(json_object_get(exp, "vocab_size")));
    for (size_t i = 0; i < nc; i++) {
        json_t *c = json_array_get(cases, i);
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t len = json_string_length(json_object_get(c, "text"));
        int32_t *got = NULL, *got2 = NULL, *got3 = NULL;
        uint8_t *mask = NULL;
        size_t n = 0, n2 = 0, n3 = 0;
        char *d1 = NULL, *d2 = NULL;
        bool ok = !pc_hftok_encode(t, text, len, true, &got, &n, err, sizeof err) &&
                  !pc_hftok_encode(t, text, len, false, &got2, &n2, err, sizeof err);
        const char *why = ok ? NULL : err;
        if (ok && !ids_equal(json_array_get(ids, i), got, n))
            why = "ids";
        else if (ok && !ids_equal(json_array_get(plain, i), got2, n2))
            why = "ids (no special tokens)";
        json_t *pw = json_array_get(padded, i);
        if (ok && !why && json_is_array(pw)) {
            if (pc_hftok_encode_padded(t, text, len, true, &got3, &n3, &mask, err, sizeof err))
                why = err;
            else if (!ids_equal(pw, got3, n3))
                why = "ids (truncated, padded)";
        }
        /* decode the library's ids (the same as ours when the above held) */
        json_t *w = json_array_get(ids, i);
        size_t nw = json_array_size(w);
        int32_t *wid = malloc((nw ? nw : 1) * sizeof *wid);
        for (size_t k = 0; k < nw; k++) wid[k] = (int32_t)json_integer_value(json_array_get(w, k));
        if (!why) {
            const char *want1 = json_string_value(json_array_get(dec, i));
            const char *want2 = json_is_string(json_array_get(skip, i))
                                    ? json_string_value(json_array_get(skip, i))
                                    : want1;
            size_t l1, l2;
            if (pc_hftok_decode(t, wid, nw, false, &d1, &l1, err, sizeof err) ||
                pc_hftok_decode(t, wid, nw, true, &d2, &l2, err, sizeof err))
                why = err;
            else if (l1 != json_string_length(json_array_get(dec, i)) || memcmp(d1, want1, l1))
                why = "decode";
            else if (strcmp(d2, want2))
                why = "decode (skip special tokens)";
        }
        /* each id alone (part of a character decodes to U+FFFD) */
        json_t *each = json_array_get(json_object_get(exp, "decode_each"), i);
        for (size_t k = 0; !why && json_is_array(each) && k < nw; k++) {
            char *d;
            if (pc_hftok_decode(t, wid + k, 1, false, &d, NULL, err, sizeof err)) {
                why = err;
                break;
            }
            if (strcmp(d, json_string_value(json_array_get(each, k)))) why = "decode of one id";
            free(d);
        }
        if (why) {
            bad++;
            if (shown++ < 4) {
                printf("\n    %s case %zu (%s) %.60s...: %s", name, i,
                       json_string_value(json_object_get(c, "source")), text, why);
                if (!strcmp(why, "ids")) show_ids("ids", json_array_get(ids, i), got, n);
                if (!strcmp(why, "ids (no special tokens)"))
                    show_ids("ids", json_array_get(plain, i), got2, n2);
                if (!strcmp(why, "ids (truncated, padded)")) show_ids("ids", pw, got3, n3);
                if (!strncmp(why, "decode", 6))
                    printf("\n      want \"%s\"\n      got  \"%s\"",
                           json_string_value(json_array_get(dec, i)), d1 ? d1 : "");
            }
        }
        if (mask) { /* the mask is 0 exactly on the padding */
            pc_hftok_special_ids sp;
            pc_hftok_specials(t, &sp);
            for (size_t k = 0; k < n3; k++)
                if (!mask[k] && got3[k] != sp.pad) {
                    bad++;
                    break;
                }
        }
        free(wid);
        free(got);
        free(got2);
        free(got3);
        free(mask);
        free(d1);
        free(d2);
    }
    return bad;
}

static void check_fixture(const char *name) {
    char path[512], err[512];
    snprintf(path, sizeof path, DIR "%s.json", name);
    pc_hftok *t = pc_hftok_load(path, err, sizeof err);
    if (!t) printf("\n    %s", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    json_t *cases = load_json(DIR "cases.json");
    snprintf(path, sizeof path, DIR "%s.expected.json", name);
    json_t *exp = load_json(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cases);
    CU_ASSERT_PTR_NOT_NULL_FATAL(exp);
    int bad = check_cases(t, name, json_object_get(cases, "cases"), exp);
    if (bad)
        printf("\n    %s: %d of %zu cases differ from tokenizers", name, bad,
               json_array_size(json_object_get(cases, "cases")));
    CU_ASSERT_EQUAL(bad, 0);
    /* every id maps to a token that maps back */
    for (int32_t id = 0; id < pc_hftok_id_bound(t); id++) {
        size_t len;
        const char *s = pc_hftok_id_to_token(t, id, &len);
        if (s && pc_hftok_token_to_id(t, s, len) != id) {
            printf("\n    %s: id %d -> \"%s\" -> %d", name, id, s, pc_hftok_token_to_id(t, s, len));
            CU_FAIL("id -> token -> id");
            break;
        }
    }
    json_decref(cases);
    json_decref(exp);
    pc_hftok_free(t);
}

static void test_bpe_roberta(void) { check_fixture("bpe_roberta"); }
static void test_bpe_llama3(void) { check_fixture("bpe_llama3"); }
static void test_bpe_spm(void) { check_fixture("bpe_spm"); }
static void test_bpe_metaspace(void) { check_fixture("bpe_metaspace"); }
static void test_wordpiece_bert(void) { check_fixture("wordpiece_bert"); }
static void test_wordpiece_mixed(void) { check_fixture("wordpiece_mixed"); }

/* the real all-MiniLM-L6-v2 tokenizer (BERT uncased, 30522 tokens), not committed */
static void test_minilm(void) {
    const char *dir = getenv("PEFTC_MINILM_DIR");
    char path[1024], err[512];
    if (!dir || !*dir) {
        printf("\n    skipped: PEFTC_MINILM_DIR is not set (the directory of all-MiniLM-L6-v2's "
               "tokenizer.json: scripts/fetch_models.py) ");
        return;
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("\n    skipped: %s not found ", path);
        return;
    }
    fclose(f);
    pc_hftok *t = pc_hftok_load(path, err, sizeof err);
    if (!t) printf("\n    %s", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    json_t *cases = load_json(DIR "cases.json"), *exp = load_json(DIR "minilm.expected.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(cases);
    CU_ASSERT_PTR_NOT_NULL_FATAL(exp);
    int bad = check_cases(t, "minilm", json_object_get(cases, "cases"), exp);
    CU_ASSERT_EQUAL(bad, 0);
    pc_hftok_special_ids sp;
    pc_hftok_specials(t, &sp);
    CU_ASSERT(sp.cls == 101 && sp.sep == 102 && sp.pad == 0 && sp.unk == 100 && sp.mask == 103);
    printf("\n    MiniLM (%s): %zu cases, %d differ ", path,
           json_array_size(json_object_get(cases, "cases")), bad);
    json_decref(cases);
    json_decref(exp);
    pc_hftok_free(t);
}

/* ---- special ids ---- */

static void test_specials(void) {
    static const struct {
        const char *name;
        pc_hftok_special_ids want;
    } fx[] = {
        /*                bos eos cls sep pad unk mask */
        {"wordpiece_bert", {-1, -1, 2, 3, 0, 1, 4}},
        {"bpe_roberta", {0, 2, 0, 2, 1, -1, 800}},
        {"bpe_llama3", {0, 1, -1, -1, -1, -1, -1}},
        {"bpe_spm", {1, 2, -1, -1, -1, 0, -1}},
    };
    char path[512], err[512];
    for (size_t i = 0; i < sizeof fx / sizeof *fx; i++) {
        snprintf(path, sizeof path, DIR "%s.json", fx[i].name);
        pc_hftok *t = pc_hftok_load(path, err, sizeof err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        pc_hftok_special_ids s;
        pc_hftok_specials(t, &s);
        const pc_hftok_special_ids *w = &fx[i].want;
        if (memcmp(&s, w, sizeof s)) {
            printf("\n    %s: bos %d eos %d cls %d sep %d pad %d unk %d mask %d", fx[i].name, s.bos,
                   s.eos, s.cls, s.sep, s.pad, s.unk, s.mask);
            CU_FAIL("special ids");
        }
        /* special added tokens are what decode skips */
        CU_ASSERT(w->cls < 0 || pc_hftok_is_special(t, w->cls));
        CU_ASSERT(!pc_hftok_is_special(t, 5));
        pc_hftok_free(t);
    }
}

/* ---- the array constructor (GGUF) ---- */

typedef struct {
    char **tokens, **merges;
    int32_t *types;
    size_t ntok, nmerges;
} arrays;

static void arrays_free(arrays *a) {
    for (size_t i = 0; i < a->ntok; i++) free(a->tokens[i]);
    for (size_t i = 0; i < a->nmerges; i++) free(a->merges[i]);
    free(a->tokens);
    free(a->merges);
    free(a->types);
}

/* what a GGUF file would carry for a tokenizer.json: every token by id (added ones too, typed
 * control when special, user-defined otherwise), the merges as "a b" */
static int to_arrays(const char *path, arrays *a) {
    json_t *j = load_json(path);
    if (!j) return -1;
    json_t *model = json_object_get(j, "model"), *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(j, "added_tokens"), *merges = json_object_get(model, "merges");
    size_t bound = 0, i;
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) if ((size_t)json_integer_value(v) + 1 > bound) bound =
        (size_t)json_integer_value(v) + 1;
    json_array_foreach(added, i, v) {
        size_t id = (size_t)json_integer_value(json_object_get(v, "id"));
        if (id + 1 > bound) bound = id + 1;
    }
    a->ntok = bound;
    a->tokens = calloc(bound, sizeof *a->tokens);
    a->types = calloc(bound, sizeof *a->types);
    json_object_foreach(vocab, k, v) {
        a->tokens[json_integer_value(v)] = strdup(k);
        a->types[json_integer_value(v)] = 1;
    }
    json_array_foreach(added, i, v) {
        size_t id = (size_t)json_integer_value(json_object_get(v, "id"));
        free(a->tokens[id]);
        a->tokens[id] = strdup(json_string_value(json_object_get(v, "content")));
        a->types[id] = json_is_true(json_object_get(v, "special")) ? 3 : 4;
    }
    a->nmerges = json_array_size(merges);
    a->merges = calloc(a->nmerges + 1, sizeof *a->merges);
    json_array_foreach(merges, i, v) {
        char buf[512];
        if (json_is_string(v))
            snprintf(buf, sizeof buf, "%s", json_string_value(v));
        else
            snprintf(buf, sizeof buf, "%s %s", json_string_value(json_array_get(v, 0)),
                     json_string_value(json_array_get(v, 1)));
        a->merges[i] = strdup(buf);
    }
    json_decref(j);
    return 0;
}

static void test_arrays(void) {
    char err[512];
    arrays a = {0};
    CU_ASSERT_FATAL(to_arrays(DIR "bpe_llama3.json", &a) == 0);
    pc_hftok *ref = pc_hftok_load(DIR "bpe_llama3.json", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    int32_t bos = pc_hftok_token_to_id(ref, "<|begin_of_text|>", 17);
    int32_t eos = pc_hftok_token_to_id(ref, "<|end_of_text|>", 15);
    pc_hftok_bpe_spec spec = {
        .tokens = (const char *const *)a.tokens,
        .n_tokens = a.ntok,
        .merges = (const char *const *)a.merges,
        .n_merges = a.nmerges,
        .token_types = a.types,
        .pre = "llama-bpe",
        .bos_id = bos,
        .eos_id = eos,
        .add_bos = true,
    };
    pc_hftok *t = pc_hftok_from_bpe(&spec, err, sizeof err);
    if (!t) printf("\n    %s", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    /* the same regex given explicitly (Llama-3 files set ignore_merges) */
    spec.pre = NULL;
    spec.regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                 "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    spec.ignore_merges = true;
    pc_hftok *t2 = pc_hftok_from_bpe(&spec, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t2);
    json_t *cases = load_json(DIR "cases.json"), *exp = load_json(DIR "bpe_llama3.expected.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(exp);
    json_object_del(exp, "padded");
    CU_ASSERT_EQUAL(check_cases(t, "arrays llama-bpe", json_object_get(cases, "cases"), exp), 0);
    CU_ASSERT_EQUAL(check_cases(t2, "arrays regex", json_object_get(cases, "cases"), exp), 0);
    pc_hftok_special_ids sp;
    pc_hftok_specials(t, &sp);
    CU_ASSERT(sp.bos == bos && sp.eos == eos);
    pc_hftok_free(t);
    pc_hftok_free(t2);
    pc_hftok_free(ref);
    json_decref(exp);

    /* GPT-2's pre-tokenizer: the RoBERTa-style fixture without its post-processor; <mask> keeps
     * its lstrip only in the file, so texts with it are left out */
    arrays b = {0};
    CU_ASSERT_FATAL(to_arrays(DIR "bpe_roberta.json", &b) == 0);
    pc_hftok_bpe_spec s2 = {
        .tokens = (const char *const *)b.tokens,
        .n_tokens = b.ntok,
        .merges = (const char *const *)b.merges,
        .n_merges = b.nmerges,
        .token_types = b.types,
        .pre = "gpt2",
        .bos_id = -1,
        .eos_id = -1,
    };
    t = pc_hftok_from_bpe(&s2, err, sizeof err);
    if (!t) printf("\n    %s", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    exp = load_json(DIR "bpe_roberta.expected.json");
    json_t *cs = json_object_get(cases, "cases"), *plain = json_object_get(exp, "ids_plain");
    int bad = 0;
    for (size_t i = 0; i < json_array_size(cs); i++) {
        const char *text = json_string_value(json_object_get(json_array_get(cs, i), "text"));
        size_t len = json_string_length(json_object_get(json_array_get(cs, i), "text"));
        if (strstr(text, "<mask>")) continue;
        int32_t *ids;
        size_t n;
        if (pc_hftok_encode(t, text, len, true, &ids, &n, err, sizeof err) ||
            !ids_equal(json_array_get(plain, i), ids, n))
            bad++;
        if (n) free(ids);
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* refused: an unknown pre-tokenizer name, a merge of unknown tokens, bos out of range */
    s2.pre = "no-such-pre";
    CU_ASSERT_PTR_NULL(pc_hftok_from_bpe(&s2, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unsupported pre-tokenizer \"no-such-pre\""));
    s2.pre = "gpt2";
    char *m0 = b.merges[0];
    b.merges[0] = "zz qq";
    CU_ASSERT_PTR_NULL(pc_hftok_from_bpe(&s2, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "merges[0]: token \"zz\" is not in the vocabulary"));
    b.merges[0] = m0;
    s2.bos_id = (int32_t)b.ntok;
    CU_ASSERT_PTR_NULL(pc_hftok_from_bpe(&s2, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bos_id"));
    pc_hftok_free(t);
    json_decref(exp);
    json_decref(cases);
    arrays_free(&a);
    arrays_free(&b);
}

/* SmolLM2-135M-Instruct's tokenizer from its GGUF file (tokenizer.ggml.*), not committed */
static void test_smollm2_gguf(void) {
    const char *path = getenv("PEFTC_SMOLLM2_GGUF");
    char err[512];
    if (!path || !*path) {
        printf("\n    skipped: PEFTC_SMOLLM2_GGUF is not set (SmolLM2-135M-Instruct.Q4_1.gguf: "
               "scripts/fetch_models.py) ");
        return;
    }
    pc_gguf *g = pc_gguf_open(path, err, sizeof err);
    if (!g) printf("\n    %s", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    uint64_t ntok = 0, nmerge = 0, ntype = 0;
    pc_gguf_vtype et;
    const char *pre = NULL;
    int64_t bos = -1, eos = -1;
    int add_bos = 0;
    CU_ASSERT_FATAL(
        !pc_gguf_get_array(g, "tokenizer.ggml.tokens", &et, &ntok, err, sizeof err) &&
        !pc_gguf_get_array(g, "tokenizer.ggml.merges", &et, &nmerge, err, sizeof err) &&
        !pc_gguf_get_array(g, "tokenizer.ggml.token_type", &et, &ntype, err, sizeof err) &&
        !pc_gguf_get_str(g, "tokenizer.ggml.pre", &pre, NULL, err, sizeof err) &&
        !pc_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos, err, sizeof err) &&
        !pc_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos, err, sizeof err) &&
        !pc_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, err, sizeof err) &&
        ntype == ntok);
    const char **tokens = calloc(ntok, sizeof *tokens), **merges = calloc(nmerge, sizeof *merges);
    int32_t *types = calloc(ntok, sizeof *types);
    for (uint64_t i = 0; i < ntok; i++) {
        int64_t ty = 0;
        CU_ASSERT_FATAL(!pc_gguf_array_str(g, "tokenizer.ggml.tokens", i, &tokens[i], NULL, err,
                                           sizeof err) &&
                        !pc_gguf_array_int(g, "tokenizer.ggml.token_type", i, &ty, err, sizeof err));
        types[i] = (int32_t)ty;
    }
    for (uint64_t i = 0; i < nmerge; i++)
        CU_ASSERT_FATAL(!pc_gguf_array_str(g, "tokenizer.ggml.merges", i, &merges[i], NULL, err,
                                           sizeof err));
    pc_hftok_bpe_spec spec = {
        .tokens = tokens, .n_tokens = ntok, .merges = merges, .n_merges = nmerge,
        .token_types = types, .pre = pre, .bos_id = (int32_t)bos, .eos_id = (int32_t)eos,
        .add_bos = add_bos,
    };
    pc_hftok *t = pc_hftok_from_bpe(&spec, err, sizeof err);
    if (!t) printf("\n    %s", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    json_t *cases = load_json(DIR "cases.json"), *exp = load_json(DIR "smollm2.expected.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(exp);
    int bad = check_cases(t, "smollm2", json_object_get(cases, "cases"), exp);
    CU_ASSERT_EQUAL(bad, 0);
    printf("\n    SmolLM2 (%s, pre \"%s\", %llu tokens): %zu cases, %d differ ", path, pre,
           (unsigned long long)ntok, json_array_size(json_object_get(cases, "cases")), bad);
    json_decref(cases);
    json_decref(exp);
    pc_hftok_free(t);
    free(tokens);
    free(merges);
    free(types);
    pc_gguf_close(g);
}

/* ---- text that is not UTF-8, ids that are not tokens ---- */

static void test_bad_input(void) {
    char err[512];
    pc_hftok *t = pc_hftok_load(DIR "bpe_roberta.json", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    static const struct {
        const char *s;
        size_t at;
    } bad[] = {{"ab\xff", 2},     {"\xc0\xaf", 0},         {"x\xed\xa0\x80", 1},
               {"xy\xe2\x82", 2}, {"\xf4\x90\x80\x80", 0}, {"ok \x80", 3}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        char want[64];
        CU_ASSERT_EQUAL(
            pc_hftok_encode(t, bad[i].s, strlen(bad[i].s), true, &ids, &n, err, sizeof err), -1);
        snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", bad[i].at);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
        CU_ASSERT_PTR_NULL(ids);
    }
    /* a NUL byte is text like any other */
    int32_t *ids;
    size_t n;
    CU_ASSERT_EQUAL(pc_hftok_encode(t, "a\0b", 3, false, &ids, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 3);
    free(ids);
    int32_t unknown[] = {5, 100000, 6};
    char *out;
    CU_ASSERT_EQUAL(pc_hftok_decode(t, unknown, 3, false, &out, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ids[1] = 100000 is not in the vocabulary"));
    int32_t neg = -1;
    CU_ASSERT_EQUAL(pc_hftok_decode(t, &neg, 1, false, &out, NULL, err, sizeof err), -1);
    CU_ASSERT_EQUAL(pc_hftok_decode(t, NULL, 0, false, &out, NULL, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    CU_ASSERT_PTR_NULL(pc_hftok_id_to_token(t, -3, NULL));
    CU_ASSERT_PTR_NULL(pc_hftok_id_to_token(t, 1 << 30, NULL));
    CU_ASSERT_EQUAL(pc_hftok_token_to_id(t, "no such token", 13), -1);
    pc_hftok_free(t);
    CU_ASSERT_PTR_NULL(pc_hftok_load(DIR "nope.json", err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nope.json"));
}

/* ---- hostile files: each refused with the file, the field and the reason ---- */

#define WP_MODEL(vocab)                                                                            \
    "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##" \
    "\","                                                                                          \
    "\"max_input_chars_per_word\":100,\"vocab\":" vocab "}"
#define WP_VOCAB "{\"[UNK]\":0,\"[CLS]\":1,\"[SEP]\":2,\"a\":3,\"b\":4,\"ab\":5}"
#define BPE_MODEL(merges)                                                                          \
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":" merges "}"

static void test_hostile(void) {
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"model\": ", "bad.json: invalid JSON at line 1"},
        {"[1, 2]", "bad.json: expected a JSON object at the top"},
        {"{\"version\":\"1.0\"}", "bad.json: model: missing"},
        {"{\"version\":\"2.0\"," WP_MODEL(WP_VOCAB) "}",
         "bad.json: version: unknown tokenizer version 2.0"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}",
         "bad.json: model.type: unsupported model type Unigram"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "bad.json: model.unk_token: missing"},
        {"{" WP_MODEL("{\"a\":\"1\"}") "}", "bad.json: model.vocab[\"a\"]: expected an integer id"},
        {"{" WP_MODEL("{\"a\":-4}") "}", "bad.json: model.vocab[\"a\"]: id -4 is out of range"},
        {"{" WP_MODEL("{\"a\":1,\"b\":1}") "}",
         "bad.json: model.vocab: id 1 is given to both \"a\" and \"b\""},
        {"{" WP_MODEL("[\"a\"]") "}", "bad.json: model.vocab: expected an object"},
        {"{\"model\":{\"type\":\"WordPiece\",\"unk_token\":7,\"continuing_subword_prefix\":\"##\","
         "\"max_input_chars_per_word\":100,\"vocab\":{}}}",
         "bad.json: model.unk_token: expected a string, got an integer"},
        {"{" BPE_MODEL("[\"a zz\"]") "}",
         "bad.json: model.merges[0]: token \"zz\" is not in the vocabulary"},
        {"{" BPE_MODEL("[\"b a\"]") "}",
         "bad.json: model.merges[0]: the merged token \"ba\" is not in the vocabulary"},
        {"{" BPE_MODEL("[\"a  b\"]") "}", "bad.json: model.merges[0]: expected \"a b\""},
        {"{" BPE_MODEL("[[\"a\"]]") "}",
         "bad.json: model.merges[0]: expected \"a b\" or [\"a\", \"b\"]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[],\"dropout\":0.1}}",
         "bad.json: model.dropout: unsupported"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{}}}", "bad.json: model.merges: missing"},
        {"{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"\"}," WP_MODEL(
             WP_VOCAB) "}",
         "bad.json: normalizer.type: unsupported normalizer type Precompiled"},
        {"{\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_"
         "chars\":true,"
         "\"lowercase\":\"yes\"}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: normalizer.lowercase: expected a boolean, got a string"},
        {"{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":"
         "\"Nmt\"}]}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: normalizer.normalizers[1].type: unsupported normalizer type Nmt"},
        {"{\"normalizer\":{\"kind\":\"NFC\"}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: normalizer.type: missing"},
        {"{\"pre_tokenizer\":{\"type\":\"UnicodeScripts\"}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: pre_tokenizer.type: unsupported pre-tokenizer type UnicodeScripts"},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[a&&b]\"},\"behavior\":"
         "\"Isolated\","
         "\"invert\":false}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: pre_tokenizer.pattern.Regex: unsupported regex (class intersection"},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":"
         "\"Isolated\","
         "\"invert\":false}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: pre_tokenizer.pattern.Regex: regex refused by PCRE2"},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":"
         "\"Sideways\","
         "\"invert\":false}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: pre_tokenizer.behavior: unknown split behavior Sideways"},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":\"a\",\"behavior\":\"Isolated\","
         "\"invert\":false}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: pre_tokenizer.pattern: expected {\"String\": ...} or {\"Regex\": ...}"},
        {"{\"decoder\":{\"type\":\"CTC\"}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: decoder.type: unsupported decoder type CTC"},
        {"{\"post_processor\":{\"type\":\"BertProcessing\",\"cls\":[\"[CLS]\",1],\"sep\":[\"[SEP]"
         "\",999]}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: post_processor.sep: id 999 is not in the vocabulary (ids 0..5)"},
        {"{\"post_processor\":{\"type\":\"BertProcessing\",\"cls\":[\"[CLS]\",1],\"sep\":[\"[SEP]\",3]},"
         WP_MODEL("{\"[UNK]\":0,\"[CLS]\":1,\"[SEP]\":2,\"a\":5}") "}",
         "bad.json: post_processor.sep: id 3 is not in the vocabulary (ids 0..5)"},
        {"{\"post_processor\":{\"type\":\"BertProcessing\",\"cls\":\"[CLS]\",\"sep\":[\"[SEP]\",2]}"
         "," WP_MODEL(WP_VOCAB) "}",
         "bad.json: post_processor.cls: expected [token, id]"},
        {"{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{"
         "\"id\":\"[X]\","
         "\"type_id\":0}}],\"pair\":[],\"special_tokens\":{}}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: post_processor.single[0]: special token \"[X]\" is not in special_tokens"},
        {"{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{"
         "\"id\":\"[X]\","
         "\"type_id\":0}}],\"pair\":[],\"special_tokens\":"
         "{\"[X]\":{\"id\":\"[X]\",\"ids\":[-1],\"tokens\":[\"[X]\"]}}}," WP_MODEL(WP_VOCAB) "}",
         NULL},
        {"{\"post_processor\":{\"type\":\"RobertaProcessing\"}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: post_processor.cls: missing"},
        {"{\"added_tokens\":[{\"id\":9,\"content\":\"[CLS]\",\"single_word\":false,\"lstrip\":"
         "false,"
         "\"rstrip\":false,\"normalized\":false,\"special\":true}]," WP_MODEL(WP_VOCAB) "}",
         "bad.json: added_tokens[0].id: 9, but the tokenizers library gives \"[CLS]\" id 1"},
        {"{\"added_tokens\":[{\"id\":7,\"content\":\"<new>\",\"single_word\":false,\"lstrip\":"
         "false,"
         "\"rstrip\":false,\"normalized\":false,\"special\":true}]," WP_MODEL(WP_VOCAB) "}",
         "bad.json: added_tokens[0].id: 7, but the tokenizers library gives \"<new>\" id 6"},
        {"{\"added_tokens\":[{\"id\":1,\"content\":\"[CLS]\"}]," WP_MODEL(WP_VOCAB) "}",
         "bad.json: added_tokens[0].single_word: missing"},
        {"{\"added_tokens\":{}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: added_tokens: expected an array"},
        {"{\"truncation\":{\"max_length\":8,\"strategy\":\"OnlySecond\",\"stride\":0}," WP_MODEL(
             WP_VOCAB) "}",
         "bad.json: truncation.strategy: OnlySecond"},
        {"{\"padding\":{\"strategy\":\"Wide\",\"direction\":\"Right\",\"pad_id\":0,\"pad_type_id\":"
         "0,"
         "\"pad_token\":\"[PAD]\"}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: padding.strategy: expected"},
        {"{\"padding\":{\"strategy\":\"BatchLongest\",\"direction\":\"Right\",\"pad_id\":77,\"pad_"
         "type_id\":0,"
         "\"pad_token\":\"[PAD]\"}," WP_MODEL(WP_VOCAB) "}",
         "bad.json: padding.pad_id: id 77 is not in the vocabulary (ids 0..5)"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pc_hftok *t =
            pc_hftok_load_mem("bad.json", cases[i].json, strlen(cases[i].json), err, sizeof err);
        const char *want =
            cases[i].want ? cases[i].want : "post_processor.special_tokens[\"[X]\"].ids[0]: id -1";
        if (t || !strstr(err, want)) {
            printf("\n    case %zu: want \"%s\"\n             got  \"%s\"", i, want,
                   t ? "(loaded)" : err);
            CU_FAIL("hostile file");
        }
        pc_hftok_free(t);
    }
    /* the same minimal file loads and works */
    const char *ok = "{\"post_processor\":{\"type\":\"BertProcessing\",\"cls\":[\"[CLS]\",1],"
                     "\"sep\":[\"[SEP]\",2]},"
                     "\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"}," WP_MODEL(WP_VOCAB) "}";
    pc_hftok *t = pc_hftok_load_mem("ok.json", ok, strlen(ok), err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    int32_t *ids;
    size_t n;
    CU_ASSERT_EQUAL(pc_hftok_encode(t, "ab a c", 6, true, &ids, &n, err, sizeof err), 0);
    int32_t want[] = {1, 5, 3, 0, 2};
    CU_ASSERT(n == 5 && !memcmp(ids, want, sizeof want));
    free(ids);
    pc_hftok_free(t);
}

static CU_TestInfo tests[] = {
    {"bpe_roberta (ByteLevel, RobertaProcessing, <mask> lstrip)", test_bpe_roberta},
    {"bpe_llama3 (Split + ByteLevel, ignore_merges, Template)", test_bpe_llama3},
    {"bpe_spm (Prepend/Replace, byte_fallback, fuse_unk)", test_bpe_spm},
    {"bpe_metaspace (Metaspace pre-tokenizer and decoder)", test_bpe_metaspace},
    {"wordpiece_bert (BertNormalizer, BertPreTokenizer, truncation/padding)", test_wordpiece_bert},
    {"wordpiece_mixed (normalizer and pre-tokenizer sequences)", test_wordpiece_mixed},
    {"all-MiniLM-L6-v2 ($PEFTC_MINILM_DIR)", test_minilm},
    {"special ids", test_specials},
    {"byte-level BPE from arrays (GGUF)", test_arrays},
    {"SmolLM2-135M's GGUF tokenizer ($PEFTC_SMOLLM2_GGUF)", test_smollm2_gguf},
    {"invalid UTF-8, unknown ids", test_bad_input},
    {"hostile files", test_hostile},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("tokenizer_json", tests)
