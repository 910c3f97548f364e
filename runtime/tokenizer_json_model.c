/* tokenizer.json models: the vocabulary, WordPiece and BPE.
 *
 * WordPiece: greedy longest match from the left, continuing pieces prefixed (##), the whole
 * word as unk_token when a piece is missing or the word is longer than
 * max_input_chars_per_word characters. BPE: one symbol per character (byte_fallback to <0xNN>
 * pieces, unknown characters as unk_token (fused or not) or dropped when there is none), then
 * the merge of lowest rank first, leftmost on ties, as the library's Word::merge_all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/tokenizer_json_internal.h"

#define MAX_ID ((1 << 24) - 1) /* ids beyond this are refused (tables are indexed by id) */

/* ---- vocabulary: string -> id ---- */

typedef struct {
    size_t off;
    uint32_t len, hash;
    int32_t id;
} ventry;

struct pc_hft_vocab {
    pc_hft_buf strs;
    ventry *e;
    size_t n, cap;
    int32_t *table; /* entry index, -1 empty */
    size_t mask;
};

static uint32_t fnv(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

pc_hft_vocab *pc_hft_vocab_new(size_t expected) {
    pc_hft_vocab *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    size_t tsize = 64;
    while (tsize < expected * 2 + 2) tsize *= 2;
    v->table = malloc(tsize * sizeof *v->table);
    if (!v->table) {
        free(v);
        return NULL;
    }
    memset(v->table, 0xff, tsize * sizeof *v->table);
    v->mask = tsize - 1;
    return v;
}

void pc_hft_vocab_free(pc_hft_vocab *v) {
    if (!v) return;
    pc_hft_buf_free(&v->strs);
    free(v->e);
    free(v->table);
    free(v);
}

size_t pc_hft_vocab_count(const pc_hft_vocab *v) { return v->n; }

static int32_t find_entry(const pc_hft_vocab *v, const char *s, size_t len, uint32_t h,
                          size_t *slot) {
    for (size_t i = h & v->mask;; i = (i + 1) & v->mask) {
        int32_t k = v->table[i];
        if (k < 0) {
            *slot = i;
            return -1;
        }
        const ventry *e = &v->e[k];
        if (e->hash == h && e->len == len && !memcmp(v->strs.p + e->off, s, len)) {
            *slot = i;
            return k;
        }
    }
}

int32_t pc_hft_vocab_get(const pc_hft_vocab *v, const char *s, size_t len) {
    size_t slot;
    int32_t k = find_entry(v, s, len, fnv(s, len), &slot);
    return k < 0 ? -1 : v->e[k].id;
}

/* adds or (like the library's map) overwrites */
int pc_hft_vocab_add(pc_hft_vocab *v, const char *s, size_t len, int32_t id) {
    if (len > UINT32_MAX) return -1;
    uint32_t h = fnv(s, len);
    size_t slot;
    int32_t k = find_entry(v, s, len, h, &slot);
    if (k >= 0) {
        v->e[k].id = id;
        return 0;
    }
    if ((v->n + 1) * 2 > v->mask + 1) { /* grow and rehash */
        size_t tsize = (v->mask + 1) * 2;
        int32_t *t = malloc(tsize * sizeof *t);
        if (!t) return -1;
        memset(t, 0xff, tsize * sizeof *t);
        for (size_t i = 0; i < v->n; i++) {
            size_t j = v->e[i].hash & (tsize - 1);
            while (t[j] >= 0) j = (j + 1) & (tsize - 1);
            t[j] = (int32_t)i;
        }
        free(v->table);
        v->table = t;
        v->mask = tsize - 1;
        find_entry(v, s, len, h, &slot);
    }
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        ventry *e = realloc(v->e, cap * sizeof *e);
        if (!e) return -1;
        v->e = e;
        v->cap = cap;
    }
    size_t off = v->strs.len;
    if (pc_hft_buf_put(&v->strs, s, len) || pc_hft_buf_put(&v->strs, "", 0)) return -1;
    v->strs.len++; /* keep each string's NUL */
    v->e[v->n] = (ventry){off, (uint32_t)len, h, id};
    v->table[slot] = (int32_t)v->n++;
    return 0;
}

/* ---- merges: (left id, right id) -> (rank, new id) ---- */

typedef struct {
    uint64_t key; /* left << 32 | right; UINT64_MAX empty */
    int32_t rank, id;
} mentry;

typedef struct {
    mentry *t;
    size_t mask, n;
} merge_map;

static int mm_init(merge_map *m, size_t expected) {
    size_t tsize = 64;
    while (tsize < expected * 2 + 2) tsize *= 2;
    m->t = malloc(tsize * sizeof *m->t);
    if (!m->t) return -1;
    for (size_t i = 0; i < tsize; i++) m->t[i].key = UINT64_MAX;
    m->mask = tsize - 1;
    m->n = 0;
    return 0;
}

static size_t mm_slot(const merge_map *m, uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    for (size_t i = (size_t)(h >> 32) & m->mask;; i = (i + 1) & m->mask)
        if (m->t[i].key == key || m->t[i].key == UINT64_MAX) return i;
}

static const mentry *mm_get(const merge_map *m, int32_t a, int32_t b) {
    if (!m->t) return NULL;
    const mentry *e = &m->t[mm_slot(m, (uint64_t)(uint32_t)a << 32 | (uint32_t)b)];
    return e->key == UINT64_MAX ? NULL : e;
}

/* inserts or overwrites (a later duplicate wins, as in the library's map) */
static void mm_put(merge_map *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    mentry *e = &m->t[mm_slot(m, key)];
    if (e->key == UINT64_MAX) m->n++;
    *e = (mentry){key, rank, id};
}

/* ---- the model ---- */

struct pc_hft_model {
    bool bpe;
    pc_hft_vocab *vocab;
    int32_t *entry_of_id; /* id -> vocab entry, -1 */
    int32_t id_bound;
    char *unk; /* NULL: none */
    size_t unk_len;
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix (NULL: none) */
    size_t prefix_len, suffix_len;
    size_t max_chars; /* WordPiece */
    bool ignore_merges, byte_fallback, fuse_unk; /* BPE */
    merge_map merges;
};

void pc_hft_model_free(pc_hft_model *m) {
    if (!m) return;
    pc_hft_vocab_free(m->vocab);
    free(m->entry_of_id);
    free(m->unk);
    free(m->prefix);
    free(m->suffix);
    free(m->merges.t);
    free(m);
}

void pc_hft_model_set_ignore_merges(pc_hft_model *m, bool on) { m->ignore_merges = on; }

size_t pc_hft_model_size(const pc_hft_model *m) { return pc_hft_vocab_count(m->vocab); }
int32_t pc_hft_model_id_bound(const pc_hft_model *m) { return m->id_bound; }
const char *pc_hft_model_unk(const pc_hft_model *m) { return m->unk; }

int32_t pc_hft_model_token_to_id(const pc_hft_model *m, const char *s, size_t len) {
    return pc_hft_vocab_get(m->vocab, s, len);
}

const char *pc_hft_model_id_to_token(const pc_hft_model *m, int32_t id, size_t *len) {
    if (id < 0 || id >= m->id_bound || m->entry_of_id[id] < 0) return NULL;
    const ventry *e = &m->vocab->e[m->entry_of_id[id]];
    if (len) *len = e->len;
    return m->vocab->strs.p + e->off;
}

/* id -> entry table; duplicate ids are refused */
static int index_ids(const pc_hft_ctx *cx, pc_hft_model *m, const char *field) {
    int32_t bound = 0;
    for (size_t i = 0; i < m->vocab->n; i++)
        if (m->vocab->e[i].id + 1 > bound) bound = m->vocab->e[i].id + 1;
    m->id_bound = bound;
    m->entry_of_id = malloc(((size_t)bound + 1) * sizeof *m->entry_of_id);
    if (!m->entry_of_id) return pc_hft_oom(cx, field);
    memset(m->entry_of_id, 0xff, ((size_t)bound + 1) * sizeof *m->entry_of_id);
    for (size_t i = 0; i < m->vocab->n; i++) {
        int32_t id = m->vocab->e[i].id;
        if (m->entry_of_id[id] >= 0) {
            const ventry *o = &m->vocab->e[m->entry_of_id[id]];
            return pc_hft_fail(cx, field, "id %d is given to both \"%s\" and \"%s\"", id,
                               m->vocab->strs.p + o->off, m->vocab->strs.p + m->vocab->e[i].off);
        }
        m->entry_of_id[id] = (int32_t)i;
    }
    return 0;
}

static int parse_vocab(const pc_hft_ctx *cx, json_t *v, pc_hft_model *m) {
    if (!json_is_object(v)) return pc_hft_fail(cx, "model.vocab", "expected an object");
    m->vocab = pc_hft_vocab_new(json_object_size(v));
    if (!m->vocab) return pc_hft_oom(cx, "model.vocab");
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach(v, key, klen, val) {
        char f[300];
        pc_hft_pathf(f, sizeof f, "model.vocab[\"%.200s\"]", key);
        if (!json_is_integer(val)) return pc_hft_fail(cx, f, "expected an integer id");
        json_int_t id = json_integer_value(val);
        if (id < 0 || id > MAX_ID)
            return pc_hft_fail(cx, f, "id %lld is out of range [0, %d]", (long long)id, MAX_ID);
        if (pc_utf8_valid_prefix(key, klen) != klen) return pc_hft_fail(cx, f, "not UTF-8");
        if (pc_hft_vocab_add(m->vocab, key, klen, (int32_t)id)) return pc_hft_oom(cx, f);
    }
    return index_ids(cx, m, "model.vocab");
}

static int opt_str(const pc_hft_ctx *cx, json_t *j, const char *key, char **out, size_t *len) {
    const char *s;
    size_t n;
    if (!json_object_get(j, key)) return 0;
    if (pc_hft_get_str(cx, j, "model", key, true, &s, &n)) return -1;
    if (!s) return 0;
    if (!(*out = pc_hft_strndup(s, n))) return pc_hft_oom(cx, "model");
    *len = n;
    return 0;
}

/* one merge: a, b -> the merged token (a + b without b's continuing prefix) */
static int add_merge(const pc_hft_ctx *cx, pc_hft_model *m, const char *field, const char *a,
                     size_t al, const char *b, size_t bl, int32_t rank, pc_hft_buf *tmp) {
    int32_t ia = pc_hft_vocab_get(m->vocab, a, al), ib = pc_hft_vocab_get(m->vocab, b, bl);
    if (ia < 0)
        return pc_hft_fail(cx, field, "token \"%.*s\" is not in the vocabulary", (int)al, a);
    if (ib < 0)
        return pc_hft_fail(cx, field, "token \"%.*s\" is not in the vocabulary", (int)bl, b);
    size_t skip = m->prefix_len;
    if (skip > bl) skip = bl;
    tmp->len = 0;
    if (pc_hft_buf_put(tmp, a, al) || pc_hft_buf_put(tmp, b + skip, bl - skip))
        return pc_hft_oom(cx, field);
    int32_t id = pc_hft_vocab_get(m->vocab, tmp->p, tmp->len);
    if (id < 0)
        return pc_hft_fail(cx, field, "the merged token \"%.*s\" is not in the vocabulary",
                           (int)tmp->len, tmp->p);
    mm_put(&m->merges, ia, ib, rank, id);
    return 0;
}

/* "a b" (legacy) */
static int add_merge_str(const pc_hft_ctx *cx, pc_hft_model *m, const char *field, const char *s,
                         size_t n, int32_t rank, pc_hft_buf *tmp) {
    const char *sp = memchr(s, ' ', n);
    if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
        return pc_hft_fail(cx, field, "expected \"a b\" (two tokens separated by one space)");
    return add_merge(cx, m, field, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp + 1 - s), rank,
                     tmp);
}

static int parse_merges(const pc_hft_ctx *cx, json_t *a, pc_hft_model *m) {
    if (!json_is_array(a)) return pc_hft_fail(cx, "model.merges", "expected an array");
    if (mm_init(&m->merges, json_array_size(a))) return pc_hft_oom(cx, "model.merges");
    pc_hft_buf tmp = {0};
    int32_t rank = 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *e = json_array_get(a, i);
        char f[64];
        pc_hft_pathf(f, sizeof f, "model.merges[%zu]", i);
        int rc;
        if (json_is_string(e)) {
            const char *s = json_string_value(e);
            size_t n = json_string_length(e);
            if (n >= 8 && !memcmp(s, "#version", 8)) continue; /* the library skips these */
            rc = add_merge_str(cx, m, f, s, n, rank, &tmp);
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
            json_t *x = json_array_get(e, 0), *y = json_array_get(e, 1);
            rc = add_merge(cx, m, f, json_string_value(x), json_string_length(x),
                           json_string_value(y), json_string_length(y), rank, &tmp);
        } else {
            rc = pc_hft_fail(cx, f, "expected \"a b\" or [\"a\", \"b\"]");
        }
        if (rc) {
            pc_hft_buf_free(&tmp);
            return -1;
        }
        rank++;
    }
    pc_hft_buf_free(&tmp);
    return 0;
}

int pc_hft_model_parse(const pc_hft_ctx *cx, json_t *j, pc_hft_model **out) {
    const char *type = NULL;
    *out = NULL;
    if (!json_is_object(j)) return pc_hft_fail(cx, "model", "expected an object");
    pc_hft_model *m = calloc(1, sizeof *m);
    if (!m) return pc_hft_oom(cx, "model");
    if (json_object_get(j, "type")) {
        if (pc_hft_get_str(cx, j, "model", "type", false, &type, NULL)) goto fail;
    } else if (json_object_get(j, "merges")) {
        type = "BPE"; /* the library accepts untyped models by their fields */
    } else if (json_object_get(j, "max_input_chars_per_word")) {
        type = "WordPiece";
    } else {
        pc_hft_fail(cx, "model.type", "missing");
        goto fail;
    }
    json_t *vocab = pc_hft_get(cx, j, "model", "vocab", false);
    if (!strcmp(type, "WordPiece")) {
        const char *unk, *pre;
        size_t ul, pl;
        int64_t mx;
        if (!vocab || pc_hft_get_str(cx, j, "model", "unk_token", false, &unk, &ul) ||
            pc_hft_get_str(cx, j, "model", "continuing_subword_prefix", false, &pre, &pl) ||
            pc_hft_get_int(cx, j, "model", "max_input_chars_per_word", 0, INT64_MAX, &mx) ||
            parse_vocab(cx, vocab, m))
            goto fail;
        if (!(m->unk = pc_hft_strndup(unk, ul)) || !(m->prefix = pc_hft_strndup(pre, pl))) {
            pc_hft_oom(cx, "model");
            goto fail;
        }
        m->unk_len = ul;
        m->prefix_len = pl;
        m->max_chars = (size_t)mx;
    } else if (!strcmp(type, "BPE")) {
        m->bpe = true;
        json_t *merges = pc_hft_get(cx, j, "model", "merges", false), *d;
        if (!vocab || !merges) goto fail;
        if ((d = json_object_get(j, "dropout")) && !json_is_null(d) &&
            !(json_is_number(d) && json_number_value(d) == 0.0)) {
            pc_hft_fail(cx, "model.dropout", "unsupported: BPE dropout is random; only null or 0");
            goto fail;
        }
        if (opt_str(cx, j, "unk_token", &m->unk, &m->unk_len) ||
            opt_str(cx, j, "continuing_subword_prefix", &m->prefix, &m->prefix_len) ||
            opt_str(cx, j, "end_of_word_suffix", &m->suffix, &m->suffix_len))
            goto fail;
        static const char *const flags[] = {"fuse_unk", "byte_fallback", "ignore_merges"};
        bool *dst[] = {&m->fuse_unk, &m->byte_fallback, &m->ignore_merges};
        for (int i = 0; i < 3; i++) {
            json_t *x = json_object_get(j, flags[i]);
            if (x && !json_is_null(x) &&
                pc_hft_get_bool(cx, j, "model", flags[i], false, false, dst[i]))
                goto fail;
        }
        if (parse_vocab(cx, vocab, m) || parse_merges(cx, merges, m)) goto fail;
    } else {
        pc_hft_fail(cx, "model.type", "unsupported model type %s", type);
        goto fail;
    }
    *out = m;
    return 0;
fail:
    pc_hft_model_free(m);
    return -1;
}

int pc_hft_model_bpe_arrays(const pc_hft_ctx *cx, const char *const *tokens, size_t ntok,
                            const char *const *merges, size_t nmerges, pc_hft_model **out) {
    *out = NULL;
    if (ntok > (size_t)MAX_ID + 1)
        return pc_hft_fail(cx, "tokens", "%zu tokens: more than %d", ntok, MAX_ID + 1);
    pc_hft_model *m = calloc(1, sizeof *m);
    pc_hft_buf tmp = {0}, spelled = {0};
    if (!m || !(m->vocab = pc_hft_vocab_new(ntok))) goto oom;
    m->bpe = true;
    for (size_t i = 0; i < ntok; i++) {
        char f[64];
        pc_hft_pathf(f, sizeof f, "tokens[%zu]", i);
        if (!tokens[i]) {
            pc_hft_fail(cx, f, "NULL");
            goto fail;
        }
        size_t n = strlen(tokens[i]);
        if (pc_utf8_valid_prefix(tokens[i], n) != n) {
            pc_hft_fail(cx, f, "not UTF-8");
            goto fail;
        }
        /* a token not spelled in the byte-level alphabet is respelled from its bytes */
        bool in_alphabet = true;
        for (size_t k = 0; k < n && in_alphabet;) {
            uint32_t c;
            k += (size_t)pc_utf8_next(tokens[i] + k, n - k, &c);
            in_alphabet = pc_hft_char_byte(c) >= 0;
        }
        const char *s = tokens[i];
        if (!in_alphabet) {
            spelled.len = 0;
            for (size_t k = 0; k < n; k++)
                if (pc_hft_buf_putc(&spelled, pc_hft_byte_char((unsigned char)tokens[i][k])))
                    goto oom;
            s = spelled.p;
            n = spelled.len;
        }
        if (pc_hft_vocab_add(m->vocab, s, n, (int32_t)i)) goto oom;
    }
    /* a token listed twice keeps its last id (pc_hft_vocab_add overwrites), as the Python dict
     * transformers builds from the list */
    if (index_ids(cx, m, "tokens")) goto fail;
    if (mm_init(&m->merges, nmerges)) goto oom;
    for (size_t i = 0; i < nmerges; i++) {
        char f[64];
        pc_hft_pathf(f, sizeof f, "merges[%zu]", i);
        if (!merges[i]) {
            pc_hft_fail(cx, f, "NULL");
            goto fail;
        }
        if (add_merge_str(cx, m, f, merges[i], strlen(merges[i]), (int32_t)i, &tmp)) goto fail;
    }
    pc_hft_buf_free(&tmp);
    pc_hft_buf_free(&spelled);
    *out = m;
    return 0;
oom:
    pc_hft_oom(cx, "tokens");
fail:
    pc_hft_buf_free(&tmp);
    pc_hft_buf_free(&spelled);
    pc_hft_model_free(m);
    return -1;
}

/* ---- WordPiece ---- */

static int unk_id(const pc_hft_model *m, int32_t *id, char *err, size_t errlen) {
    *id = m->unk ? pc_hft_vocab_get(m->vocab, m->unk, m->unk_len) : -1;
    if (*id < 0)
        return pc_errf(err, errlen, "model: unk_token \"%s\" is not in the vocabulary",
                       m->unk ? m->unk : "");
    return 0;
}

static int wordpiece(const pc_hft_model *m, const char *s, size_t len, pc_hft_ids *out, char *err,
                     size_t errlen) {
    int32_t unk;
    size_t first = out->n;
    if (pc_utf8_count(s, len) > m->max_chars) goto unknown;
    pc_hft_buf tmp = {0};
    for (size_t start = 0; start < len;) {
        size_t end = len;
        int32_t id = -1;
        while (start < end) {
            tmp.len = 0;
            if ((start > 0 && pc_hft_buf_put(&tmp, m->prefix, m->prefix_len)) ||
                pc_hft_buf_put(&tmp, s + start, end - start)) {
                pc_hft_buf_free(&tmp);
                return pc_errf(err, errlen, "model: out of memory");
            }
            if ((id = pc_hft_vocab_get(m->vocab, tmp.p, tmp.len)) >= 0) break;
            end -= (size_t)pc_utf8_last_len(s + start, end - start);
        }
        if (id < 0) {
            pc_hft_buf_free(&tmp);
            out->n = first;
            goto unknown;
        }
        if (pc_hft_ids_push(out, id)) {
            pc_hft_buf_free(&tmp);
            return pc_errf(err, errlen, "model: out of memory");
        }
        start = end;
    }
    pc_hft_buf_free(&tmp);
    return 0;
unknown:
    if (unk_id(m, &unk, err, errlen)) return -1;
    return pc_hft_ids_push(out, unk) ? pc_errf(err, errlen, "model: out of memory") : 0;
}

/* ---- BPE ---- */

typedef struct {
    int32_t c;
    int32_t prev, next;
    size_t len;
} symbol;

typedef struct {
    int32_t rank, id;
    size_t pos;
} cand;

static bool cand_less(const cand *a, const cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

typedef struct {
    cand *v;
    size_t n, cap;
} heap;

static int heap_push(heap *h, cand c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 32;
        cand *v = realloc(h->v, cap * sizeof *v);
        if (!v) return -1;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && cand_less(&c, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = c;
    return 0;
}

static cand heap_pop(heap *h) {
    cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < h->n && cand_less(&h->v[l], best)) m = l, best = &h->v[l];
        if (r < h->n && cand_less(&h->v[r], best)) m = r;
        if (m == i) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n) h->v[i] = last;
    return top;
}

typedef struct {
    symbol *v;
    size_t n, cap;
} word;

static int word_add(word *w, int32_t c, size_t len) {
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        symbol *v = realloc(w->v, cap * sizeof *v);
        if (!v) return -1;
        w->v = v;
        w->cap = cap;
    }
    if (w->n) w->v[w->n - 1].next = (int32_t)w->n;
    w->v[w->n] = (symbol){c, (int32_t)w->n - 1, -1, len};
    w->n++;
    return 0;
}

static int merge_all(const pc_hft_model *m, word *w) {
    heap h = {0};
    int rc = -1;
    for (size_t i = 0; i + 1 < w->n; i++) {
        const mentry *e = mm_get(&m->merges, w->v[i].c, w->v[i + 1].c);
        if (e && heap_push(&h, (cand){e->rank, e->id, i})) goto done;
    }
    while (h.n) {
        cand top = heap_pop(&h);
        symbol *cur = &w->v[top.pos];
        if (cur->len == 0 || cur->next == -1) continue;
        symbol right = w->v[cur->next];
        const mentry *e = mm_get(&m->merges, cur->c, right.c);
        if (!e || e->id != top.id) continue; /* an expired candidate */
        size_t next_pos = (size_t)cur->next;
        cur->c = top.id;
        cur->len += right.len;
        cur->next = right.next;
        w->v[next_pos].len = 0;
        if (right.next > -1 && (size_t)right.next < w->n) w->v[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            const mentry *p = mm_get(&m->merges, w->v[cur->prev].c, cur->c);
            if (p && heap_push(&h, (cand){p->rank, p->id, (size_t)cur->prev})) goto done;
        }
        if (cur->next > -1 && (size_t)cur->next < w->n) {
            const mentry *q = mm_get(&m->merges, cur->c, w->v[cur->next].c);
            if (q && heap_push(&h, (cand){q->rank, q->id, top.pos})) goto done;
        }
    }
    rc = 0;
done:
    free(h.v);
    return rc;
}

static int bpe(const pc_hft_model *m, const char *s, size_t len, pc_hft_ids *out, char *err,
               size_t errlen) {
    if (len == 0) return 0;
    if (m->ignore_merges) {
        int32_t id = pc_hft_vocab_get(m->vocab, s, len);
        if (id >= 0)
            return pc_hft_ids_push(out, id) ? pc_errf(err, errlen, "model: out of memory") : 0;
    }
    word w = {0};
    pc_hft_buf tmp = {0};
    int32_t unk_c = -1; /* a pending unknown symbol */
    size_t unk_len = 0;
    int rc = -1;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = (size_t)pc_utf8_next(s + i, len - i, &cp);
        bool first = i == 0, last = i + k == len;
        tmp.len = 0;
        if ((!first && m->prefix && pc_hft_buf_put(&tmp, m->prefix, m->prefix_len)) ||
            pc_hft_buf_put(&tmp, s + i, k) ||
            (last && m->suffix && pc_hft_buf_put(&tmp, m->suffix, m->suffix_len)))
            goto oom;
        int32_t id = pc_hft_vocab_get(m->vocab, tmp.p, tmp.len);
        if (id >= 0) {
            if (unk_c >= 0 && word_add(&w, unk_c, unk_len)) goto oom;
            unk_c = -1;
            if (word_add(&w, id, k)) goto oom;
            i += k;
            continue;
        }
        if (m->byte_fallback) {
            int32_t b[64];
            size_t nb = tmp.len;
            bool all = nb <= 64;
            for (size_t q = 0; q < nb && all; q++) {
                char name[8];
                snprintf(name, sizeof name, "<0x%02X>", (unsigned char)tmp.p[q]);
                all = (b[q] = pc_hft_vocab_get(m->vocab, name, 6)) >= 0;
            }
            if (all) {
                for (size_t q = 0; q < nb; q++)
                    if (word_add(&w, b[q], 1)) goto oom;
                i += k;
                continue;
            }
        }
        if (m->unk) {
            int32_t u;
            if (unk_c >= 0 && m->fuse_unk) {
                unk_len += k;
            } else {
                if (unk_c >= 0 && word_add(&w, unk_c, unk_len)) goto oom;
                if (unk_id(m, &u, err, errlen)) goto done;
                unk_c = u;
                unk_len = k;
            }
        }
        i += k; /* no unk_token: the character is dropped, as the library does */
    }
    if (unk_c >= 0 && word_add(&w, unk_c, unk_len)) goto oom;
    if (merge_all(m, &w)) goto oom;
    for (size_t i = 0; i < w.n; i++)
        if (w.v[i].len && pc_hft_ids_push(out, w.v[i].c)) goto oom;
    rc = 0;
    goto done;
oom:
    pc_errf(err, errlen, "model: out of memory");
done:
    free(w.v);
    pc_hft_buf_free(&tmp);
    return rc;
}

int pc_hft_model_tokenize(const pc_hft_model *m, const char *s, size_t len, pc_hft_ids *out,
                          char *err, size_t errlen) {
    return m->bpe ? bpe(m, s, len, out, err, errlen) : wordpiece(m, s, len, out, err, errlen);
}
