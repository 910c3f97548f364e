/* tokenizer.json decoders: each rewrites the list of token strings (decode_chain); the
 * tokenizer joins the result. WordPiece, ByteLevel, Metaspace, Replace, Strip, Fuse,
 * ByteFallback, BPEDecoder, Sequence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/tokenizer_json_internal.h"

typedef enum {
    D_WORDPIECE,
    D_BYTE_LEVEL,
    D_METASPACE,
    D_REPLACE,
    D_STRIP,
    D_FUSE,
    D_BYTE_FALLBACK,
    D_BPE,
    D_SEQ,
} dec_kind;

struct pc_hft_dec {
    dec_kind kind;
    char *str; /* WordPiece prefix, BPEDecoder suffix, Replace content */
    size_t len;
    bool cleanup; /* WordPiece */
    bool prepend; /* Metaspace: prepend_scheme != never */
    uint32_t ch; /* Metaspace replacement, Strip content */
    size_t start, stop; /* Strip */
    pc_hft_pattern pat; /* Replace */
    pc_hft_dec **seq;
    size_t nseq;
};

void pc_hft_dec_free(pc_hft_dec *d) {
    if (!d) return;
    for (size_t i = 0; i < d->nseq; i++) pc_hft_dec_free(d->seq[i]);
    free(d->seq);
    free(d->str);
    pc_hft_pattern_free(&d->pat);
    free(d);
}

pc_hft_dec *pc_hft_dec_byte_level(void) {
    pc_hft_dec *d = calloc(1, sizeof *d);
    if (d) d->kind = D_BYTE_LEVEL;
    return d;
}

static int one_char(const pc_hft_ctx *cx, json_t *j, const char *path, const char *key,
                    uint32_t *c) {
    const char *s;
    size_t n;
    char f[256];
    if (pc_hft_get_str(cx, j, path, key, false, &s, &n)) return -1;
    pc_hft_pathf(f, sizeof f, "%s.%s", path, key);
    if (n == 0 || pc_utf8_valid_prefix(s, n) != n || pc_utf8_count(s, n) != 1)
        return pc_hft_fail(cx, f, "expected one character");
    pc_utf8_next(s, n, c);
    return 0;
}

static int own_str(const pc_hft_ctx *cx, json_t *j, const char *path, const char *key,
                   pc_hft_dec *d) {
    const char *s;
    size_t n;
    if (pc_hft_get_str(cx, j, path, key, false, &s, &n)) return -1;
    if (!(d->str = pc_hft_strndup(s, n))) return pc_hft_oom(cx, path);
    d->len = n;
    return 0;
}

int pc_hft_dec_parse(const pc_hft_ctx *cx, json_t *j, const char *path, pc_hft_dec **out) {
    const char *type;
    char f[256];
    int64_t x;
    *out = NULL;
    if (pc_hft_get_type(cx, j, path, &type)) return -1;
    pc_hft_dec *d = calloc(1, sizeof *d);
    if (!d) return pc_hft_oom(cx, path);
    if (!strcmp(type, "WordPiece")) {
        d->kind = D_WORDPIECE;
        if (own_str(cx, j, path, "prefix", d) ||
            pc_hft_get_bool(cx, j, path, "cleanup", false, false, &d->cleanup))
            goto fail;
    } else if (!strcmp(type, "ByteLevel")) {
        d->kind = D_BYTE_LEVEL;
    } else if (!strcmp(type, "Metaspace")) {
        d->kind = D_METASPACE;
        const char *scheme = "always";
        json_t *aps = json_object_get(j, "add_prefix_space");
        if (one_char(cx, j, path, "replacement", &d->ch)) goto fail;
        if (json_object_get(j, "prepend_scheme") &&
            pc_hft_get_str(cx, j, path, "prepend_scheme", false, &scheme, NULL))
            goto fail;
        d->prepend = strcmp(scheme, "never") != 0;
        if (aps && json_is_false(aps)) d->prepend = false;
    } else if (!strcmp(type, "Replace")) {
        d->kind = D_REPLACE;
        json_t *pj = pc_hft_get(cx, j, path, "pattern", false);
        pc_hft_pathf(f, sizeof f, "%s.pattern", path);
        if (!pj || pc_hft_pattern_parse(cx, pj, f, &d->pat) || own_str(cx, j, path, "content", d))
            goto fail;
    } else if (!strcmp(type, "Strip")) {
        d->kind = D_STRIP;
        if (one_char(cx, j, path, "content", &d->ch)) goto fail;
        if (pc_hft_get_int(cx, j, path, "start", 0, INT32_MAX, &x)) goto fail;
        d->start = (size_t)x;
        if (pc_hft_get_int(cx, j, path, "stop", 0, INT32_MAX, &x)) goto fail;
        d->stop = (size_t)x;
    } else if (!strcmp(type, "Fuse")) {
        d->kind = D_FUSE;
    } else if (!strcmp(type, "ByteFallback")) {
        d->kind = D_BYTE_FALLBACK;
    } else if (!strcmp(type, "BPEDecoder")) {
        d->kind = D_BPE;
        if (own_str(cx, j, path, "suffix", d)) goto fail;
    } else if (!strcmp(type, "Sequence")) {
        d->kind = D_SEQ;
        json_t *a = pc_hft_get(cx, j, path, "decoders", false);
        pc_hft_pathf(f, sizeof f, "%s.decoders", path);
        if (!a) goto fail;
        if (!json_is_array(a)) {
            pc_hft_fail(cx, f, "expected an array");
            goto fail;
        }
        if (!(d->seq = calloc(json_array_size(a) + 1, sizeof *d->seq))) {
            pc_hft_oom(cx, path);
            goto fail;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            char g[300];
            pc_hft_pathf(g, sizeof g, "%s[%zu]", f, i);
            if (pc_hft_dec_parse(cx, json_array_get(a, i), g, &d->seq[d->nseq])) goto fail;
            d->nseq++;
        }
    } else {
        pc_hft_pathf(f, sizeof f, "%s.type", path);
        pc_hft_fail(cx, f, "unsupported decoder type %s", type);
        goto fail;
    }
    *out = d;
    return 0;
fail:
    pc_hft_dec_free(d);
    return -1;
}

/* ---- apply ---- */

/* Rust's String::from_utf8_lossy: each maximal invalid subpart becomes U+FFFD */
static int lossy(pc_hft_buf *out, const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t ok = pc_utf8_valid_prefix(s + i, n - i);
        if (pc_hft_buf_put(out, s + i, ok)) return -1;
        i += ok;
        if (i >= n) break;
        /* the invalid subpart: the lead byte plus the continuation bytes it validly took */
        const unsigned char *p = (const unsigned char *)s + i;
        size_t bad = 1;
        unsigned c = p[0];
        size_t need = c >= 0xC2 && c <= 0xDF   ? 1
                      : c >= 0xE0 && c <= 0xEF ? 2
                      : c >= 0xF0 && c <= 0xF4 ? 3
                                               : 0;
        for (size_t k = 1; k <= need && i + k < n; k++) {
            unsigned lo = 0x80, hi = 0xBF;
            if (k == 1 && c == 0xE0) lo = 0xA0;
            if (k == 1 && c == 0xED) hi = 0x9F;
            if (k == 1 && c == 0xF0) lo = 0x90;
            if (k == 1 && c == 0xF4) hi = 0x8F;
            if (p[k] < lo || p[k] > hi) break;
            bad++;
        }
        if (pc_hft_buf_put(out, "\xEF\xBF\xBD", 3)) return -1;
        i += bad;
    }
    return 0;
}

static int wordpiece_cleanup(pc_hft_buf *b) {
    static const char *const from[] = {" .",  " ?",      " !",  " ,",   " ' ", " n't",
                                       " 'm", " do not", " 's", " 've", " 're"};
    static const char *const to[] = {".",  "?",      "!",  ",",   "'",  "n't",
                                     "'m", " don't", "'s", "'ve", "'re"};
    for (size_t r = 0; r < sizeof from / sizeof *from; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]);
        pc_hft_buf o = {0};
        if (pc_hft_buf_put(&o, "", 0)) return -1;
        for (size_t i = 0; i < b->len;) {
            if (b->len - i >= fl && !memcmp(b->p + i, from[r], fl)) {
                if (pc_hft_buf_put(&o, to[r], tl)) goto oom;
                i += fl;
            } else {
                if (pc_hft_buf_put(&o, b->p + i, 1)) goto oom;
                i++;
            }
        }
        pc_hft_buf_free(b);
        *b = o;
        continue;
    oom:
        pc_hft_buf_free(&o);
        return -1;
    }
    return 0;
}

/* one token through one decoder into `out` (the per-token decoders) */
static int per_token(const pc_hft_dec *d, size_t i, size_t ntok, const char *s, size_t n,
                     pc_hft_buf *o, char *err, size_t errlen) {
    switch (d->kind) {
    case D_WORDPIECE:
        if (i != 0) {
            if (n >= d->len && !memcmp(s, d->str, d->len)) {
                s += d->len;
                n -= d->len;
            } else if (pc_hft_buf_put(o, " ", 1)) {
                return -1;
            }
        }
        if (pc_hft_buf_put(o, s, n)) return -1;
        return d->cleanup ? wordpiece_cleanup(o) : 0;
    case D_METASPACE:
        for (size_t k = 0; k < n;) {
            uint32_t c;
            int q = pc_utf8_next(s + k, n - k, &c);
            if (c == d->ch) {
                if (!(i == 0 && d->prepend) && pc_hft_buf_put(o, " ", 1)) return -1;
            } else if (pc_hft_buf_put(o, s + k, (size_t)q)) {
                return -1;
            }
            k += (size_t)q;
        }
        return 0;
    case D_REPLACE: {
        pc_hft_spans sp = {0};
        if (pc_hft_pattern_find(&d->pat, s, n, &sp, err, errlen)) {
            free(sp.v);
            return -2;
        }
        int rc = 0;
        for (size_t k = 0; k < sp.n && !rc; k++)
            rc = sp.v[k].match ? pc_hft_buf_put(o, d->str, d->len)
                               : pc_hft_buf_put(o, s + sp.v[k].start, sp.v[k].end - sp.v[k].start);
        free(sp.v);
        return rc;
    }
    case D_STRIP: {
        size_t nch = pc_utf8_count(s, n), a = 0, b = n, cut_a = 0, cut_b = nch;
        /* leading: up to `start` characters equal to content */
        for (size_t k = 0; k < d->start && k < nch; k++) {
            uint32_t c;
            int q = pc_utf8_next(s + a, n - a, &c);
            if (c != d->ch) break;
            a += (size_t)q;
            cut_a = k + 1;
        }
        for (size_t k = 0; k < d->stop && k < nch; k++) {
            uint32_t c;
            int q = pc_utf8_last_len(s, b);
            pc_utf8_next(s + b - (size_t)q, (size_t)q, &c);
            if (c != d->ch) break;
            b -= (size_t)q;
            cut_b = nch - k - 1;
        }
        if (cut_a > cut_b || a > b) return 0; /* the library would panic here */
        return pc_hft_buf_put(o, s + a, b - a);
    }
    case D_BPE: {
        const char *rep = i + 1 == ntok ? "" : " ";
        for (size_t k = 0; k < n;) {
            if (d->len && n - k >= d->len && !memcmp(s + k, d->str, d->len)) {
                if (pc_hft_buf_put(o, rep, strlen(rep))) return -1;
                k += d->len;
            } else {
                if (pc_hft_buf_put(o, s + k, 1)) return -1;
                k++;
            }
        }
        return 0;
    }
    default: return pc_hft_buf_put(o, s, n);
    }
}

static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

int pc_hft_dec_apply(const pc_hft_dec *d, pc_hft_pieces *toks, char *err, size_t errlen) {
    pc_hft_pieces out = {0};
    pc_hft_buf o = {0}, bytes = {0};
    int rc = -1;
    if (d->kind == D_SEQ) {
        for (size_t k = 0; k < d->nseq; k++)
            if (pc_hft_dec_apply(d->seq[k], toks, err, errlen)) return -1;
        return 0;
    }
    switch (d->kind) {
    case D_BYTE_LEVEL: /* all tokens' bytes, then one lossy string */
        for (size_t i = 0; i < toks->n; i++) {
            const char *s = pc_hft_piece_str(toks, i);
            size_t n = toks->v[i].len, mark = bytes.len;
            bool all = true;
            for (size_t k = 0; k < n && all;) {
                uint32_t c;
                k += (size_t)pc_utf8_next(s + k, n - k, &c);
                int b = pc_hft_char_byte(c);
                unsigned char ub = (unsigned char)b;
                if (b < 0)
                    all = false;
                else if (pc_hft_buf_put(&bytes, &ub, 1))
                    goto oom;
            }
            if (!all) {
                bytes.len = mark;
                if (pc_hft_buf_put(&bytes, s, n)) goto oom;
            }
        }
        if (pc_hft_buf_put(&o, "", 0) || lossy(&o, bytes.p ? bytes.p : "", bytes.len) ||
            pc_hft_pieces_add(&out, o.p, o.len, -1, false))
            goto oom;
        break;
    case D_FUSE:
        for (size_t i = 0; i < toks->n; i++)
            if (pc_hft_buf_put(&o, pc_hft_piece_str(toks, i), toks->v[i].len)) goto oom;
        if (pc_hft_buf_put(&o, "", 0) || pc_hft_pieces_add(&out, o.p, o.len, -1, false)) goto oom;
        break;
    case D_BYTE_FALLBACK:
        for (size_t i = 0; i <= toks->n; i++) {
            int b = i < toks->n ? byte_token(pc_hft_piece_str(toks, i), toks->v[i].len) : -1;
            if (b >= 0) {
                unsigned char ub = (unsigned char)b;
                if (pc_hft_buf_put(&bytes, &ub, 1)) goto oom;
                continue;
            }
            if (bytes.len) { /* valid UTF-8 as one token, else one U+FFFD per byte */
                if (pc_utf8_valid_prefix(bytes.p, bytes.len) == bytes.len) {
                    if (pc_hft_pieces_add(&out, bytes.p, bytes.len, -1, false)) goto oom;
                } else {
                    for (size_t k = 0; k < bytes.len; k++)
                        if (pc_hft_pieces_add(&out, "\xEF\xBF\xBD", 3, -1, false)) goto oom;
                }
                bytes.len = 0;
            }
            if (i < toks->n &&
                pc_hft_pieces_add(&out, pc_hft_piece_str(toks, i), toks->v[i].len, -1, false))
                goto oom;
        }
        break;
    default:
        for (size_t i = 0; i < toks->n; i++) {
            o.len = 0;
            if (pc_hft_buf_put(&o, "", 0)) goto oom;
            int r = per_token(d, i, toks->n, pc_hft_piece_str(toks, i), toks->v[i].len, &o, err,
                              errlen);
            if (r == -2) goto done;
            if (r || pc_hft_pieces_add(&out, o.p, o.len, -1, false)) goto oom;
        }
        break;
    }
    pc_hft_pieces_free(toks);
    *toks = out;
    out = (pc_hft_pieces){0};
    rc = 0;
    goto done;
oom:
    pc_errf(err, errlen, "decoder: out of memory");
done:
    pc_hft_pieces_free(&out);
    pc_hft_buf_free(&o);
    pc_hft_buf_free(&bytes);
    return rc;
}
