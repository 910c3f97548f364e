/* UTF-8, character classes, lowercase and ICU normalization for the tokenizer.json reader. */
#include "runtime/tokenizer_json_unicode.h"

#include <stdlib.h>
#include <string.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "runtime/fileio.h"

bool pc_hftu_in(const pc_hftu_set *s, uint32_t c) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < s->r[mid][0])
            hi = mid;
        else if (c > s->r[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

bool pc_hftu_is_space(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85) return false;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool pc_hftu_is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

int pc_hftu_lower_cp(uint32_t c, uint32_t out[2]) {
    if (c < 0x80) {
        out[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        return 1;
    }
    if (c == 0x130) { /* the one multi-character mapping (SpecialCasing) */
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    const pc_hftu_runs *t = &pc_hftu_lower;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const int32_t *r = t->r[mid];
        if ((int64_t)c < r[0])
            hi = mid;
        else if ((int64_t)c > r[1])
            lo = mid + 1;
        else {
            out[0] = ((int64_t)c - r[0]) % r[2] == 0 ? (uint32_t)((int64_t)c + r[3]) : c;
            return 1;
        }
    }
    out[0] = c;
    return 1;
}

/* ---- UTF-8 ---- */

size_t pc_utf8_valid_prefix(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            n = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* > U+10FFFF */
        } else
            return i;
        if (len - i <= n) return i;
        if (p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k <= n; k++)
            if ((p[i + k] & 0xC0) != 0x80) return i;
        i += n + 1;
    }
    return len;
}

int pc_utf8_next(const char *s, size_t len, uint32_t *cp) {
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[0];
    if (c < 0x80 || len < 2) {
        *cp = c;
        return 1;
    }
    if (c < 0xE0) {
        *cp = (c & 0x1Fu) << 6 | (p[1] & 0x3Fu);
        return 2;
    }
    if (c < 0xF0 || len < 4) {
        *cp = (c & 0x0Fu) << 12 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu);
        return 3;
    }
    *cp = (c & 0x07u) << 18 | (p[1] & 0x3Fu) << 12 | (p[2] & 0x3Fu) << 6 | (p[3] & 0x3Fu);
    return 4;
}

int pc_utf8_put(uint32_t c, char out[4]) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | c >> 18);
    out[1] = (char)(0x80 | (c >> 12 & 0x3F));
    out[2] = (char)(0x80 | (c >> 6 & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

int pc_utf8_last_len(const char *s, size_t len) {
    int n = 1;
    while ((size_t)n < len && n < 4 && ((unsigned char)s[len - (size_t)n] & 0xC0) == 0x80) n++;
    return n;
}

size_t pc_utf8_count(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* ---- byte strings ---- */

int pc_hft_buf_put(pc_hft_buf *b, const void *p, size_t n) {
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int pc_hft_buf_putc(pc_hft_buf *b, uint32_t cp) {
    char u[4];
    return pc_hft_buf_put(b, u, (size_t)pc_utf8_put(cp, u));
}

void pc_hft_buf_free(pc_hft_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- normalization forms (ICU) ---- */

/* one segment free of frozen code points, through ICU */
static int icu_normalize(pc_hftu_form form, const char *s, size_t len, pc_hft_buf *out, char *err,
                         size_t errlen) {
    static const char *const names[] = {"NFC", "NFD", "NFKC", "NFKD"};
    if (len == 0) return 0;
    if (len > INT32_MAX / 4) return pc_errf(err, errlen, "%s: text too long", names[form]);
    UErrorCode st = U_ZERO_ERROR;
    const UNormalizer2 *nz = form == PC_HFTU_NFC    ? unorm2_getNFCInstance(&st)
                             : form == PC_HFTU_NFD  ? unorm2_getNFDInstance(&st)
                             : form == PC_HFTU_NFKC ? unorm2_getNFKCInstance(&st)
                                                    : unorm2_getNFKDInstance(&st);
    if (U_FAILURE(st)) return pc_errf(err, errlen, "%s: ICU: %s", names[form], u_errorName(st));
    /* UTF-8 -> UTF-16: at most one unit per byte */
    int32_t n16 = 0, cap = (int32_t)len + 1;
    UChar *src = malloc((size_t)cap * sizeof *src);
    UChar *dst = NULL;
    char *u8 = NULL;
    int rc = -1;
    if (!src) goto oom;
    u_strFromUTF8(src, cap, &n16, s, (int32_t)len, &st);
    if (U_FAILURE(st)) goto icu;
    /* normalized forms grow by at most a factor 18 (U+FDFA under NFKD); retry on overflow */
    int32_t dcap = n16 * 3 + 16, dn;
    for (;;) {
        UChar *d = realloc(dst, (size_t)dcap * sizeof *dst);
        if (!d) goto oom;
        dst = d;
        st = U_ZERO_ERROR;
        dn = unorm2_normalize(nz, src, n16, dst, dcap, &st);
        if (st != U_BUFFER_OVERFLOW_ERROR) break;
        dcap = dn + 1;
    }
    if (U_FAILURE(st)) goto icu;
    int32_t n8 = 0, cap8 = dn * 3 + 1;
    u8 = malloc((size_t)cap8);
    if (!u8) goto oom;
    u_strToUTF8(u8, cap8, &n8, dst, dn, &st);
    if (U_FAILURE(st)) goto icu;
    if (pc_hft_buf_put(out, u8, (size_t)n8)) goto oom;
    rc = 0;
    goto done;
icu:
    pc_errf(err, errlen, "%s: ICU: %s", names[form], u_errorName(st));
    goto done;
oom:
    pc_errf(err, errlen, "%s: out of memory", names[form]);
done:
    free(src);
    free(dst);
    free(u8);
    return rc;
}

int pc_hftu_normalize(pc_hftu_form form, const char *s, size_t len, pc_hft_buf *out, char *err,
                      size_t errlen) {
    size_t seg = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t k = (size_t)pc_utf8_next(s + i, len - i, &c);
        /* U+0378 is the first code point of the set */
        if (c >= 0x378 && pc_hftu_in(&pc_hftu_norm_frozen, c)) {
            if (icu_normalize(form, s + seg, i - seg, out, err, errlen)) return -1;
            if (pc_hft_buf_put(out, s + i, k)) return pc_errf(err, errlen, "out of memory");
            seg = i + k;
        }
        i += k;
    }
    return icu_normalize(form, s + seg, len - seg, out, err, errlen);
}
