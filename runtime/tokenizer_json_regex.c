/* Patterns of Split and Replace: literals, and the library's Oniguruma regexes run by PCRE2.
 *
 * The library compiles patterns with Oniguruma (Ruby syntax, UTF-8). PCRE2 (UTF, UCP) reads
 * the same syntax for what tokenizer files use, except for classes whose meaning differs:
 * Oniguruma's \s is Unicode White_Space (with U+0085; PCRE2's lacks it), \w is
 * Letter|Mark|Decimal_Number|Connector_Punctuation|Letter_Number and a few more
 * (pc_hftu_onig_word_extra; PCRE2 10.42's is Letter|Number|_), \h is a hex
 * digit (PCRE2: horizontal space), \uHHHH a code point; and Oniguruma's Unicode is newer
 * (16 against PCRE2 10.42's 14), so \p{L}, \p{N}, ... get the code points assigned since
 * (pc_hftu_props, generated from the library). Those are rewritten into explicit classes; what
 * cannot be rewritten (\S, \W, \D, \H or such a \P{..} inside a class, nested classes, &&) is
 * refused. Properties other than the general categories (scripts, ...) are PCRE2's. Matching
 * follows the onig crate's find_iter: leftmost matches, an empty match is not accepted right
 * after the previous match. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/tokenizer_json_internal.h"

#define WS_SET                                                                                     \
    "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}" \
    "\\x{3000}"
#define HEX_SET "0-9a-fA-F"

static int is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static const pc_hftu_set *additions(const char *name, size_t n) {
    for (const pc_hftu_prop *p = pc_hftu_props; p->name; p++)
        if (strlen(p->name) == n && !memcmp(p->name, name, n)) return p->add.n ? &p->add : NULL;
    return NULL;
}

static int set_items(pc_hft_buf *b, const pc_hftu_set *set) {
    char x[48];
    for (size_t i = 0; set && i < set->n; i++) {
        if (set->r[i][0] == set->r[i][1])
            snprintf(x, sizeof x, "\\x{%x}", set->r[i][0]);
        else
            snprintf(x, sizeof x, "\\x{%x}-\\x{%x}", set->r[i][0], set->r[i][1]);
        if (pc_hft_buf_put(b, x, strlen(x))) return -1;
    }
    return 0;
}

/* the members of \p{name} (with the code points Oniguruma's newer Unicode adds) as class items */
static int prop_items(pc_hft_buf *b, const char *name, size_t n) {
    char x[48];
    snprintf(x, sizeof x, "\\p{%.*s}", (int)n, name);
    if (pc_hft_buf_put(b, x, strlen(x))) return -1;
    return set_items(b, additions(name, n));
}

/* a class given as its items (props: "L,M,Nd" properties; items: literal class items; extra:
 * code point ranges), negated or not, inside a bracket expression or not */
static int emit_class(pc_hft_buf *b, const char *props, const char *items, const pc_hftu_set *extra,
                      bool neg, bool in_class, char *why, size_t whylen, char esc) {
    bool has_add = extra != NULL;
    for (const char *p = props; p && *p;) {
        size_t n = strcspn(p, ",");
        has_add |= additions(p, n) != NULL;
        p += n + (p[n] == ',');
    }
    if (in_class && neg && (has_add || items)) {
        snprintf(why, whylen, "\\%c inside a character class", esc);
        return -1;
    }
    int rc = 0;
    if (!in_class)
        rc |= pc_hft_buf_put(b, neg ? "[^" : "[", neg ? 2 : 1);
    else if (neg)
        rc |= pc_hft_buf_put(b, "\\P{", 3); /* single property, no additions */
    if (in_class && neg) {
        rc |= pc_hft_buf_put(b, props, strlen(props));
        rc |= pc_hft_buf_put(b, "}", 1);
        return rc;
    }
    for (const char *p = props; p && *p && !rc;) {
        size_t n = strcspn(p, ",");
        rc |= prop_items(b, p, n);
        p += n + (p[n] == ',');
    }
    if (items) rc |= pc_hft_buf_put(b, items, strlen(items));
    rc |= set_items(b, extra);
    if (!in_class) rc |= pc_hft_buf_put(b, "]", 1);
    if (rc) snprintf(why, whylen, "out of memory");
    return rc;
}

/* Oniguruma (Ruby syntax) -> PCRE2; NULL with a message on what has no translation */
static char *translate(const char *s, size_t n, char *why, size_t whylen) {
    pc_hft_buf b = {0};
    bool in_class = false;
    size_t class_start = 0; /* index of the char after '[' (and '^') */
    why[0] = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int rc = 0;
        if (c == '\\') {
            if (i + 1 >= n) {
                snprintf(why, whylen, "trailing backslash");
                goto fail;
            }
            char e = s[++i];
            switch (e) {
            case 's':
            case 'S':
                rc = emit_class(&b, NULL, WS_SET, NULL, e == 'S', in_class, why, whylen, e);
                break;
            case 'h':
            case 'H':
                rc = emit_class(&b, NULL, HEX_SET, NULL, e == 'H', in_class, why, whylen, e);
                break;
            case 'w':
            case 'W':
                rc = emit_class(&b, "L,M,Nd,Pc,Nl", NULL, &pc_hftu_onig_word_extra, e == 'W',
                                in_class, why, whylen, e);
                break;
            case 'd':
            case 'D':
                rc = emit_class(&b, "Nd", NULL, NULL, e == 'D', in_class, why, whylen, e);
                break;
            case 'p':
            case 'P': {
                /* \p{Name}, \p{^Name}, \pL */
                const char *name;
                size_t nl;
                bool neg = e == 'P';
                if (i + 1 < n && s[i + 1] == '{') {
                    const char *end = memchr(s + i + 2, '}', n - i - 2);
                    if (!end) {
                        snprintf(why, whylen, "unterminated \\%c{", e);
                        goto fail;
                    }
                    name = s + i + 2;
                    nl = (size_t)(end - name);
                    i = (size_t)(end - s);
                    if (nl && name[0] == '^') {
                        neg = !neg;
                        name++;
                        nl--;
                    }
                } else if (i + 1 < n) {
                    name = s + ++i;
                    nl = 1;
                } else {
                    snprintf(why, whylen, "trailing \\%c", e);
                    goto fail;
                }
                char props[40];
                if (nl == 0 || nl >= sizeof props) {
                    snprintf(why, whylen, "bad property name");
                    goto fail;
                }
                memcpy(props, name, nl);
                props[nl] = 0;
                if (strchr(props, ',')) {
                    snprintf(why, whylen, "bad property name %s", props);
                    goto fail;
                }
                if (!additions(props, nl)) { /* PCRE2's own (no newer code points known) */
                    char x[64];
                    snprintf(x, sizeof x, "\\%c{%s}", neg ? 'P' : 'p', props);
                    rc = pc_hft_buf_put(&b, x, strlen(x));
                } else {
                    rc = emit_class(&b, props, NULL, NULL, neg, in_class, why, whylen, e);
                }
                break;
            }
            case 'u':
                if (i + 4 < n && is_hex(s[i + 1]) && is_hex(s[i + 2]) && is_hex(s[i + 3]) &&
                    is_hex(s[i + 4])) {
                    char x[16];
                    snprintf(x, sizeof x, "\\x{%.4s}", s + i + 1);
                    rc = pc_hft_buf_put(&b, x, strlen(x));
                    i += 4;
                    break;
                }
                snprintf(why, whylen, "\\u without 4 hex digits");
                goto fail;
            case 'Q': snprintf(why, whylen, "\\Q...\\E quoting"); goto fail;
            default: {
                char x[2] = {'\\', e};
                rc = pc_hft_buf_put(&b, x, 2);
            }
            }
            if (rc && !why[0]) snprintf(why, whylen, "out of memory");
            if (rc) goto fail;
            continue;
        }
        if (in_class) {
            if (c == '[') {
                if (i + 1 < n && s[i + 1] == ':') { /* POSIX class: copy through ":]" */
                    const char *end = NULL;
                    for (size_t k = i + 2; k + 1 < n; k++)
                        if (s[k] == ':' && s[k + 1] == ']') {
                            end = s + k + 2;
                            break;
                        }
                    if (!end) {
                        snprintf(why, whylen, "unterminated POSIX class");
                        goto fail;
                    }
                    rc = pc_hft_buf_put(&b, s + i, (size_t)(end - (s + i)));
                    i = (size_t)(end - s) - 1;
                } else {
                    snprintf(why, whylen, "a nested character class (Oniguruma only)");
                    goto fail;
                }
            } else if (c == '&' && i + 1 < n && s[i + 1] == '&') {
                snprintf(why, whylen, "class intersection && (Oniguruma only)");
                goto fail;
            } else {
                if (c == ']' && i > class_start) in_class = false;
                rc = pc_hft_buf_put(&b, &c, 1);
            }
        } else if (c == '[') {
            in_class = true;
            rc = pc_hft_buf_put(&b, &c, 1);
            if (i + 1 < n && s[i + 1] == '^') rc |= pc_hft_buf_put(&b, s + ++i, 1);
            class_start = i + 1; /* a ']' right here is a literal */
        } else {
            rc = pc_hft_buf_put(&b, &c, 1);
        }
        if (rc) {
            snprintf(why, whylen, "out of memory");
            goto fail;
        }
    }
    if (in_class) {
        snprintf(why, whylen, "unterminated character class");
        goto fail;
    }
    if (pc_hft_buf_put(&b, "", 0)) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    return b.p;
fail:
    pc_hft_buf_free(&b);
    return NULL;
}

int pc_hft_pattern_regex(const pc_hft_ctx *cx, const char *path, const char *onig, size_t len,
                         pc_hft_pattern *p) {
    char why[160];
    memset(p, 0, sizeof *p);
    if (pc_utf8_valid_prefix(onig, len) != len)
        return pc_hft_fail(cx, path, "the regex is not valid UTF-8");
    char *pat = translate(onig, len, why, sizeof why);
    if (!pat) return pc_hft_fail(cx, path, "unsupported regex (%s): %.*s", why, (int)len, onig);
    int code;
    PCRE2_SIZE at;
    p->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &at,
                          NULL);
    free(pat);
    if (!p->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return pc_hft_fail(cx, path, "regex refused by PCRE2 (%s): %.*s", (const char *)msg,
                           (int)len, onig);
    }
    (void)pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
    return 0;
}

int pc_hft_pattern_parse(const pc_hft_ctx *cx, json_t *j, const char *path, pc_hft_pattern *p) {
    memset(p, 0, sizeof *p);
    const char *s;
    size_t n;
    char f[256];
    if (!json_is_object(j) || json_object_size(j) != 1)
        return pc_hft_fail(cx, path, "expected {\"String\": ...} or {\"Regex\": ...}");
    if (json_object_get(j, "String")) {
        if (pc_hft_get_str(cx, j, path, "String", false, &s, &n)) return -1;
        p->lit = pc_hft_strndup(s, n);
        p->litlen = n;
        return p->lit ? 0 : pc_hft_oom(cx, path);
    }
    if (json_object_get(j, "Regex")) {
        if (pc_hft_get_str(cx, j, path, "Regex", false, &s, &n)) return -1;
        pc_hft_pathf(f, sizeof f, "%s.Regex", path);
        return pc_hft_pattern_regex(cx, f, s, n, p);
    }
    return pc_hft_fail(cx, path, "expected {\"String\": ...} or {\"Regex\": ...}");
}

void pc_hft_pattern_free(pc_hft_pattern *p) {
    free(p->lit);
    if (p->re) pcre2_code_free(p->re);
    memset(p, 0, sizeof *p);
}

/* the spans of find_matches from the list of matches */
static int add_match(pc_hft_spans *out, size_t *prev, size_t s, size_t e) {
    if (*prev != s && pc_hft_spans_push(out, *prev, s, false)) return -1;
    if (pc_hft_spans_push(out, s, e, true)) return -1;
    *prev = e;
    return 0;
}

int pc_hft_pattern_find(const pc_hft_pattern *p, const char *s, size_t len, pc_hft_spans *out,
                        char *err, size_t errlen) {
    out->n = 0;
    if (len == 0)
        return pc_hft_spans_push(out, 0, 0, false) ? pc_errf(err, errlen, "out of memory") : 0;
    size_t prev = 0;
    if (!p->re) {
        if (p->litlen) {
            for (size_t i = 0; i + p->litlen <= len;) {
                const char *hit = memmem(s + i, len - i, p->lit, p->litlen);
                if (!hit) break;
                size_t at = (size_t)(hit - s);
                if (add_match(out, &prev, at, at + p->litlen)) goto oom;
                i = at + p->litlen;
            }
        }
    } else {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->re, NULL);
        if (!md) goto oom;
        size_t last_end = 0;
        bool have_last = false;
        size_t last_match_end = 0;
        while (last_end <= len) {
            int rc = pcre2_match(p->re, (PCRE2_SPTR)s, len, last_end, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(rc, msg, sizeof msg);
                pcre2_match_data_free(md);
                return pc_errf(err, errlen, "regex match failed: %s", (const char *)msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (ms == me && have_last && last_match_end == me) {
                last_end += last_end < len
                                ? (size_t)pc_utf8_next(s + last_end, len - last_end, &(uint32_t){0})
                                : 1;
                continue;
            }
            last_end = me;
            have_last = true;
            last_match_end = me;
            if (add_match(out, &prev, ms, me)) {
                pcre2_match_data_free(md);
                goto oom;
            }
        }
        pcre2_match_data_free(md);
    }
    if (prev != len && pc_hft_spans_push(out, prev, len, false)) goto oom;
    return 0;
oom:
    return pc_errf(err, errlen, "out of memory");
}
