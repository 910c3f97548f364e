/* llama2.c tokenizer (runtime/tokenizer.c): input = u16 little-endian text length L, L bytes of
 * text, then the tokenizer.bin file. Loads the file (until EOF, and again with its exact token
 * count), encodes the text and a fixed sample with and without BOS/EOS, decodes the ids.
 * Oracle: the ids equal those of llama2.c run.c's encode() (a direct O(n^2) transcription below,
 * for texts up to 512 bytes), and decoding never fails on them. */
#include "runtime/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

/* run.c encode(): dummy prefix, one symbol per code point (byte fallback id = byte + 3), then
 * merge the best-scoring adjacent pair (strictly above -1e10, leftmost on ties) until none */
static size_t ref_encode(const pc_tokenizer *t, const char *text, size_t len, int bos, int eos, int32_t *out) {
    size_t k = 0;
    if (bos) out[k++] = PC_TOK_BOS;
    if (len > 0) {
        int sp = pc_tok_lookup(t, " ", 1);
        out[k++] = sp >= 0 ? sp : ' ' + 3;
    }
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t g = 1;
        while (g < 4 && i + g < len && (s[i + g] & 0xC0) == 0x80) g++;
        int id = pc_tok_lookup(t, text + i, g);
        if (id >= 0) out[k++] = id;
        else
            for (size_t j = 0; j < g; j++) out[k++] = s[i + j] + 3;
        i += g;
    }
    for (size_t i = 0; i < k; i++)
        if (out[i] >= pc_tok_vocab_size(t)) return (size_t)-1;
    char *buf = malloc(2 * (size_t)pc_tok_max_token_length(t) + 2);
    for (;;) {
        float best = -1e10f;
        long best_i = -1;
        int best_id = -1;
        for (size_t i = 0; i + 1 < k; i++) {
            size_t la, lb;
            const char *a = pc_tok_piece(t, out[i], &la), *b = pc_tok_piece(t, out[i + 1], &lb);
            memcpy(buf, a, la);
            memcpy(buf + la, b, lb);
            int id = pc_tok_lookup(t, buf, la + lb);
            if (id != -1 && pc_tok_score(t, id) > best) {
                best = pc_tok_score(t, id);
                best_i = (long)i;
                best_id = id;
            }
        }
        if (best_i < 0) break;
        out[best_i] = best_id;
        memmove(out + best_i + 1, out + best_i + 2, (k - (size_t)best_i - 2) * sizeof *out);
        k--;
    }
    free(buf);
    if (eos) out[k++] = PC_TOK_EOS;
    return k;
}

static void encode_check(const pc_tokenizer *t, const char *text, size_t len) {
    size_t cap = pc_tok_encode_bound(len);
    int32_t *ids = malloc(cap * sizeof *ids), *ref = malloc(cap * sizeof *ref);
    char err[256];
    for (int mode = 0; mode < 4; mode++) {
        int bos = mode & 1, eos = mode >> 1;
        size_t n;
        int rc = pc_tok_encode(t, text, len, bos, eos, ids, cap, &n, err, sizeof err);
        if (rc) continue; /* a byte fallback or BOS/EOS beyond a small vocabulary */
        FUZZ_CHECK(n <= cap, "n %zu > cap %zu", n, cap);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(ids[i] >= 0 && ids[i] < pc_tok_vocab_size(t), "id %d out of range", ids[i]);
        if (len <= 512) {
            size_t m = ref_encode(t, text, len, bos, eos, ref);
            FUZZ_CHECK(m == n, "%zu ids, run.c gives %zu (bos %d eos %d, text %zu bytes)", n, m, bos, eos, len);
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(ids[i] == ref[i], "id %zu: %d, run.c gives %d", i, ids[i], ref[i]);
        }
        char *s;
        size_t slen;
        FUZZ_CHECK(pc_tok_decode_seq(t, bos ? -1 : PC_TOK_BOS, ids, n, mode & 1, &s, &slen, err, sizeof err) == 0,
                   "decode: %s", err);
        FUZZ_CHECK(strlen(s) <= slen, "decode length");
        free(s);
    }
    free(ids);
    free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t tlen = (size_t)data[0] | (size_t)data[1] << 8;
    if (tlen > size - 2) tlen = size - 2;
    const char *text = (const char *)data + 2;
    const uint8_t *file = data + 2 + tlen;
    size_t flen = size - 2 - tlen;
    const char *path = fuzz_write("tokenizer.bin", file, flen);
    char err[512];
    pc_tokenizer *t = pc_tok_load(path, 0, err, sizeof err);
    if (!t) return 0;
    int n = pc_tok_vocab_size(t);
    FUZZ_CHECK(n > 0 && pc_tok_max_token_length(t) > 0, "vocab");
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = pc_tok_piece(t, i, &len);
        FUZZ_CHECK(p && p[len] == '\0' && (int)len <= pc_tok_max_token_length(t), "piece %d", i);
        int id = pc_tok_lookup(t, p, len);
        FUZZ_CHECK(id >= 0 && id <= i, "lookup of piece %d gives %d", i, id);
        (void)pc_tok_decode_safe(t, PC_TOK_BOS, i, &len);
    }
    FUZZ_CHECK(!pc_tok_piece(t, n, NULL) && !pc_tok_decode(t, 0, -1, NULL), "out of range ids");
    /* the same file with its exact count loads too; one token fewer leaves trailing bytes */
    pc_tokenizer *t2 = pc_tok_load(path, n, err, sizeof err);
    FUZZ_CHECK(t2 && pc_tok_vocab_size(t2) == n, "reload with vocab_size %d: %s", n, t2 ? "" : err);
    pc_tok_free(t2);
    t2 = pc_tok_load(path, n + 1, err, sizeof err);
    FUZZ_CHECK(!t2, "loads with vocab_size %d", n + 1);
    static const char sample[] = "Once upon a time, \xc3\xa9t\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80 \x80\xff\0x\n";
    encode_check(t, text, tlen);
    encode_check(t, sample, sizeof sample - 1);
    encode_check(t, "", 0);
    pc_tok_free(t);
    return 0;
}
