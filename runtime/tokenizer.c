/* llama2.c BPE tokenizer: run.c-identical encode in O(n log n), decode, safe decode. */
#include "runtime/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"

#define TOK_MAX_VOCAB (1 << 24)
#define TOK_MAX_PIECE (1 << 20)
/* run.c starts its best-score search at -1e10 with a strict '>', so lower scores never merge */
#define TOK_MIN_SCORE (-1e10f)

struct pc_tokenizer {
    int n;
    int max_len;         /* as stored in the file */
    char *bytes;         /* all pieces, each NUL-terminated */
    uint32_t *off, *len; /* piece i = bytes + off[i], len[i] bytes */
    float *score;
    uint32_t *hash; /* per piece, for the table */
    int32_t *table; /* open addressing: piece ids, -1 empty */
    uint32_t mask;
    int space_id; /* " ", the dummy prefix; -1 if absent */
    /* bit (a << 8 | b) set when bytes a, b are adjacent inside some piece: a boundary between
     * symbols whose touching bytes form no such bigram can never be merged across */
    uint64_t bigram[65536 / 64];
    unsigned char byte_pieces[512]; /* byte b as a 1-byte string at 2*b */
};

/* FNV-1a, continued across the two halves of a candidate merge */
static uint32_t fnv(uint32_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}
#define FNV_INIT 2166136261u

/* id of the piece a[0..na) ++ b[0..nb), or -1 */
static int lookup2(const pc_tokenizer *t, const char *a, size_t na, const char *b, size_t nb) {
    uint32_t h = fnv(fnv(FNV_INIT, (const unsigned char *)a, na), (const unsigned char *)b, nb);
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        int32_t id = t->table[i];
        if (id < 0) return -1;
        if (t->hash[id] == h && t->len[id] == na + nb) {
            const char *p = t->bytes + t->off[id];
            if (memcmp(p, a, na) == 0 && memcmp(p + na, b, nb) == 0) return id;
        }
    }
}

int pc_tok_lookup(const pc_tokenizer *t, const char *s, size_t len) {
    return lookup2(t, s, len, "", 0);
}

void pc_tok_free(pc_tokenizer *t) {
    if (!t) return;
    free(t->bytes);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->hash);
    free(t->table);
    free(t);
}

static int32_t rd_i32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

pc_tokenizer *pc_tok_load(const char *path, int vocab_size, char *err, size_t errlen) {
    char *buf;
    size_t size;
    if (pc_read_file(path, &buf, &size, err, errlen)) return NULL;
    const unsigned char *p = (const unsigned char *)buf;
    pc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    if (vocab_size > TOK_MAX_VOCAB) {
        pc_errf(err, errlen, "%s: vocab_size %d is too large (limit %d)", path, vocab_size,
                TOK_MAX_VOCAB);
        goto fail;
    }
    if (size < 4) {
        pc_errf(err, errlen, "%s: max_token_length: truncated, file has %zu bytes", path, size);
        goto fail;
    }
    t->max_len = rd_i32(p);
    if (t->max_len <= 0 || t->max_len > TOK_MAX_PIECE) {
        pc_errf(err, errlen, "%s: max_token_length (%d) must be in 1..%d", path, t->max_len,
                TOK_MAX_PIECE);
        goto fail;
    }
    /* pass 1: count and validate records; pass 2: copy */
    size_t pos = 4, total = 0;
    int n = 0;
    while (pos < size && (vocab_size <= 0 || n < vocab_size)) {
        if (size - pos < 8) {
            pc_errf(err, errlen, "%s: token %d: truncated record header (%zu bytes left)", path, n,
                    size - pos);
            goto fail;
        }
        int32_t len = rd_i32(p + pos + 4);
        if (len < 0 || len > t->max_len) {
            pc_errf(err, errlen, "%s: token %d: length %d outside 0..max_token_length (%d)", path,
                    n, len, t->max_len);
            goto fail;
        }
        if (size - pos - 8 < (size_t)len) {
            pc_errf(err, errlen, "%s: token %d: truncated, needs %d bytes, %zu left", path, n, len,
                    size - pos - 8);
            goto fail;
        }
        pos += 8 + (size_t)len;
        total += (size_t)len + 1;
        if (++n > TOK_MAX_VOCAB) {
            pc_errf(err, errlen, "%s: more than %d tokens", path, TOK_MAX_VOCAB);
            goto fail;
        }
    }
    if (vocab_size > 0 && n < vocab_size) {
        pc_errf(err, errlen, "%s: has %d tokens, expected vocab_size %d", path, n, vocab_size);
        goto fail;
    }
    if (pos != size) {
        pc_errf(err, errlen, "%s: %zu trailing bytes after %d tokens (vocab_size mismatch?)", path,
                size - pos, n);
        goto fail;
    }
    if (n == 0) {
        pc_errf(err, errlen, "%s: no tokens", path);
        goto fail;
    }
    t->n = n;
    uint32_t cap = 1;
    while (cap < 2u * (uint32_t)n) cap <<= 1;
    t->mask = cap - 1;
    t->bytes = malloc(total);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    t->score = malloc((size_t)n * sizeof *t->score);
    t->hash = malloc((size_t)n * sizeof *t->hash);
    t->table = malloc((size_t)cap * sizeof *t->table);
    if (!t->bytes || !t->off || !t->len || !t->score || !t->hash || !t->table) goto oom;
    memset(t->table, 0xff, (size_t)cap * sizeof *t->table);
    pos = 4;
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        memcpy(&t->score[i], p + pos, 4);
        uint32_t len = (uint32_t)rd_i32(p + pos + 4);
        memcpy(t->bytes + o, p + pos + 8, len);
        t->bytes[o + len] = '\0';
        t->off[i] = (uint32_t)o;
        t->len[i] = len;
        t->hash[i] = fnv(FNV_INIT, p + pos + 8, len);
        for (uint32_t j = 0; j + 1 < len; j++) {
            unsigned bg = (unsigned)p[pos + 8 + j] << 8 | p[pos + 9 + j];
            t->bigram[bg / 64] |= (uint64_t)1 << (bg % 64);
        }
        /* insert unless an equal piece with a lower id is already there */
        if (pc_tok_lookup(t, t->bytes + o, len) < 0) {
            uint32_t k = t->hash[i] & t->mask;
            while (t->table[k] >= 0) k = (k + 1) & t->mask;
            t->table[k] = i;
        }
        pos += 8 + len;
        o += len + 1;
    }
    for (int b = 0; b < 256; b++) {
        t->byte_pieces[2 * b] = (unsigned char)b;
        t->byte_pieces[2 * b + 1] = 0;
    }
    t->space_id = pc_tok_lookup(t, " ", 1);
    free(buf);
    return t;
oom:
    pc_errf(err, errlen, "%s: out of memory", path);
fail:
    pc_tok_free(t);
    free(buf);
    return NULL;
}

int pc_tok_vocab_size(const pc_tokenizer *t) { return t->n; }
int pc_tok_max_token_length(const pc_tokenizer *t) { return t->max_len; }

const char *pc_tok_piece(const pc_tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->n) return NULL;
    if (len) *len = t->len[id];
    return t->bytes + t->off[id];
}

float pc_tok_score(const pc_tokenizer *t, int id) {
    return id >= 0 && id < t->n ? t->score[id] : 0.0f;
}

/* ---------------------------------------------------------------- encode */

/* A merge candidate: the pair starting at symbol `left`. Entries go stale when a neighbour
 * changes; cur[left] holds the merge of the pair currently starting at left, so an entry is live
 * iff left is alive and cur[left] == merged (an equal stale entry would do the very same merge). */
typedef struct {
    float score;
    int32_t left;
    int32_t merged;
} cand;

typedef struct {
    cand *a;
    size_t n, cap;
} heap;

/* a before b: higher score, then further left (run.c's scan keeps the first best) */
static inline int cand_before(const cand *a, const cand *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

/* 4-ary heap: shallower than a binary one; long runs (text with few word breaks) can be large */
static void sift_down(cand *a, size_t n, size_t i) {
    cand x = a[i];
    for (;;) {
        size_t c = 4 * i + 1, best = c;
        if (c >= n) break;
        for (size_t k = c + 1; k < c + 4 && k < n; k++)
            if (cand_before(&a[k], &a[best])) best = k;
        if (!cand_before(&a[best], &x)) break;
        a[i] = a[best];
        i = best;
    }
    a[i] = x;
}

static int heap_push(heap *h, cand c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 1024;
        cand *a = realloc(h->a, cap * sizeof *a);
        if (!a) return -1;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && cand_before(&c, &h->a[(i - 1) / 4])) {
        h->a[i] = h->a[(i - 1) / 4];
        i = (i - 1) / 4;
    }
    h->a[i] = c;
    return 0;
}

static cand heap_pop(heap *h) {
    cand top = h->a[0];
    h->a[0] = h->a[--h->n];
    if (h->n) sift_down(h->a, h->n, 0);
    return top;
}

/* records the pair (l, next) in cur[l]; returns the candidate's merged id or -1 */
static int pair_merge(const pc_tokenizer *t, const int32_t *tok, int32_t l, int32_t r) {
    int a = tok[l], b = tok[r];
    int id = lookup2(t, t->bytes + t->off[a], t->len[a], t->bytes + t->off[b], t->len[b]);
    if (id < 0 || !(t->score[id] > TOK_MIN_SCORE)) return -1; /* NaN never merges either */
    return id;
}

static int push_pair(const pc_tokenizer *t, heap *h, const int32_t *tok, int32_t *cur, int32_t l,
                     int32_t r) {
    if (l < 0) return 0;
    cur[l] = r < 0 ? -1 : pair_merge(t, tok, l, r);
    return cur[l] < 0 ? 0 : heap_push(h, (cand){t->score[cur[l]], l, cur[l]});
}

/* whether a merge could ever span the boundary between symbols a and b */
static inline int can_cross(const pc_tokenizer *t, int a, int b) {
    if (t->len[a] == 0 || t->len[b] == 0) return 1; /* empty pieces: be conservative */
    unsigned bg = (unsigned char)t->bytes[t->off[a] + t->len[a] - 1] << 8 |
                  (unsigned char)t->bytes[t->off[b]];
    return (int)(t->bigram[bg / 64] >> (bg % 64) & 1);
}

/* merges symbols [s0, e) (linked through prev/next, next[e-1] == -1) in priority order */
static int merge_run(const pc_tokenizer *t, heap *h, int32_t *tok, int32_t *prev, int32_t *next,
                     int32_t *cur, int32_t s0, int32_t e) {
    h->n = 0;
    if (e - s0 < 2) return 0;
    if (h->cap < (size_t)(e - s0)) {
        cand *a = realloc(h->a, (size_t)(e - s0) * sizeof *a);
        if (!a) return -1;
        h->a = a;
        h->cap = (size_t)(e - s0);
    }
    for (int32_t i = s0; i < e; i++) {
        cur[i] = i + 1 < e ? pair_merge(t, tok, i, i + 1) : -1;
        if (cur[i] >= 0) h->a[h->n++] = (cand){t->score[cur[i]], i, cur[i]};
    }
    for (size_t i = h->n / 4 + 1; i-- > 0;) /* Floyd heapify */
        if (i < h->n) sift_down(h->a, h->n, i);
    while (h->n > 0) {
        cand c = heap_pop(h);
        int32_t l = c.left;
        if (tok[l] < 0 || cur[l] != c.merged) continue; /* stale */
        int32_t r = next[l];
        tok[l] = c.merged;
        tok[r] = -1; /* dead */
        next[l] = next[r];
        if (next[l] >= 0) prev[next[l]] = l;
        if (push_pair(t, h, tok, cur, l == s0 ? -1 : prev[l], l) ||
            push_pair(t, h, tok, cur, l, next[l]))
            return -1;
    }
    return 0;
}

int pc_tok_encode(const pc_tokenizer *t, const char *text, size_t len, int bos, int eos,
                  int32_t *ids, size_t cap, size_t *n, char *err, size_t errlen) {
    *n = 0;
    if (!text && len > 0) return pc_errf(err, errlen, "tokenizer: NULL text");
    if (len > (size_t)INT32_MAX - 8)
        return pc_errf(err, errlen, "tokenizer: text of %zu bytes is too long", len);
    if (cap < pc_tok_encode_bound(len))
        return pc_errf(err, errlen, "tokenizer: output capacity %zu < %zu needed for %zu bytes",
                       cap, pc_tok_encode_bound(len), len);
    if ((bos && PC_TOK_BOS >= t->n) || (eos && PC_TOK_EOS >= t->n))
        return pc_errf(err, errlen, "tokenizer: BOS/EOS id beyond the %d-token vocabulary", t->n);
    size_t m = len + 2; /* symbols: BOS, prefix, at most one per byte */
    int32_t *tok = malloc(m * sizeof *tok), *prev = malloc(m * sizeof *prev),
            *next = malloc(m * sizeof *next), *cur = malloc(m * sizeof *cur);
    heap h = {0};
    int rc = -1;
    if (!tok || !prev || !next || !cur) goto oom;
    int32_t k = 0;
    if (bos) tok[k++] = PC_TOK_BOS;
    if (len > 0) {
        /* run.c would push -1 when " " is missing; the byte fallback is the sane equivalent */
        tok[k++] = t->space_id >= 0 ? t->space_id : ' ' + 3;
    }
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t g = 1; /* any byte starts a group; continuation bytes join it up to 4 bytes */
        while (g < 4 && i + g < len && (s[i + g] & 0xC0) == 0x80) g++;
        int id = pc_tok_lookup(t, text + i, g);
        if (id >= 0) {
            tok[k++] = id;
        } else {
            for (size_t j = 0; j < g; j++) tok[k++] = s[i + j] + 3;
        }
        i += g;
    }
    for (int32_t i = 0; i < k; i++) {
        if (tok[i] >= t->n) {
            pc_errf(err, errlen, "tokenizer: byte fallback id %d is beyond the %d-token vocabulary",
                    tok[i], t->n);
            goto done;
        }
        prev[i] = i - 1;
        next[i] = i + 1 < k ? i + 1 : -1;
    }
    /* Merges never cross a boundary whose touching bytes are not adjacent in any piece (a merged
     * piece contains both symbols whole). Pairs in different runs never interact, so merging each
     * run alone in priority order yields exactly the global order's result — with a small heap
     * that stays in cache. */
    size_t o = 0;
    for (int32_t s0 = 0; s0 < k;) {
        int32_t e = s0 + 1;
        while (e < k && can_cross(t, tok[e - 1], tok[e])) e++;
        next[e - 1] = -1;
        if (merge_run(t, &h, tok, prev, next, cur, s0, e)) goto oom;
        for (int32_t i = s0; i >= 0; i = next[i]) ids[o++] = tok[i];
        s0 = e;
    }
    if (eos) ids[o++] = PC_TOK_EOS;
    *n = o;
    rc = 0;
    goto done;
oom:
    pc_errf(err, errlen, "tokenizer: out of memory for %zu bytes of text", len);
done:
    free(h.a);
    free(tok);
    free(prev);
    free(next);
    free(cur);
    return rc;
}

/* ---------------------------------------------------------------- decode */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

const char *pc_tok_decode(const pc_tokenizer *t, int prev, int id, size_t *len) {
    if (id < 0 || id >= t->n) return NULL;
    const char *p = t->bytes + t->off[id];
    size_t n = t->len[id];
    if (prev == PC_TOK_BOS && n > 0 && p[0] == ' ') { /* sentencepiece strips it after BOS */
        p++;
        n--;
    }
    /* run.c: sscanf(piece, "<0x%02hhX>") == 1, i.e. "<0x" and one or two hex digits */
    if (n >= 4 && memcmp(p, "<0x", 3) == 0 && hexval(p[3]) >= 0) {
        int b = hexval(p[3]);
        if (n >= 5 && hexval(p[4]) >= 0) b = b * 16 + hexval(p[4]);
        p = (const char *)t->byte_pieces + 2 * b;
        n = 1;
    }
    if (len) *len = n;
    return p;
}

const char *pc_tok_decode_safe(const pc_tokenizer *t, int prev, int id, size_t *len) {
    size_t n;
    const char *p = pc_tok_decode(t, prev, id, &n);
    if (p && n == 1) {
        unsigned char c = (unsigned char)p[0];
        int printable = c >= 0x20 && c < 0x7f; /* isprint/isspace in the C locale */
        int space = c == ' ' || (c >= '\t' && c <= '\r');
        if (!printable && !space) {
            p = "";
            n = 0;
        }
    }
    if (len) *len = p ? n : 0;
    return p;
}

int pc_tok_decode_seq(const pc_tokenizer *t, int prev, const int32_t *ids, size_t n, int safe,
                      char **out, size_t *outlen, char *err, size_t errlen) {
    *out = NULL;
    if (outlen) *outlen = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n)
            return pc_errf(err, errlen, "tokenizer: decode: id %d at index %zu is outside 0..%d",
                           (int)ids[i], i, t->n - 1);
        total += t->len[ids[i]]; /* a decoded piece is never longer than the raw one */
    }
    char *s = malloc(total + 1);
    if (!s) return pc_errf(err, errlen, "tokenizer: decode: out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        int pv = i ? ids[i - 1] : prev;
        const char *p =
            safe ? pc_tok_decode_safe(t, pv, ids[i], &l) : pc_tok_decode(t, pv, ids[i], &l);
        memcpy(s + o, p, l);
        o += l;
    }
    s[o] = '\0';
    *out = s;
    if (outlen) *outlen = o;
    return 0;
}
