/* Python-compatible JSON text: json.dumps(v, indent=2, sort_keys=True) (ensure_ascii) for writing
 * adapter_config.json byte-for-byte as PEFT does, and the one-line form json.dumps(v) used in
 * messages. See adapter_config_internal.h. */
#include "runtime/adapter_config_internal.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* repr(float): shortest round-trip digits; fixed notation when -4 <= exponent < 16 */
void ac_py_float_repr(double v, char *out, size_t outlen) {
    if (isnan(v)) {
        snprintf(out, outlen, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, outlen, v < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (v == 0) {
        snprintf(out, outlen, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    char tmp[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* tmp: [-]d[.ddd]e[+-]xx */
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    char digits[32];
    size_t nd = 0;
    while (*p && *p != 'e') {
        if (*p != '.' && nd + 1 < sizeof digits) digits[nd++] = *p;
        p++;
    }
    digits[nd] = '\0';
    int exp10 = (*p == 'e') ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = '\0';
    pc_textbuf b = {0};
    if (neg) pc_tb_puts(&b, "-");
    if (exp10 >= -4 && exp10 < 16) {
        int decpt = exp10 + 1; /* digits before the point */
        if (decpt <= 0) {
            pc_tb_puts(&b, "0.");
            for (int i = 0; i < -decpt; i++) pc_tb_puts(&b, "0");
            pc_tb_puts(&b, digits);
        } else if ((size_t)decpt >= nd) {
            pc_tb_puts(&b, digits);
            for (size_t i = nd; i < (size_t)decpt; i++) pc_tb_puts(&b, "0");
            pc_tb_puts(&b, ".0");
        } else {
            pc_tb_putn(&b, digits, (size_t)decpt);
            pc_tb_puts(&b, ".");
            pc_tb_puts(&b, digits + decpt);
        }
    } else {
        pc_tb_putn(&b, digits, 1);
        if (nd > 1) {
            pc_tb_puts(&b, ".");
            pc_tb_puts(&b, digits + 1);
        }
        pc_tb_printf(&b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    snprintf(out, outlen, "%s", b.oom || !b.p ? "0.0" : b.p);
    free(b.p);
}

/* decodes one UTF-8 sequence (input is valid UTF-8 from jansson); returns bytes consumed */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    if (c < 0x80 || n < 2) {
        *cp = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0) {
        *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if ((c & 0xF0) == 0xE0 && n >= 3) {
        *cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        return 3;
    }
    if ((c & 0xF8) == 0xF0 && n >= 4) {
        *cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        return 4;
    }
    *cp = c;
    return 1;
}

static void py_dump_string(pc_textbuf *b, const char *s, size_t n) {
    pc_tb_puts(b, "\"");
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\') {
            size_t j = i;
            while (j < n && u[j] >= 0x20 && u[j] <= 0x7e && u[j] != '"' && u[j] != '\\') j++;
            pc_tb_putn(b, s + i, j - i);
            i = j;
            continue;
        }
        switch (c) {
        case '"': pc_tb_puts(b, "\\\""); i++; continue;
        case '\\': pc_tb_puts(b, "\\\\"); i++; continue;
        case '\n': pc_tb_puts(b, "\\n"); i++; continue;
        case '\r': pc_tb_puts(b, "\\r"); i++; continue;
        case '\t': pc_tb_puts(b, "\\t"); i++; continue;
        case '\b': pc_tb_puts(b, "\\b"); i++; continue;
        case '\f': pc_tb_puts(b, "\\f"); i++; continue;
        default: break;
        }
        unsigned cp;
        i += utf8_decode(u + i, n - i, &cp);
        if (cp >= 0x10000) {
            unsigned v = cp - 0x10000;
            pc_tb_printf(b, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
        } else {
            pc_tb_printf(b, "\\u%04x", cp);
        }
    }
    pc_tb_puts(b, "\"");
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void py_indent(pc_textbuf *b, int indent, int depth) {
    pc_tb_puts(b, "\n");
    for (int i = 0; i < indent * depth; i++) pc_tb_puts(b, " ");
}

/* indent -1: one line (", " and ": " separators, keys in object order);
 * AC_PY_COMPACT: separators=(",", ":"), sort_keys=True */
void ac_py_dump(pc_textbuf *b, const json_t *v, int indent, int depth) {
    switch (json_typeof(v)) {
    case JSON_NULL: pc_tb_puts(b, "null"); return;
    case JSON_TRUE: pc_tb_puts(b, "true"); return;
    case JSON_FALSE: pc_tb_puts(b, "false"); return;
    case JSON_INTEGER: pc_tb_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); return;
    case JSON_REAL: {
        char tmp[64];
        ac_py_float_repr(json_real_value(v), tmp, sizeof tmp);
        pc_tb_puts(b, tmp);
        return;
    }
    case JSON_STRING: py_dump_string(b, json_string_value(v), json_string_length(v)); return;
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (n == 0) {
            pc_tb_puts(b, "[]");
            return;
        }
        pc_tb_puts(b, "[");
        for (size_t i = 0; i < n; i++) {
            if (i) pc_tb_puts(b, indent == -1 ? ", " : ",");
            if (indent >= 0) py_indent(b, indent, depth + 1);
            ac_py_dump(b, json_array_get(v, i), indent, depth + 1);
        }
        if (indent >= 0) py_indent(b, indent, depth);
        pc_tb_puts(b, "]");
        return;
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(v);
        if (n == 0) {
            pc_tb_puts(b, "{}");
            return;
        }
        const char **keys = malloc(n * sizeof *keys);
        if (!keys) {
            b->oom = true;
            return;
        }
        size_t k = 0;
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) {
            if (k < n) keys[k++] = key;
        }
        if (indent != -1) qsort(keys, k, sizeof *keys, cmp_cstr);
        pc_tb_puts(b, "{");
        for (size_t i = 0; i < k; i++) {
            if (i) pc_tb_puts(b, indent == -1 ? ", " : ",");
            if (indent >= 0) py_indent(b, indent, depth + 1);
            py_dump_string(b, keys[i], strlen(keys[i]));
            pc_tb_puts(b, indent == AC_PY_COMPACT ? ":" : ": ");
            ac_py_dump(b, json_object_get(v, keys[i]), indent, depth + 1);
        }
        free(keys);
        if (indent >= 0) py_indent(b, indent, depth);
        pc_tb_puts(b, "}");
        return;
    }
    }
}

/* a short rendering of a JSON value for messages */
const char *ac_render(const json_t *v, char *buf, size_t buflen) {
    pc_textbuf b = {0};
    ac_py_dump(&b, v, -1, 0);
    if (b.oom || !b.p) {
        snprintf(buf, buflen, "(value)");
    } else if (b.n > 80) {
        snprintf(buf, buflen, "%.77s...", b.p);
    } else {
        snprintf(buf, buflen, "%s", b.p);
    }
    free(b.p);
    return buf;
}
