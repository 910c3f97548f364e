/* tokenizer.json (runtime/tokenizer_json*.c): input = u16 little-endian text length L, L bytes of
 * text, then the tokenizer.json text. Loads it from memory; when it loads, encodes the text (with
 * and without special tokens, and with the file's truncation/padding), decodes the ids (skipping
 * special tokens or not, and each id alone), and looks every id up both ways.
 * Oracles: a text that is valid UTF-8 encodes (unless the model needs an unk_token its
 * vocabulary lacks, which the library refuses too); every id is below pc_hftok_id_bound and decodes;
 * the padded ids have the pad id where the mask is 0; token lookups land on tokens. */
#include "runtime/tokenizer_json.h"
#include "tests/fuzz/fuzz_common.h"

static bool valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], k = c < 0x80 ? 0 : c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2
                                           : c >= 0xF0 && c <= 0xF4 ? 3 : 9;
        if (k == 9 || n - i <= k) return k == 0 && i < n;
        unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        if (k && (s[i + 1] < lo || s[i + 1] > hi)) return false;
        for (unsigned j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return false;
        i += k + 1;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t tl = (size_t)data[0] | (size_t)data[1] << 8;
    if (tl > size - 2) tl = size - 2;
    const char *text = (const char *)data + 2, *json = text + tl;
    size_t jl = size - 2 - tl;
    char err[512];
    pc_hftok *t = pc_hftok_load_mem("fuzz.json", json, jl, err, sizeof err);
    if (!t) return 0;
    int32_t bound = pc_hftok_id_bound(t);
    for (int add = 0; add < 2; add++) {
        int32_t *ids = NULL;
        size_t n = 0;
        int rc = pc_hftok_encode(t, text, tl, add, &ids, &n, err, sizeof err);
        /* the one other refusal is the library's too: an unk_token missing from the vocabulary */
        FUZZ_CHECK(rc == 0 || !valid_utf8((const unsigned char *)text, tl) || strstr(err, "unk_token"),
                   "valid text refused: %s", err);
        for (size_t i = 0; rc == 0 && i < n; i++)
            FUZZ_CHECK(ids[i] >= 0 && ids[i] < bound, "id %d outside [0, %d)", ids[i], bound);
        for (int skip = 0; rc == 0 && skip < 2; skip++) {
            char *out = NULL;
            FUZZ_CHECK(pc_hftok_decode(t, ids, n, skip, &out, NULL, err, sizeof err) == 0, "decode: %s", err);
            free(out);
        }
        for (size_t i = 0; rc == 0 && i < n && i < 64; i++) {
            char *out = NULL;
            FUZZ_CHECK(pc_hftok_decode(t, ids + i, 1, false, &out, NULL, err, sizeof err) == 0, "decode 1: %s", err);
            free(out);
        }
        free(ids);
        uint8_t *mask = NULL;
        ids = NULL;
        if (pc_hftok_encode_padded(t, text, tl, add, &ids, &n, &mask, err, sizeof err) == 0) {
            pc_hftok_special_ids sp;
            pc_hftok_specials(t, &sp);
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(mask[i] || ids[i] == sp.pad, "padding %d is not the pad id %d", ids[i], sp.pad);
        }
        free(ids);
        free(mask);
    }
    /* id -> token -> id holds but for normalized added tokens, whose token is their normalized
     * form (the library's id_to_token), which may be no token or another one */
    for (int32_t id = 0; id < bound && id < 4096; id++) {
        size_t len;
        const char *s = pc_hftok_id_to_token(t, id, &len);
        if (!s) continue;
        int32_t back = pc_hftok_token_to_id(t, s, len);
        FUZZ_CHECK(back == id || back == -1 || pc_hftok_id_to_token(t, back, NULL),
                   "id %d -> token -> id %d, which has no token", id, back);
    }
    pc_hftok_free(t);
    return 0;
}
