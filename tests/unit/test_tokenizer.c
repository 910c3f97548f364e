/* llama2.c tokenizer: loading, run.c-identical encode (against a naive re-implementation of
 * run.c's O(n^2) algorithm), decode, and the stories260K greedy reference. */
#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cu_main.h"
#include "runtime/fileio.h"
#include "runtime/tokenizer.h"

#define TOK_PATH PEFTC_SOURCE_DIR "/data/stories260K/tok512.bin"
#define REF_PATH PEFTC_SOURCE_DIR "/data/stories260K/reference_greedy.txt"
#define SHAKES_PATH PEFTC_SOURCE_DIR "/data/tinyshakespeare/input.txt"
#define STORIES_PATH PEFTC_SOURCE_DIR "/data/tinystories/tinystories_sample.txt"

/* ------------------------------------------------------------------------------------------------
 * Naive reference, written independently of runtime/tokenizer.c and following run.c step by step:
 * its own file parser, C-string pieces, a strcmp-sorted vocabulary searched with bsearch, and the
 * O(n^2) loop that rescans every adjacent pair after each merge. */
typedef struct {
    const char *str;
    int id;
} nv_index;

typedef struct {
    int n;
    char **vocab;
    float *scores;
    nv_index *sorted;
    int max_len;
} naive_tok;

static int nv_cmp(const void *a, const void *b) {
    return strcmp(((const nv_index *)a)->str, ((const nv_index *)b)->str);
}

static int nv_load(naive_tok *nt, const char *path, int vocab_size) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    memset(nt, 0, sizeof *nt);
    nt->n = vocab_size;
    nt->vocab = calloc((size_t)vocab_size, sizeof(char *));
    nt->scores = calloc((size_t)vocab_size, sizeof(float));
    nt->sorted = calloc((size_t)vocab_size, sizeof(nv_index));
    int ok = fread(&nt->max_len, 4, 1, f) == 1;
    for (int i = 0; ok && i < vocab_size; i++) {
        int len;
        ok = fread(&nt->scores[i], 4, 1, f) == 1 && fread(&len, 4, 1, f) == 1;
        if (!ok) break;
        nt->vocab[i] = calloc((size_t)len + 1, 1);
        ok = len == 0 || fread(nt->vocab[i], (size_t)len, 1, f) == 1;
        nt->sorted[i] = (nv_index){nt->vocab[i], i};
    }
    fclose(f);
    qsort(nt->sorted, (size_t)vocab_size, sizeof(nv_index), nv_cmp);
    return ok ? 0 : -1;
}

static void nv_free(naive_tok *nt) {
    for (int i = 0; i < nt->n; i++) free(nt->vocab[i]);
    free(nt->vocab);
    free(nt->scores);
    free(nt->sorted);
}

static int nv_lookup(const naive_tok *nt, const char *s) {
    nv_index key = {s, 0};
    const nv_index *r = bsearch(&key, nt->sorted, (size_t)nt->n, sizeof(nv_index), nv_cmp);
    return r ? r->id : -1;
}

/* the dummy prefix and one symbol per code point (or byte fallback), appended to tokens */
static void nv_encode_symbols(const naive_tok *nt, const char *text, int *tokens, int *n) {
    char buf[8];
    size_t blen = 0;
    if (text[0] != '\0') tokens[(*n)++] = nv_lookup(nt, " ");
    for (const char *c = text; *c != '\0'; c++) {
        if ((*c & 0xC0) != 0x80) blen = 0;
        buf[blen++] = *c;
        buf[blen] = '\0';
        if ((*(c + 1) & 0xC0) == 0x80 && blen < 4) continue;
        int id = nv_lookup(nt, buf);
        if (id != -1) {
            tokens[(*n)++] = id;
        } else {
            for (size_t i = 0; i < blen; i++) tokens[(*n)++] = (unsigned char)buf[i] + 3;
        }
        blen = 0;
    }
}

/* id of the merge of a and b, or -1 */
static int nv_pair(const naive_tok *nt, char *buf, int a, int b) {
    snprintf(buf, (size_t)nt->max_len * 2 + 3, "%s%s", nt->vocab[a], nt->vocab[b]);
    return nv_lookup(nt, buf);
}

/* run.c encode(); tokens needs strlen(text) + 3 entries */
static void nv_encode(const naive_tok *nt, const char *text, int bos, int eos, int *tokens,
                      int *n) {
    char *buf = malloc((size_t)nt->max_len * 2 + 3);
    *n = 0;
    if (bos) tokens[(*n)++] = 1;
    nv_encode_symbols(nt, text, tokens, n);
    for (;;) {
        float best = -1e10f;
        int best_id = -1, best_idx = -1;
        for (int i = 0; i < *n - 1; i++) {
            int id = nv_pair(nt, buf, tokens[i], tokens[i + 1]);
            if (id != -1 && nt->scores[id] > best) {
                best = nt->scores[id];
                best_id = id;
                best_idx = i;
            }
        }
        if (best_idx == -1) break;
        tokens[best_idx] = best_id;
        for (int i = best_idx + 1; i < *n - 1; i++) tokens[i] = tokens[i + 1];
        (*n)--;
    }
    if (eos) tokens[(*n)++] = 2;
    free(buf);
}

/* The same algorithm with each pair's lookup cached between scans (only the two pairs touching a
 * merge are looked up again). The scan and the strict '>' selection are unchanged; this only makes
 * the O(n^2) reference fast enough for whole files in 2 KB chunks. */
static void nv_encode_cached(const naive_tok *nt, const char *text, int *tokens, int *n) {
    nv_encode(nt, "", 1, 0, tokens, n); /* BOS only; the initial symbols come next */
    size_t len = strlen(text);
    int *init = malloc((len + 3) * sizeof *init), ni = 0;
    nv_encode_symbols(nt, text, init, &ni);
    memcpy(tokens + *n, init, (size_t)ni * sizeof *init);
    *n += ni;
    free(init);
    char *buf = malloc((size_t)nt->max_len * 2 + 3);
    int *pid = malloc((size_t)(*n + 1) * sizeof *pid);
    for (int i = 0; i < *n - 1; i++) pid[i] = nv_pair(nt, buf, tokens[i], tokens[i + 1]);
    for (;;) {
        float best = -1e10f;
        int best_idx = -1;
        for (int i = 0; i < *n - 1; i++)
            if (pid[i] != -1 && nt->scores[pid[i]] > best) {
                best = nt->scores[pid[i]];
                best_idx = i;
            }
        if (best_idx == -1) break;
        tokens[best_idx] = pid[best_idx];
        for (int i = best_idx + 1; i < *n - 1; i++) {
            tokens[i] = tokens[i + 1];
            pid[i] = pid[i + 1];
        }
        (*n)--;
        if (best_idx > 0)
            pid[best_idx - 1] = nv_pair(nt, buf, tokens[best_idx - 1], tokens[best_idx]);
        if (best_idx < *n - 1)
            pid[best_idx] = nv_pair(nt, buf, tokens[best_idx], tokens[best_idx + 1]);
    }
    free(pid);
    free(buf);
}
/* ---------------------------------------------------------------------------------------------- */

static pc_tokenizer *load_tok(void) {
    char err[512];
    pc_tokenizer *t = pc_tok_load(TOK_PATH, 512, err, sizeof err);
    if (!t) fprintf(stderr, "%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    return t;
}

/* fast vs naive on one C string; returns 1 when equal */
static int same_as_naive(const pc_tokenizer *t, const naive_tok *nt, const char *text, int bos,
                         int eos, int cached) {
    size_t len = strlen(text), n = 0;
    int32_t *fast = malloc(pc_tok_encode_bound(len) * sizeof *fast);
    int *slow = malloc((len + 3) * sizeof *slow);
    char err[256];
    int rc =
        pc_tok_encode(t, text, len, bos, eos, fast, pc_tok_encode_bound(len), &n, err, sizeof err);
    int nslow = 0;
    if (cached && bos && !eos)
        nv_encode_cached(nt, text, slow, &nslow);
    else
        nv_encode(nt, text, bos, eos, slow, &nslow);
    int same = rc == 0 && (size_t)nslow == n;
    for (size_t i = 0; same && i < n; i++) same = fast[i] == slow[i];
    if (!same) {
        fprintf(stderr, "\nmismatch on %zu-byte text (rc %d): fast %zu ids, naive %d ids\n", len,
                rc, n, nslow);
        for (size_t i = 0; i < n && i < (size_t)nslow; i++)
            if (fast[i] != slow[i]) {
                fprintf(stderr, "  first difference at %zu: %d vs %d\n", i, fast[i], slow[i]);
                break;
            }
    }
    free(fast);
    free(slow);
    return same;
}

static void test_load(void) {
    pc_tokenizer *t = load_tok();
    CU_ASSERT_EQUAL(pc_tok_vocab_size(t), 512);
    CU_ASSERT_EQUAL(pc_tok_max_token_length(t), 7);
    size_t len;
    CU_ASSERT_STRING_EQUAL(pc_tok_piece(t, 259, &len), " t");
    CU_ASSERT_EQUAL(len, 2);
    CU_ASSERT_STRING_EQUAL(pc_tok_piece(t, 260, NULL), "he");
    CU_ASSERT_STRING_EQUAL(pc_tok_piece(t, 261, NULL), " a");
    CU_ASSERT_STRING_EQUAL(pc_tok_piece(t, 410, NULL), " ");
    CU_ASSERT_STRING_EQUAL(pc_tok_piece(t, 3 + 0x41, NULL), "<0x41>");
    CU_ASSERT_STRING_EQUAL(pc_tok_piece(t, 1, NULL), "\n<s>\n");
    CU_ASSERT_PTR_NULL(pc_tok_piece(t, 512, NULL));
    CU_ASSERT_PTR_NULL(pc_tok_piece(t, -1, NULL));
    CU_ASSERT_EQUAL(pc_tok_lookup(t, " ", 1), 410);
    CU_ASSERT_EQUAL(pc_tok_lookup(t, "he", 2), 260);
    CU_ASSERT_EQUAL(pc_tok_lookup(t, "zzzzzzzz", 8), -1);
    CU_ASSERT_DOUBLE_EQUAL(pc_tok_score(t, 259), 0.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(pc_tok_score(t, 261), -2.0, 0);
    /* no duplicated pieces, so run.c's bsearch and our lookup agree on every id */
    for (int i = 0; i < 512; i++) {
        size_t l;
        const char *p = pc_tok_piece(t, i, &l);
        CU_ASSERT_EQUAL(pc_tok_lookup(t, p, l), i);
    }
    pc_tok_free(t);

    char err[256];
    t = pc_tok_load(TOK_PATH, 0, err, sizeof err); /* count from the file */
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(pc_tok_vocab_size(t), 512);
    pc_tok_free(t);
}

/* writes bytes to a scratch file in the build dir */
static void scratch(char *path, size_t cap, const char *name, const void *data, size_t len) {
    snprintf(path, cap, "%s/%s", PEFTC_BINARY_DIR, name);
    char err[256];
    CU_ASSERT_EQUAL(pc_write_file_atomic(path, data, len, err, sizeof err), 0);
}

static void expect_load_error(const char *name, const void *data, size_t len, int vocab,
                              const char *needle) {
    char err[512] = "", path[512];
    scratch(path, sizeof path, name, data, len);
    pc_tokenizer *t = pc_tok_load(path, vocab, err, sizeof err);
    CU_ASSERT_PTR_NULL(t);
    pc_tok_free(t);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, name));
    if (!strstr(err, needle)) fprintf(stderr, "\n%s: message '%s' lacks '%s'\n", name, err, needle);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, needle));
}

static void test_load_errors(void) {
    char *buf;
    size_t len;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_read_file(TOK_PATH, &buf, &len, err, sizeof err), 0);
    CU_ASSERT_EQUAL(len, 6227);
    CU_ASSERT_PTR_NULL(pc_tok_load(PEFTC_BINARY_DIR "/no_such_tok.bin", 512, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no_such_tok.bin"));
    expect_load_error("tok_empty.bin", buf, 0, 512, "truncated");
    expect_load_error("tok_at_record.bin", buf, 100, 512, "has 7 tokens");
    expect_load_error("tok_trunc.bin", buf, 101, 512, "token 7: truncated");
    expect_load_error("tok_trunc_hdr.bin", buf, len - 2, 512, "token 511");
    expect_load_error("tok_short.bin", buf, len, 513, "expected vocab_size 513");
    expect_load_error("tok_trailing.bin", buf, len, 100, "trailing");
    char *bad = malloc(len);
    memcpy(bad, buf, len);
    int32_t v = 0;
    memcpy(bad, &v, 4);
    expect_load_error("tok_maxlen0.bin", bad, len, 512, "max_token_length (0)");
    memcpy(bad, buf, len);
    v = -5;
    memcpy(bad + 8, &v, 4); /* token 0's length */
    expect_load_error("tok_neglen.bin", bad, len, 512, "token 0: length -5");
    v = 8;
    memcpy(bad + 8, &v, 4);
    expect_load_error("tok_longlen.bin", bad, len, 512, "max_token_length (7)");
    free(bad);
    free(buf);
}

static void test_encode_basic(void) {
    pc_tokenizer *t = load_tok();
    int32_t ids[64];
    size_t n;
    char err[256];
    CU_ASSERT_EQUAL(pc_tok_encode(t, "", 0, 1, 0, ids, 64, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(ids[0], 1);
    CU_ASSERT_EQUAL(pc_tok_encode(t, "", 0, 0, 0, ids, 64, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(pc_tok_encode(t, "", 0, 1, 1, ids, 64, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(ids[1], 2);
    /* a single space: dummy prefix + " " merge into "  " only if that is a piece */
    CU_ASSERT_EQUAL(pc_tok_encode(t, " ", 1, 0, 0, ids, 64, &n, err, sizeof err), 0);
    CU_ASSERT(n >= 1);
    /* "Once upon a time" starts the greedy reference: 403 407 261 378 */
    const char *s = "Once upon a time";
    CU_ASSERT_EQUAL(pc_tok_encode(t, s, strlen(s), 1, 1, ids, 64, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(n, 6);
    const int32_t want[] = {1, 403, 407, 261, 378, 2};
    for (int i = 0; i < 6; i++) CU_ASSERT_EQUAL(ids[i], want[i]);
    /* capacity check */
    CU_ASSERT_EQUAL(pc_tok_encode(t, s, strlen(s), 1, 1, ids, 5, &n, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "capacity"));
    /* a NUL byte is a byte fallback, not the end of the text */
    CU_ASSERT_EQUAL(pc_tok_encode(t, "a\0b", 3, 0, 0, ids, 64, &n, err, sizeof err), 0);
    int has_nul = 0;
    for (size_t i = 0; i < n; i++) has_nul |= ids[i] == 3;
    CU_ASSERT(has_nul);
    pc_tok_free(t);
}

static void test_encode_edge_cases(void) {
    pc_tokenizer *t = load_tok();
    naive_tok nt;
    CU_ASSERT_EQUAL_FATAL(nv_load(&nt, TOK_PATH, 512), 0);
    static const char *cases[] = {
        "",
        " ",
        "  ",
        "                                        ",
        "\n",
        "\n\n\n",
        "\t",
        "a\tb\tc\n\td",
        "Hello world",
        " leading space",
        "trailing space ",
        "Once upon a time, there was a little girl named Lily.",
        "caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9",               /* 2-byte UTF-8 */
        "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c",            /* CJK, 3-byte */
        "emoji \xf0\x9f\x98\x80 and \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", /* 4-byte */
        "\xe2\x80\x9cquoted\xe2\x80\x9d \xe2\x80\x94 dash",
        "\x01\x02\x7f control",
        "\xff\xfe invalid lead bytes",
        "\x80\x80\x80\x80\x80\x80 stray continuations",
        "\xc3 truncated two-byte",
        "\xe4\xbd truncated three-byte",
        "\xf0\x9f\x98\x80\x80\x80 overlong continuation run",
        "\xf8\x88\x80\x80\x80 five-byte form",
        "x\xc3",
        "<0x41> <s> </s>",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "the the the the the the the the the",
        "It's 3:45pm; 100% sure! (maybe) [ok] {x} #tag @user $5 ~ ^ _ ` |",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int flags = 0; flags < 4; flags++) {
            int ok = same_as_naive(t, &nt, cases[i], flags & 1, flags >> 1, 0);
            if (!ok) fprintf(stderr, "  case %zu flags %d\n", i, flags);
            CU_ASSERT(ok);
        }
    }
    /* every single byte value, alone and between letters */
    for (int b = 1; b < 256; b++) {
        char s[8] = {(char)b, 0};
        CU_ASSERT(same_as_naive(t, &nt, s, 1, 0, 0));
        char s2[8] = {'a', (char)b, 'b', (char)b, (char)b, 0};
        CU_ASSERT(same_as_naive(t, &nt, s2, 1, 0, 0));
    }
    nv_free(&nt);
    pc_tok_free(t);
}

/* compares fast and naive on consecutive chunks of a file (chunks may split UTF-8 sequences,
 * which exercises the invalid-UTF-8 path too) */
static void compare_file_chunks(const char *path, size_t limit, size_t chunk, int cached) {
    pc_tokenizer *t = load_tok();
    naive_tok nt;
    CU_ASSERT_EQUAL_FATAL(nv_load(&nt, TOK_PATH, 512), 0);
    char *text;
    size_t len;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_read_file(path, &text, &len, err, sizeof err), 0);
    if (limit && len > limit) len = limit;
    char *piece = malloc(chunk + 1);
    int bad = 0;
    for (size_t off = 0; off < len && bad < 3; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        memcpy(piece, text + off, n);
        piece[n] = '\0';
        if (!same_as_naive(t, &nt, piece, 1, 0, cached)) {
            fprintf(stderr, "  %s: chunk at offset %zu\n", path, off);
            bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(piece);
    free(text);
    nv_free(&nt);
    pc_tok_free(t);
}

/* literal run.c algorithm on the first 16 KB in 1 KB pieces; the cached variant on the rest */
static void test_naive_shakespeare(void) {
    compare_file_chunks(SHAKES_PATH, 16 * 1024, 1024, 0);
    compare_file_chunks(SHAKES_PATH, 0, 2048, 1);
}
static void test_naive_tinystories(void) {
    compare_file_chunks(STORIES_PATH, 16 * 1024, 1024, 0);
    compare_file_chunks(STORIES_PATH, 200 * 1024, 2048, 1);
}

/* texts whose symbols can all merge across: one long run through the heap */
static void test_long_runs(void) {
    pc_tokenizer *t = load_tok();
    naive_tok nt;
    CU_ASSERT_EQUAL_FATAL(nv_load(&nt, TOK_PATH, 512), 0);
    char *s = malloc(4097);
    const char *pat[] = {"a", "ab", "the", "he", "in", "an", "er"};
    for (size_t p = 0; p < sizeof pat / sizeof pat[0]; p++) {
        size_t pl = strlen(pat[p]), n = 0;
        while (n + pl <= 4096) {
            memcpy(s + n, pat[p], pl);
            n += pl;
        }
        s[n] = '\0';
        CU_ASSERT(same_as_naive(t, &nt, s, 1, 0, 1));
        s[1000] = '\0';
        CU_ASSERT(same_as_naive(t, &nt, s, 1, 1, 0));
    }
    free(s);
    nv_free(&nt);
    pc_tok_free(t);
}

/* the whole files through the fast encoder: decode(encode(x)) == x, timing printed */
static void roundtrip_file(const char *path) {
    pc_tokenizer *t = load_tok();
    char *text;
    size_t len, n;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pc_read_file(path, &text, &len, err, sizeof err), 0);
    int32_t *ids = malloc(pc_tok_encode_bound(len) * sizeof *ids);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = pc_tok_encode(t, text, len, 1, 0, ids, pc_tok_encode_bound(len), &n, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    printf("\n    encode %s: %zu bytes -> %zu ids in %.1f ms ", strrchr(path, '/') + 1, len, n, ms);
    CU_ASSERT_EQUAL(ids[0], 1);
    char *back;
    size_t blen;
    CU_ASSERT_EQUAL_FATAL(pc_tok_decode_seq(t, 1, ids + 1, n - 1, 0, &back, &blen, err, sizeof err),
                          0);
    CU_ASSERT_EQUAL(blen, len);
    CU_ASSERT(blen == len && memcmp(back, text, len) == 0);
    free(back);
    free(ids);
    free(text);
    pc_tok_free(t);
}

static void test_full_tinystories(void) { roundtrip_file(STORIES_PATH); }
static void test_full_shakespeare(void) { roundtrip_file(SHAKES_PATH); }

static void test_decode(void) {
    pc_tokenizer *t = load_tok();
    size_t len;
    const char *p = pc_tok_decode(t, 1, 259, &len); /* " t" after BOS loses its space */
    CU_ASSERT_EQUAL(len, 1);
    CU_ASSERT_NSTRING_EQUAL(p, "t", 1);
    p = pc_tok_decode(t, 400, 259, &len);
    CU_ASSERT_EQUAL(len, 2);
    CU_ASSERT_NSTRING_EQUAL(p, " t", 2);
    p = pc_tok_decode(t, 5, 3 + 'A', &len);
    CU_ASSERT(len == 1 && p[0] == 'A');
    p = pc_tok_decode(t, 5, 3 + 0xE2, &len);
    CU_ASSERT(len == 1 && (unsigned char)p[0] == 0xE2);
    p = pc_tok_decode_safe(t, 5, 3 + 0xE2, &len); /* lone non-ASCII byte: not printed */
    CU_ASSERT(len == 0 && p[0] == '\0');
    p = pc_tok_decode_safe(t, 5, 3 + 0x07, &len); /* BEL */
    CU_ASSERT_EQUAL(len, 0);
    p = pc_tok_decode_safe(t, 5, 3 + '\n', &len);
    CU_ASSERT(len == 1 && p[0] == '\n');
    p = pc_tok_decode_safe(t, 5, 260, &len);
    CU_ASSERT(len == 2 && memcmp(p, "he", 2) == 0);
    CU_ASSERT_PTR_NULL(pc_tok_decode(t, 1, 512, &len));
    CU_ASSERT_PTR_NULL(pc_tok_decode(t, 1, -3, &len));

    int32_t ids[] = {403, 3 + 0xE2, 3 + 0x80, 3 + 0x9C, 3 + 0x07};
    char *out, err[256];
    size_t n;
    CU_ASSERT_EQUAL(pc_tok_decode_seq(t, 1, ids, 5, 0, &out, &n, err, sizeof err), 0);
    CU_ASSERT_EQUAL(n, 8); /* "Once" + 3 bytes + BEL */
    CU_ASSERT(n == 8 && memcmp(out, "Once\xe2\x80\x9c\x07", 8) == 0);
    free(out);
    CU_ASSERT_EQUAL(pc_tok_decode_seq(t, 1, ids, 5, 1, &out, &n, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(out, "Once");
    free(out);
    int32_t badids[] = {403, 999};
    CU_ASSERT_EQUAL(pc_tok_decode_seq(t, 1, badids, 2, 0, &out, &n, err, sizeof err), -1);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "999"));
    pc_tok_free(t);
}

/* decoding the model's greedy output gives the known story, and re-encoding it gives the same ids
 */
static void test_reference_greedy(void) {
    pc_tokenizer *t = load_tok();
    char *text, err[512];
    size_t len;
    CU_ASSERT_EQUAL_FATAL(pc_read_file(REF_PATH, &text, &len, err, sizeof err), 0);
    char *line = strstr(text, "\ntokens ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(line);
    int32_t ids[128];
    size_t n = 0;
    char *p = line + 8, *end;
    for (long v = strtol(p, &end, 10); end != p && n < 128; v = strtol(p, &end, 10)) {
        ids[n++] = (int32_t)v;
        p = end;
        if (*p == '\n') break;
    }
    CU_ASSERT_EQUAL_FATAL(n, 101);
    CU_ASSERT_EQUAL(ids[0], 1);
    char *story;
    size_t slen;
    CU_ASSERT_EQUAL_FATAL(pc_tok_decode_seq(t, 1, ids + 1, 100, 0, &story, &slen, err, sizeof err),
                          0);
    const char *prefix = "Once upon a time, there was a little girl named Lily. She loved to play "
                         "outside in the park. One day, she saw a big, red ball.";
    CU_ASSERT_NSTRING_EQUAL(story, prefix, strlen(prefix));
    int32_t again[256];
    size_t m;
    CU_ASSERT_EQUAL_FATAL(pc_tok_encode(t, story, slen, 1, 0, again, 256, &m, err, sizeof err), 0);
    CU_ASSERT_EQUAL(m, n);
    for (size_t i = 0; i < n && i < m; i++) CU_ASSERT_EQUAL(again[i], ids[i]);
    free(story);
    free(text);
    pc_tok_free(t);
}

static CU_TestInfo tests[] = {
    {"load", test_load},
    {"load_errors", test_load_errors},
    {"encode_basic", test_encode_basic},
    {"encode_edge_cases_vs_naive", test_encode_edge_cases},
    {"naive_vs_fast_tinyshakespeare", test_naive_shakespeare},
    {"naive_vs_fast_tinystories_200k", test_naive_tinystories},
    {"long_runs_vs_naive", test_long_runs},
    {"full_tinystories_roundtrip", test_full_tinystories},
    {"full_tinyshakespeare_roundtrip", test_full_shakespeare},
    {"decode", test_decode},
    {"reference_greedy", test_reference_greedy},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("tokenizer", tests)
