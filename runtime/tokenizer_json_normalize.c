/* tokenizer.json normalizers: BertNormalizer, NFC/NFD/NFKC/NFKD, Lowercase, Strip,
 * StripAccents, Replace, Prepend, Sequence. Each maps a string to a string; offsets are not
 * tracked (only ids are produced). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/tokenizer_json_internal.h"

typedef enum {
    N_BERT,
    N_FORM, /* NFC, NFD, NFKC, NFKD */
    N_LOWER,
    N_STRIP,
    N_STRIP_ACCENTS,
    N_REPLACE,
    N_PREPEND,
    N_SEQ,
} norm_kind;

struct pc_hft_norm {
    norm_kind kind;
    bool clean_text, chinese, strip_accents, lowercase; /* Bert */
    bool left, right; /* Strip */
    pc_hftu_form form;
    pc_hft_pattern pat; /* Replace */
    char *content; /* Replace, Prepend */
    size_t content_len;
    pc_hft_norm **seq;
    size_t nseq;
};

void pc_hft_norm_free(pc_hft_norm *n) {
    if (!n) return;
    for (size_t i = 0; i < n->nseq; i++) pc_hft_norm_free(n->seq[i]);
    free(n->seq);
    pc_hft_pattern_free(&n->pat);
    free(n->content);
    free(n);
}

pc_hft_norm *pc_hft_norm_nfc(void) {
    pc_hft_norm *n = calloc(1, sizeof *n);
    if (n) {
        n->kind = N_FORM;
        n->form = PC_HFTU_NFC;
    }
    return n;
}

int pc_hft_norm_parse(const pc_hft_ctx *cx, json_t *j, const char *path, pc_hft_norm **out) {
    const char *type;
    char f[256];
    *out = NULL;
    if (pc_hft_get_type(cx, j, path, &type)) return -1;
    pc_hft_norm *n = calloc(1, sizeof *n);
    if (!n) return pc_hft_oom(cx, path);
    if (!strcmp(type, "BertNormalizer")) {
        n->kind = N_BERT;
        json_t *sa;
        if (pc_hft_get_bool(cx, j, path, "clean_text", false, false, &n->clean_text) ||
            pc_hft_get_bool(cx, j, path, "handle_chinese_chars", false, false, &n->chinese) ||
            pc_hft_get_bool(cx, j, path, "lowercase", false, false, &n->lowercase))
            goto fail;
        /* strip_accents: null (or absent) follows lowercase */
        sa = json_object_get(j, "strip_accents");
        if (!sa || json_is_null(sa))
            n->strip_accents = n->lowercase;
        else if (pc_hft_get_bool(cx, j, path, "strip_accents", false, false, &n->strip_accents))
            goto fail;
    } else if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") ||
               !strcmp(type, "NFKD")) {
        n->kind = N_FORM;
        n->form = !strcmp(type, "NFC")    ? PC_HFTU_NFC
                  : !strcmp(type, "NFD")  ? PC_HFTU_NFD
                  : !strcmp(type, "NFKC") ? PC_HFTU_NFKC
                                          : PC_HFTU_NFKD;
    } else if (!strcmp(type, "Lowercase")) {
        n->kind = N_LOWER;
    } else if (!strcmp(type, "StripAccents")) {
        n->kind = N_STRIP_ACCENTS;
    } else if (!strcmp(type, "Strip")) {
        n->kind = N_STRIP;
        if (pc_hft_get_bool(cx, j, path, "strip_left", false, false, &n->left) ||
            pc_hft_get_bool(cx, j, path, "strip_right", false, false, &n->right))
            goto fail;
    } else if (!strcmp(type, "Replace")) {
        n->kind = N_REPLACE;
        const char *c;
        size_t cl;
        json_t *pj = pc_hft_get(cx, j, path, "pattern", false);
        pc_hft_pathf(f, sizeof f, "%s.pattern", path);
        if (!pj || pc_hft_pattern_parse(cx, pj, f, &n->pat) ||
            pc_hft_get_str(cx, j, path, "content", false, &c, &cl))
            goto fail;
        if (!(n->content = pc_hft_strndup(c, cl))) goto oom;
        n->content_len = cl;
    } else if (!strcmp(type, "Prepend")) {
        n->kind = N_PREPEND;
        const char *c;
        size_t cl;
        if (pc_hft_get_str(cx, j, path, "prepend", false, &c, &cl)) goto fail;
        if (!(n->content = pc_hft_strndup(c, cl))) goto oom;
        n->content_len = cl;
    } else if (!strcmp(type, "Sequence")) {
        n->kind = N_SEQ;
        json_t *a = pc_hft_get(cx, j, path, "normalizers", false);
        pc_hft_pathf(f, sizeof f, "%s.normalizers", path);
        if (!a) goto fail;
        if (!json_is_array(a)) {
            pc_hft_fail(cx, f, "expected an array");
            goto fail;
        }
        n->seq = calloc(json_array_size(a) + 1, sizeof *n->seq);
        if (!n->seq) goto oom;
        for (size_t i = 0; i < json_array_size(a); i++) {
            char g[256];
            pc_hft_pathf(g, sizeof g, "%s[%zu]", f, i);
            if (pc_hft_norm_parse(cx, json_array_get(a, i), g, &n->seq[n->nseq])) goto fail;
            n->nseq++;
        }
    } else {
        pc_hft_pathf(f, sizeof f, "%s.type", path);
        pc_hft_fail(cx, f, "unsupported normalizer type %s", type);
        goto fail;
    }
    *out = n;
    return 0;
oom:
    pc_hft_oom(cx, path);
fail:
    pc_hft_norm_free(n);
    return -1;
}

/* ---- apply ---- */

static int bert(const pc_hft_norm *n, const char *s, size_t len, pc_hft_buf *out, char *err,
                size_t errlen) {
    pc_hft_buf a = {0}, d = {0};
    int rc = -1;
    /* clean_text and chinese chars, one pass */
    for (size_t i = 0; i < len;) {
        uint32_t c;
        i += (size_t)pc_utf8_next(s + i, len - i, &c);
        if (n->clean_text) {
            if (c == 0 || c == 0xFFFD || pc_hftu_in(&pc_hftu_bert_control, c)) continue;
            if (pc_hftu_is_space(c)) c = ' ';
        }
        if (n->chinese && pc_hftu_is_chinese(c)) {
            if (pc_hft_buf_put(&a, " ", 1) || pc_hft_buf_putc(&a, c) || pc_hft_buf_put(&a, " ", 1))
                goto oom;
        } else if (pc_hft_buf_putc(&a, c)) {
            goto oom;
        }
    }
    const char *p = a.p ? a.p : "";
    size_t plen = a.len;
    if (n->strip_accents) {
        pc_hft_buf f = {0};
        if (pc_hftu_normalize(PC_HFTU_NFD, p, plen, &d, err, errlen)) goto done;
        for (size_t i = 0; i < d.len;) {
            uint32_t c;
            i += (size_t)pc_utf8_next(d.p + i, d.len - i, &c);
            if (!pc_hftu_in(&pc_hftu_mark_nonspacing, c) && pc_hft_buf_putc(&f, c)) {
                pc_hft_buf_free(&f);
                goto oom;
            }
        }
        pc_hft_buf_free(&d);
        d = f;
        p = d.p ? d.p : "";
        plen = d.len;
    }
    for (size_t i = 0; i < plen;) {
        uint32_t c, l[2];
        i += (size_t)pc_utf8_next(p + i, plen - i, &c);
        int k = n->lowercase ? pc_hftu_lower_cp(c, l) : (l[0] = c, 1);
        for (int q = 0; q < k; q++)
            if (pc_hft_buf_putc(out, l[q])) goto oom;
    }
    rc = 0;
    goto done;
oom:
    pc_errf(err, errlen, "normalizer: out of memory");
done:
    pc_hft_buf_free(&a);
    pc_hft_buf_free(&d);
    return rc;
}

static int apply1(const pc_hft_norm *n, const char *s, size_t len, pc_hft_buf *out, char *err,
                  size_t errlen) {
    switch (n->kind) {
    case N_BERT: return bert(n, s, len, out, err, errlen);
    case N_FORM: return pc_hftu_normalize(n->form, s, len, out, err, errlen);
    case N_LOWER:
        for (size_t i = 0; i < len;) {
            uint32_t c, l[2];
            i += (size_t)pc_utf8_next(s + i, len - i, &c);
            int k = pc_hftu_lower_cp(c, l);
            for (int q = 0; q < k; q++)
                if (pc_hft_buf_putc(out, l[q])) goto oom;
        }
        return 0;
    case N_STRIP_ACCENTS:
        for (size_t i = 0; i < len;) {
            uint32_t c;
            int k = pc_utf8_next(s + i, len - i, &c);
            if (!pc_hftu_in(&pc_hftu_combining_mark, c) && pc_hft_buf_put(out, s + i, (size_t)k))
                goto oom;
            i += (size_t)k;
        }
        return 0;
    case N_STRIP: {
        size_t a = 0, b = len;
        while (n->left && a < b) {
            uint32_t c;
            int k = pc_utf8_next(s + a, b - a, &c);
            if (!pc_hftu_is_space(c)) break;
            a += (size_t)k;
        }
        while (n->right && b > a) {
            uint32_t c;
            int k = pc_utf8_last_len(s + a, b - a);
            pc_utf8_next(s + b - (size_t)k, (size_t)k, &c);
            if (!pc_hftu_is_space(c)) break;
            b -= (size_t)k;
        }
        return pc_hft_buf_put(out, s + a, b - a) ? pc_errf(err, errlen, "out of memory") : 0;
    }
    case N_REPLACE: {
        pc_hft_spans sp = {0};
        if (pc_hft_pattern_find(&n->pat, s, len, &sp, err, errlen)) {
            free(sp.v);
            return -1;
        }
        int rc = 0;
        for (size_t i = 0; i < sp.n && !rc; i++) {
            const pc_hft_span *m = &sp.v[i];
            rc = m->match ? pc_hft_buf_put(out, n->content, n->content_len)
                          : pc_hft_buf_put(out, s + m->start, m->end - m->start);
        }
        free(sp.v);
        return rc ? pc_errf(err, errlen, "out of memory") : 0;
    }
    case N_PREPEND:
        if (len && pc_hft_buf_put(out, n->content, n->content_len)) goto oom;
        return pc_hft_buf_put(out, s, len) ? pc_errf(err, errlen, "out of memory") : 0;
    case N_SEQ: {
        pc_hft_buf cur = {0}, next = {0};
        if (pc_hft_buf_put(&cur, s, len)) goto oom;
        for (size_t i = 0; i < n->nseq; i++) {
            next.len = 0;
            int rc = pc_hft_buf_put(&next, "", 0)
                         ? pc_errf(err, errlen, "out of memory")
                         : apply1(n->seq[i], cur.p, cur.len, &next, err, errlen);
            if (rc) {
                pc_hft_buf_free(&cur);
                pc_hft_buf_free(&next);
                return -1;
            }
            pc_hft_buf t = cur;
            cur = next;
            next = t;
        }
        int rc = pc_hft_buf_put(out, cur.p, cur.len);
        pc_hft_buf_free(&cur);
        pc_hft_buf_free(&next);
        return rc ? pc_errf(err, errlen, "out of memory") : 0;
    }
    }
    return pc_errf(err, errlen, "normalizer: bad kind");
oom:
    return pc_errf(err, errlen, "normalizer: out of memory");
}

int pc_hft_norm_apply(const pc_hft_norm *n, const char *s, size_t len, pc_hft_buf *out, char *err,
                      size_t errlen) {
    if (!n) return pc_hft_buf_put(out, s, len) ? pc_errf(err, errlen, "out of memory") : 0;
    return apply1(n, s, len, out, err, errlen);
}
