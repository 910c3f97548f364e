/* tokenizer.json pre-tokenizers: BertPreTokenizer, ByteLevel, Split, Digits, Whitespace,
 * WhitespaceSplit, Punctuation, CharDelimiterSplit, Metaspace, Sequence.
 *
 * Each splits every piece that is not a token yet; the split behaviours (Removed, Isolated,
 * MergedWithPrevious, MergedWithNext, Contiguous) and the dropping of empty pieces are the
 * library's (NormalizedString::split, PreTokenizedString::split). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/tokenizer_json_internal.h"

/* the GPT-2 regex of ByteLevel (use_regex), in the library's Oniguruma syntax */
static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS } behavior;

typedef enum {
    P_BERT,
    P_BYTE_LEVEL,
    P_SPLIT,
    P_DIGITS,
    P_WHITESPACE,
    P_WHITESPACE_SPLIT,
    P_PUNCT,
    P_CHAR_DELIM,
    P_METASPACE,
    P_SEQ,
} pretok_kind;

typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;

struct pc_hft_pretok {
    pretok_kind kind;
    behavior behavior;
    bool invert, add_prefix_space, use_regex, individual, split;
    uint32_t ch; /* CharDelimiterSplit delimiter, Metaspace replacement */
    prepend_scheme prepend;
    pc_hft_pattern pat; /* Split; ByteLevel's GPT-2 regex */
    pc_hft_pretok **seq;
    size_t nseq;
};

/* ---- the byte-level alphabet (GPT-2's bytes_to_unicode) ---- */

uint32_t pc_hft_byte_char(unsigned char b) {
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 289u + (b - 0x7Fu);
    if (b == 0xAD) return 323;
    return b;
}

int pc_hft_char_byte(uint32_t c) {
    if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))
        return (int)c;
    if (c >= 256 && c <= 288) return (int)(c - 256);
    if (c >= 289 && c <= 322) return (int)(c - 289 + 0x7F);
    if (c == 323) return 0xAD;
    return -1;
}

void pc_hft_pretok_free(pc_hft_pretok *pt) {
    if (!pt) return;
    for (size_t i = 0; i < pt->nseq; i++) pc_hft_pretok_free(pt->seq[i]);
    free(pt->seq);
    pc_hft_pattern_free(&pt->pat);
    free(pt);
}

/* ---- constructors ---- */

pc_hft_pretok *pc_hft_pretok_byte_level(bool add_prefix_space, bool use_regex) {
    pc_hft_pretok *pt = calloc(1, sizeof *pt);
    if (!pt) return NULL;
    pt->kind = P_BYTE_LEVEL;
    pt->add_prefix_space = add_prefix_space;
    pt->use_regex = use_regex;
    if (use_regex) {
        char e[64];
        pc_hft_ctx cx = {"(built in)", e, sizeof e};
        if (pc_hft_pattern_regex(&cx, "ByteLevel", GPT2_RE, strlen(GPT2_RE), &pt->pat)) {
            free(pt);
            return NULL;
        }
    }
    return pt;
}

pc_hft_pretok *pc_hft_pretok_split_regex(const pc_hft_ctx *cx, const char *regex) {
    pc_hft_pretok *pt = calloc(1, sizeof *pt);
    if (!pt) {
        pc_hft_oom(cx, "regex");
        return NULL;
    }
    pt->kind = P_SPLIT;
    pt->behavior = B_ISOLATED;
    if (pc_hft_pattern_regex(cx, "regex", regex, strlen(regex), &pt->pat)) {
        free(pt);
        return NULL;
    }
    return pt;
}

pc_hft_pretok *pc_hft_pretok_digits(bool individual) {
    pc_hft_pretok *pt = calloc(1, sizeof *pt);
    if (pt) {
        pt->kind = P_DIGITS;
        pt->individual = individual;
    }
    return pt;
}

pc_hft_pretok *pc_hft_pretok_sequence(pc_hft_pretok **items, size_t n) {
    pc_hft_pretok *pt = calloc(1, sizeof *pt);
    pc_hft_pretok **seq = calloc(n ? n : 1, sizeof *seq);
    if (!pt || !seq) {
        free(pt);
        free(seq);
        for (size_t i = 0; i < n; i++) pc_hft_pretok_free(items[i]);
        return NULL;
    }
    memcpy(seq, items, n * sizeof *seq);
    pt->kind = P_SEQ;
    pt->seq = seq;
    pt->nseq = n;
    return pt;
}

/* ---- parse ---- */

static int parse_behavior(const pc_hft_ctx *cx, json_t *j, const char *path, bool optional,
                          behavior dflt, behavior *out) {
    const char *s;
    char f[256];
    if (optional && !json_object_get(j, "behavior")) {
        *out = dflt;
        return 0;
    }
    if (pc_hft_get_str(cx, j, path, "behavior", false, &s, NULL)) return -1;
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = (behavior)i;
            return 0;
        }
    pc_hft_pathf(f, sizeof f, "%s.behavior", path);
    return pc_hft_fail(cx, f, "unknown split behavior %s", s);
}

/* a field holding exactly one character */
static int get_char(const pc_hft_ctx *cx, json_t *j, const char *path, const char *key,
                    uint32_t *out) {
    const char *s;
    size_t n;
    char f[256];
    if (pc_hft_get_str(cx, j, path, key, false, &s, &n)) return -1;
    pc_hft_pathf(f, sizeof f, "%s.%s", path, key);
    if (n == 0 || pc_utf8_valid_prefix(s, n) != n || pc_utf8_count(s, n) != 1)
        return pc_hft_fail(cx, f, "expected one character");
    pc_utf8_next(s, n, out);
    return 0;
}

int pc_hft_pretok_parse(const pc_hft_ctx *cx, json_t *j, const char *path, pc_hft_pretok **out) {
    const char *type;
    char f[256];
    *out = NULL;
    if (pc_hft_get_type(cx, j, path, &type)) return -1;
    pc_hft_pretok *pt = calloc(1, sizeof *pt);
    if (!pt) return pc_hft_oom(cx, path);
    if (!strcmp(type, "BertPreTokenizer")) {
        pt->kind = P_BERT;
    } else if (!strcmp(type, "ByteLevel")) {
        pt->kind = P_BYTE_LEVEL;
        bool trim;
        if (pc_hft_get_bool(cx, j, path, "add_prefix_space", false, false, &pt->add_prefix_space) ||
            pc_hft_get_bool(cx, j, path, "trim_offsets", false, false, &trim) ||
            pc_hft_get_bool(cx, j, path, "use_regex", true, true, &pt->use_regex))
            goto fail;
        if (pt->use_regex && pc_hft_pattern_regex(cx, path, GPT2_RE, strlen(GPT2_RE), &pt->pat))
            goto fail;
    } else if (!strcmp(type, "Split")) {
        pt->kind = P_SPLIT;
        json_t *pj = pc_hft_get(cx, j, path, "pattern", false);
        pc_hft_pathf(f, sizeof f, "%s.pattern", path);
        if (!pj || pc_hft_pattern_parse(cx, pj, f, &pt->pat) ||
            parse_behavior(cx, j, path, false, B_ISOLATED, &pt->behavior) ||
            pc_hft_get_bool(cx, j, path, "invert", false, false, &pt->invert))
            goto fail;
    } else if (!strcmp(type, "Digits")) {
        pt->kind = P_DIGITS;
        if (pc_hft_get_bool(cx, j, path, "individual_digits", false, false, &pt->individual))
            goto fail;
    } else if (!strcmp(type, "Whitespace")) {
        pt->kind = P_WHITESPACE;
    } else if (!strcmp(type, "WhitespaceSplit")) {
        pt->kind = P_WHITESPACE_SPLIT;
    } else if (!strcmp(type, "Punctuation")) {
        pt->kind = P_PUNCT;
        if (parse_behavior(cx, j, path, true, B_ISOLATED, &pt->behavior)) goto fail;
    } else if (!strcmp(type, "CharDelimiterSplit")) {
        pt->kind = P_CHAR_DELIM;
        if (get_char(cx, j, path, "delimiter", &pt->ch)) goto fail;
    } else if (!strcmp(type, "Metaspace")) {
        pt->kind = P_METASPACE;
        const char *scheme;
        json_t *aps = json_object_get(j, "add_prefix_space"), *sp = json_object_get(j, "split");
        if (get_char(cx, j, path, "replacement", &pt->ch)) goto fail;
        pt->prepend = PREPEND_ALWAYS;
        if (json_object_get(j, "prepend_scheme")) {
            if (pc_hft_get_str(cx, j, path, "prepend_scheme", false, &scheme, NULL)) goto fail;
            pc_hft_pathf(f, sizeof f, "%s.prepend_scheme", path);
            if (!strcmp(scheme, "always"))
                pt->prepend = PREPEND_ALWAYS;
            else if (!strcmp(scheme, "first"))
                pt->prepend = PREPEND_FIRST;
            else if (!strcmp(scheme, "never"))
                pt->prepend = PREPEND_NEVER;
            else {
                pc_hft_fail(cx, f, "unknown prepend scheme %s", scheme);
                goto fail;
            }
        }
        if (aps && !json_is_null(aps)) { /* legacy: add_prefix_space false means never */
            bool a;
            if (pc_hft_get_bool(cx, j, path, "add_prefix_space", false, false, &a)) goto fail;
            if (!a) {
                if (pt->prepend != PREPEND_NEVER && json_object_get(j, "prepend_scheme")) {
                    pc_hft_pathf(f, sizeof f, "%s.add_prefix_space", path);
                    pc_hft_fail(cx, f, "add_prefix_space does not match declared prepend_scheme");
                    goto fail;
                }
                pt->prepend = PREPEND_NEVER;
            }
        }
        pt->split = true;
        if (sp && !json_is_null(sp) &&
            pc_hft_get_bool(cx, j, path, "split", false, false, &pt->split))
            goto fail;
    } else if (!strcmp(type, "Sequence")) {
        pt->kind = P_SEQ;
        json_t *a = pc_hft_get(cx, j, path, "pretokenizers", false);
        pc_hft_pathf(f, sizeof f, "%s.pretokenizers", path);
        if (!a) goto fail;
        if (!json_is_array(a)) {
            pc_hft_fail(cx, f, "expected an array");
            goto fail;
        }
        pt->seq = calloc(json_array_size(a) + 1, sizeof *pt->seq);
        if (!pt->seq) {
            pc_hft_oom(cx, path);
            goto fail;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            char g[256];
            pc_hft_pathf(g, sizeof g, "%s[%zu]", f, i);
            if (pc_hft_pretok_parse(cx, json_array_get(a, i), g, &pt->seq[pt->nseq])) goto fail;
            pt->nseq++;
        }
    } else {
        pc_hft_pathf(f, sizeof f, "%s.type", path);
        pc_hft_fail(cx, f, "unsupported pre-tokenizer type %s", type);
        goto fail;
    }
    *out = pt;
    return 0;
fail:
    pc_hft_pretok_free(pt);
    return -1;
}

/* ---- splitting ---- */

/* emits the pieces of s for the spans under a behaviour (NormalizedString::split) */
static int emit(const char *s, const pc_hft_spans *sp, behavior b, bool invert, bool at_start,
                pc_hft_pieces *out) {
    size_t n = sp->n;
    /* merged spans: (start, end) after the behaviour, kept in place in a small scratch */
    size_t cs = 0, ce = 0;
    bool have = false, prev_match = false;
#define FLUSH()                                                                                    \
    do {                                                                                           \
        if (have && ce > cs && pc_hft_pieces_add(out, s + cs, ce - cs, -1, at_start && cs == 0))   \
            return -1;                                                                             \
    } while (0)
    if (b == B_MERGED_NEXT) { /* folds from the right */
        size_t k = out->n;
        for (size_t r = n; r-- > 0;) {
            bool m = sp->v[r].match != invert;
            if (m && !prev_match && have)
                cs = sp->v[r].start;
            else {
                FLUSH();
                cs = sp->v[r].start;
                ce = sp->v[r].end;
                have = true;
            }
            prev_match = m;
        }
        FLUSH();
        /* reverse what was added */
        for (size_t i = k, j = out->n; i + 1 < j; i++, j--) {
            pc_hft_piece t = out->v[i];
            out->v[i] = out->v[j - 1];
            out->v[j - 1] = t;
        }
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        bool m = sp->v[i].match != invert;
        size_t st = sp->v[i].start, en = sp->v[i].end;
        switch (b) {
        case B_REMOVED:
            if (!m && en > st && pc_hft_pieces_add(out, s + st, en - st, -1, at_start && st == 0))
                return -1;
            continue;
        case B_ISOLATED:
            if (en > st && pc_hft_pieces_add(out, s + st, en - st, -1, at_start && st == 0))
                return -1;
            continue;
        case B_MERGED_PREV:
            if (m && !prev_match && have)
                ce = en;
            else {
                FLUSH();
                cs = st;
                ce = en;
                have = true;
            }
            break;
        case B_CONTIGUOUS:
            if (m == prev_match && have)
                ce = en;
            else {
                FLUSH();
                cs = st;
                ce = en;
                have = true;
            }
            break;
        default: break;
        }
        prev_match = m;
    }
    FLUSH();
#undef FLUSH
    return 0;
}

typedef bool (*char_pred)(uint32_t c, const pc_hft_pretok *pt);

static bool is_space_p(uint32_t c, const pc_hft_pretok *pt) {
    (void)pt;
    return pc_hftu_is_space(c);
}
static bool is_punct_p(uint32_t c, const pc_hft_pretok *pt) {
    (void)pt;
    return pc_hftu_in(&pc_hftu_bert_punct, c);
}
static bool is_numeric_p(uint32_t c, const pc_hft_pretok *pt) {
    (void)pt;
    return pc_hftu_in(&pc_hftu_numeric, c);
}
static bool is_char_p(uint32_t c, const pc_hft_pretok *pt) { return c == pt->ch; }

/* the library's find_matches for a char predicate: each matching char is a match */
static int pred_spans(const char *s, size_t len, char_pred f, const pc_hft_pretok *pt,
                      pc_hft_spans *sp) {
    sp->n = 0;
    if (len == 0) return pc_hft_spans_push(sp, 0, 0, false);
    size_t last = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t k = (size_t)pc_utf8_next(s + i, len - i, &c);
        if (f(c, pt)) {
            if (last < i && pc_hft_spans_push(sp, last, i, false)) return -1;
            if (pc_hft_spans_push(sp, i, i + k, true)) return -1;
            last = i + k;
        }
        i += k;
    }
    if (last < len && pc_hft_spans_push(sp, last, len, false)) return -1;
    return 0;
}

/* the regex crate's \w+|[^\w\s]+ (Whitespace), as spans */
static int whitespace_spans(const char *s, size_t len, pc_hft_spans *sp) {
    sp->n = 0;
    if (len == 0) return pc_hft_spans_push(sp, 0, 0, false);
    size_t prev = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t k = (size_t)pc_utf8_next(s + i, len - i, &c);
        int cls = pc_hftu_in(&pc_hftu_word, c) ? 1 : pc_hftu_is_space(c) ? 0 : 2;
        if (cls == 0) {
            i += k;
            continue;
        }
        size_t st = i;
        i += k;
        while (i < len) {
            k = (size_t)pc_utf8_next(s + i, len - i, &c);
            int c2 = pc_hftu_in(&pc_hftu_word, c) ? 1 : pc_hftu_is_space(c) ? 0 : 2;
            if (c2 != cls) break;
            i += k;
        }
        if (prev != st && pc_hft_spans_push(sp, prev, st, false)) return -1;
        if (pc_hft_spans_push(sp, st, i, true)) return -1;
        prev = i;
    }
    if (prev != len && pc_hft_spans_push(sp, prev, len, false)) return -1;
    return 0;
}

/* one piece through one (non-sequence) pre-tokenizer */
static int apply_piece(const pc_hft_pretok *pt, const char *s, size_t len, bool at_start,
                       pc_hft_pieces *out, pc_hft_buf *tmp, pc_hft_spans *sp, pc_hft_pieces *aux,
                       char *err, size_t errlen) {
    switch (pt->kind) {
    case P_BERT: {
        /* whitespace removed, then punctuation isolated */
        pc_hft_pieces_clear(aux);
        if (pred_spans(s, len, is_space_p, pt, sp) || emit(s, sp, B_REMOVED, false, at_start, aux))
            goto oom;
        for (size_t i = 0; i < aux->n; i++) {
            const char *q = pc_hft_piece_str(aux, i);
            if (pred_spans(q, aux->v[i].len, is_punct_p, pt, sp) ||
                emit(q, sp, B_ISOLATED, false, aux->v[i].at_start, out))
                goto oom;
        }
        return 0;
    }
    case P_WHITESPACE_SPLIT:
        if (pred_spans(s, len, is_space_p, pt, sp) || emit(s, sp, B_REMOVED, false, at_start, out))
            goto oom;
        return 0;
    case P_PUNCT:
        if (pred_spans(s, len, is_punct_p, pt, sp) ||
            emit(s, sp, pt->behavior, false, at_start, out))
            goto oom;
        return 0;
    case P_DIGITS:
        if (pred_spans(s, len, is_numeric_p, pt, sp) ||
            emit(s, sp, pt->individual ? B_ISOLATED : B_CONTIGUOUS, false, at_start, out))
            goto oom;
        return 0;
    case P_CHAR_DELIM:
        if (pred_spans(s, len, is_char_p, pt, sp) || emit(s, sp, B_REMOVED, false, at_start, out))
            goto oom;
        return 0;
    case P_WHITESPACE:
        if (whitespace_spans(s, len, sp) || emit(s, sp, B_REMOVED, true, at_start, out)) goto oom;
        return 0;
    case P_SPLIT:
        if (pc_hft_pattern_find(&pt->pat, s, len, sp, err, errlen)) return -1;
        if (emit(s, sp, pt->behavior, pt->invert, at_start, out)) goto oom;
        return 0;
    case P_BYTE_LEVEL: {
        tmp->len = 0;
        if ((pt->add_prefix_space && (len == 0 || s[0] != ' ') && pc_hft_buf_put(tmp, " ", 1)) ||
            pc_hft_buf_put(tmp, s, len))
            goto oom;
        pc_hft_pieces_clear(aux);
        if (pt->use_regex) {
            if (pc_hft_pattern_find(&pt->pat, tmp->p, tmp->len, sp, err, errlen)) return -1;
            if (emit(tmp->p, sp, B_ISOLATED, false, at_start, aux)) goto oom;
        } else if (tmp->len && pc_hft_pieces_add(aux, tmp->p, tmp->len, -1, at_start)) {
            goto oom;
        }
        /* bytes -> characters of the alphabet */
        for (size_t i = 0; i < aux->n; i++) {
            const unsigned char *q = (const unsigned char *)pc_hft_piece_str(aux, i);
            tmp->len = 0;
            for (size_t k = 0; k < aux->v[i].len; k++)
                if (pc_hft_buf_putc(tmp, pc_hft_byte_char(q[k]))) goto oom;
            if (pc_hft_pieces_add(out, tmp->p, tmp->len, -1, aux->v[i].at_start)) goto oom;
        }
        return 0;
    }
    case P_METASPACE: {
        char rep[4];
        size_t rl = (size_t)pc_utf8_put(pt->ch, rep);
        tmp->len = 0;
        if (pc_hft_buf_put(tmp, "", 0)) goto oom;
        bool starts = len >= rl && !memcmp(s, rep, rl);
        /* spaces replaced first: a leading space becomes the replacement */
        if (len && s[0] == ' ') starts = true;
        if ((pt->prepend == PREPEND_ALWAYS && !starts) ||
            (pt->prepend == PREPEND_FIRST && !starts && at_start))
            if (pc_hft_buf_put(tmp, rep, rl)) goto oom;
        for (size_t i = 0; i < len; i++)
            if (s[i] == ' ' ? pc_hft_buf_put(tmp, rep, rl) : pc_hft_buf_put(tmp, s + i, 1))
                goto oom;
        if (!pt->split) {
            if (tmp->len && pc_hft_pieces_add(out, tmp->p, tmp->len, -1, at_start)) goto oom;
            return 0;
        }
        if (pred_spans(tmp->p, tmp->len, is_char_p, pt, sp) ||
            emit(tmp->p, sp, B_MERGED_NEXT, false, at_start, out))
            goto oom;
        return 0;
    }
    case P_SEQ: break;
    }
    return pc_errf(err, errlen, "pre-tokenizer: bad kind");
oom:
    return pc_errf(err, errlen, "pre-tokenizer: out of memory");
}

int pc_hft_pretok_apply(const pc_hft_pretok *pt, const pc_hft_pieces *in, pc_hft_pieces *out,
                        char *err, size_t errlen) {
    pc_hft_pieces_clear(out);
    pc_hft_buf tmp = {0};
    pc_hft_spans sp = {0};
    pc_hft_pieces aux = {0}, a = {0}, b = {0};
    int rc = -1;
    if (!pt || pt->kind != P_SEQ) {
        for (size_t i = 0; i < in->n; i++) {
            const pc_hft_piece *p = &in->v[i];
            const char *s = pc_hft_piece_str(in, i);
            if (p->id >= 0 || !pt) {
                if (pc_hft_pieces_add(out, s, p->len, p->id, p->at_start)) goto oom;
            } else if (apply_piece(pt, s, p->len, p->at_start, out, &tmp, &sp, &aux, err, errlen)) {
                goto done;
            }
        }
        rc = 0;
        goto done;
    }
    /* a sequence: in -> a -> b -> ... -> out */
    const pc_hft_pieces *cur = in;
    for (size_t k = 0; k < pt->nseq; k++) {
        pc_hft_pieces *dst = k + 1 == pt->nseq ? out : (cur == &a ? &b : &a);
        if (pc_hft_pretok_apply(pt->seq[k], cur, dst, err, errlen)) goto done;
        cur = dst;
    }
    if (pt->nseq == 0)
        for (size_t i = 0; i < in->n; i++)
            if (pc_hft_pieces_add(out, pc_hft_piece_str(in, i), in->v[i].len, in->v[i].id,
                                  in->v[i].at_start))
                goto oom;
    rc = 0;
    goto done;
oom:
    pc_errf(err, errlen, "pre-tokenizer: out of memory");
done:
    pc_hft_buf_free(&tmp);
    free(sp.v);
    pc_hft_pieces_free(&aux);
    pc_hft_pieces_free(&a);
    pc_hft_pieces_free(&b);
    return rc;
}
