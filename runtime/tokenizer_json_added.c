/* Added tokens (tokenizer.json "added_tokens"): their ids as the library assigns them, and
 * their extraction from the text (AddedVocabulary::extract_and_normalize): leftmost-longest
 * matches of the normalized == false tokens on the raw text, the normalizer on what is left,
 * then the normalized == true tokens (in their normalized form) on that; single_word, lstrip
 * and rstrip as the library applies them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/tokenizer_json_internal.h"

/* ---- ids and matchers ---- */

static const char *pattern_of(const pc_hft_added *a, size_t *len) {
    if (a->normalized && a->norm) {
        *len = a->norm_len;
        return a->norm;
    }
    *len = a->len;
    return a->content;
}

static int build_matcher(pc_hftok *t, bool normalized, uint32_t **list, uint32_t start[257]) {
    size_t count[256] = {0}, total = 0;
    for (size_t i = 0; i < t->nadded; i++) {
        size_t n;
        const char *p = pattern_of(&t->added[i], &n);
        if (t->added[i].normalized == normalized && n) {
            count[(unsigned char)p[0]]++;
            total++;
        }
    }
    *list = malloc((total ? total : 1) * sizeof **list);
    if (!*list) return -1;
    start[0] = 0;
    for (int b = 0; b < 256; b++) start[b + 1] = start[b] + (uint32_t)count[b];
    uint32_t fill[256];
    memcpy(fill, start, sizeof fill);
    for (size_t i = 0; i < t->nadded; i++) {
        size_t n;
        const char *p = pattern_of(&t->added[i], &n);
        if (t->added[i].normalized != normalized || !n) continue;
        unsigned b = (unsigned char)p[0];
        /* insertion by decreasing length (stable) */
        uint32_t k = fill[b]++;
        while (k > start[b]) {
            size_t m;
            pattern_of(&t->added[(*list)[k - 1]], &m);
            if (m >= n) break;
            (*list)[k] = (*list)[k - 1];
            k--;
        }
        (*list)[k] = (uint32_t)i;
    }
    return 0;
}

int pc_hft_added_index(const pc_hft_ctx *cx, pc_hftok *t) {
    /* the normalizer's form of the normalized tokens */
    for (size_t i = 0; i < t->nadded; i++) {
        pc_hft_added *a = &t->added[i];
        if (!a->normalized || !t->norm) continue;
        pc_hft_buf b = {0};
        char f[64];
        pc_hft_pathf(f, sizeof f, "added_tokens[%zu]", i);
        if (pc_hft_buf_put(&b, "", 0) ||
            pc_hft_norm_apply(t->norm, a->content, a->len, &b, cx->err, cx->errlen)) {
            pc_hft_buf_free(&b);
            return -1;
        }
        if (b.len != a->len || memcmp(b.p, a->content, a->len)) {
            a->norm = b.p;
            a->norm_len = b.len;
        } else {
            pc_hft_buf_free(&b);
        }
    }
    if (build_matcher(t, false, &t->match_raw, t->start_raw) ||
        build_matcher(t, true, &t->match_norm, t->start_norm))
        return pc_hft_oom(cx, "added_tokens");
    return 0;
}

/* ---- matching ---- */

static bool last_is_word(const char *s, size_t len) {
    if (!len) return false;
    uint32_t c;
    int k = pc_utf8_last_len(s, len);
    pc_utf8_next(s + len - (size_t)k, (size_t)k, &c);
    return pc_hftu_in(&pc_hftu_word, c);
}

static bool first_is_word(const char *s, size_t len) {
    if (!len) return false;
    uint32_t c;
    pc_utf8_next(s, len, &c);
    return pc_hftu_in(&pc_hftu_word, c);
}

/* find_matches: pieces of s into out, tokens with their ids */
static int split_added(const pc_hftok *t, bool normalized, const char *s, size_t len, bool at_start,
                       pc_hft_pieces *out) {
    const uint32_t *list = normalized ? t->match_norm : t->match_raw;
    const uint32_t *start = normalized ? t->start_norm : t->start_raw;
    size_t start_offset = 0, pos = 0;
#define PIECE(a, b, id)                                                                            \
    do {                                                                                           \
        if ((b) > (a) && pc_hft_pieces_add(out, s + (a), (b) - (a), id, at_start && (a) == 0))     \
            return -1;                                                                             \
    } while (0)
    while (pos < len) {
        size_t ms = 0, me = 0;
        const pc_hft_added *hit = NULL;
        for (size_t p = pos; p < len && !hit; p++) {
            unsigned b = (unsigned char)s[p];
            for (uint32_t k = start[b]; k < start[b + 1]; k++) {
                const pc_hft_added *a = &t->added[list[k]];
                size_t n;
                const char *pat = pattern_of(a, &n);
                if (n <= len - p && !memcmp(s + p, pat, n)) {
                    hit = a;
                    ms = p;
                    me = p + n;
                    break;
                }
            }
        }
        if (!hit) break;
        pos = me; /* the search goes on after the match, whatever is done with it */
        if (hit->single_word) {
            bool start_space = ms == 0 || !last_is_word(s, ms);
            bool stop_space = me == len || !first_is_word(s + me, len - me);
            if (!start_space || !stop_space) continue;
        }
        if (hit->lstrip) {
            size_t ns = ms;
            while (ns > 0) {
                uint32_t c;
                int k = pc_utf8_last_len(s, ns);
                pc_utf8_next(s + ns - (size_t)k, (size_t)k, &c);
                if (!pc_hftu_is_space(c)) break;
                ns -= (size_t)k;
            }
            ms = ns > start_offset ? ns : start_offset;
        }
        if (hit->rstrip) {
            while (me < len) {
                uint32_t c;
                int k = pc_utf8_next(s + me, len - me, &c);
                if (!pc_hftu_is_space(c)) break;
                me += (size_t)k;
            }
        }
        if (start_offset < ms) PIECE(start_offset, ms, -1);
        if (me > ms && pc_hft_pieces_add(out, s + ms, me - ms, hit->id, at_start && ms == 0))
            return -1;
        start_offset = me;
    }
    if (start_offset < len) PIECE(start_offset, len, -1);
#undef PIECE
    return 0;
}

int pc_hft_extract_added(const pc_hftok *t, const char *text, size_t len, pc_hft_pieces *out,
                         char *err, size_t errlen) {
    pc_hft_pieces raw = {0};
    pc_hft_buf norm = {0};
    int rc = -1;
    pc_hft_pieces_clear(out);
    if (split_added(t, false, text, len, true, &raw)) goto oom;
    for (size_t i = 0; i < raw.n; i++) {
        const pc_hft_piece *p = &raw.v[i];
        const char *s = pc_hft_piece_str(&raw, i);
        if (p->id >= 0) {
            if (pc_hft_pieces_add(out, s, p->len, p->id, p->at_start)) goto oom;
            continue;
        }
        norm.len = 0;
        if (pc_hft_buf_put(&norm, "", 0)) goto oom;
        if (pc_hft_norm_apply(t->norm, s, p->len, &norm, err, errlen)) goto done;
        if (split_added(t, true, norm.p, norm.len, p->at_start, out)) goto oom;
    }
    rc = 0;
    goto done;
oom:
    pc_errf(err, errlen, "added tokens: out of memory");
done:
    pc_hft_pieces_free(&raw);
    pc_hft_buf_free(&norm);
    return rc;
}
