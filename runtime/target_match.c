/* PEFT module matching on PCRE2. See target_match.h. */
#include "runtime/target_match.h"

#include "runtime/fileio.h"
#include "runtime/strutil.h"
#include "runtime/textbuf.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * Python re -> PCRE2
 * ---------------------------------------------------------------------------------------------- */

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* Rewrites the Python-only spellings of a pattern: \Z (end of string) -> \z, {,n} -> {0,n},
 * \uXXXX / \UXXXXXXXX -> \x{...}. Everything else is the same in both dialects for the patterns
 * PEFT configs use. */
static void py_translate(pc_textbuf *b, const char *s) {
    bool in_class = false;
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\') {
            if (i + 1 >= n) {
                pc_tb_putn(b, "\\", 1);
                continue;
            }
            char d = s[i + 1];
            if (d == 'Z' && !in_class) {
                pc_tb_puts(b, "\\z");
                i++;
                continue;
            }
            size_t hexlen = d == 'u' ? 4 : d == 'U' ? 8 : 0;
            if (hexlen && i + 2 + hexlen <= n) {
                bool ok = true;
                for (size_t k = 0; ok && k < hexlen; k++) ok = is_hex(s[i + 2 + k]);
                if (ok) {
                    pc_tb_puts(b, "\\x{");
                    pc_tb_putn(b, s + i + 2, hexlen);
                    pc_tb_puts(b, "}");
                    i += 1 + hexlen;
                    continue;
                }
            }
            pc_tb_putn(b, s + i, 2);
            i++;
            continue;
        }
        if (in_class) {
            if (c == ']') in_class = false;
            pc_tb_putn(b, &c, 1);
            continue;
        }
        if (c == '[') {
            in_class = true;
            pc_tb_putn(b, &c, 1);
            /* a leading ^ and a ']' right after the opening are part of the class */
            if (i + 1 < n && s[i + 1] == '^') pc_tb_putn(b, &s[++i], 1);
            if (i + 1 < n && s[i + 1] == ']') pc_tb_putn(b, &s[++i], 1);
            continue;
        }
        if (c == '{' && i + 1 < n && s[i + 1] == ',') {
            size_t j = i + 2;
            while (j < n && s[j] >= '0' && s[j] <= '9') j++;
            if (j < n && s[j] == '}') {
                pc_tb_puts(b, "{0,");
                pc_tb_putn(b, s + i + 2, j + 1 - (i + 2));
                i = j;
                continue;
            }
        }
        pc_tb_putn(b, &c, 1);
    }
}

/* compiles prefix + pattern + suffix (only `pattern` is translated; the fixed parts are PCRE2) */
static pcre2_code *py_compile(const char *prefix, const char *pattern, const char *suffix, char *msg,
                              size_t msglen) {
    pc_textbuf b = {0};
    if (prefix) pc_tb_puts(&b, prefix);
    if (pattern) py_translate(&b, pattern);
    if (suffix) pc_tb_puts(&b, suffix);
    if (b.oom) {
        free(b.p);
        pc_errf(msg, msglen, "out of memory");
        return NULL;
    }
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.n, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR text[200];
        if (pcre2_get_error_message(code, text, sizeof text) < 0) snprintf((char *)text, sizeof text, "error %d", code);
        size_t plen = prefix ? strlen(prefix) : 0;
        if (off >= plen && off - plen <= (pattern ? strlen(pattern) : 0))
            pc_errf(msg, msglen, "%s at offset %zu", (char *)text, (size_t)(off - plen));
        else
            pc_errf(msg, msglen, "%s", (char *)text);
    }
    free(b.p);
    return re;
}

int pc_pyregex_check(const char *prefix, const char *pattern, const char *suffix, char *msg, size_t msglen) {
    pcre2_code *re = py_compile(prefix, pattern, suffix, msg, msglen);
    if (!re) return -1;
    pcre2_code_free(re);
    return 0;
}

/* 1 match, 0 no match, or PCRE2's (negative) error code. cap: optional [start, end) of the
 * group named "idx". */
static int rx_match(const pcre2_code *re, const char *s, uint32_t opts, size_t cap[2]) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return PCRE2_ERROR_NOMEMORY;
    /* a module name is short: a pattern that backtracks this much is pathological, and the
     * default limit (10 M steps per name, times every module) let a config stall for seconds */
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    if (mc) pcre2_set_match_limit(mc, 200000);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, opts, md, mc);
    pcre2_match_context_free(mc);
    int out;
    if (rc >= 0) {
        out = 1;
        if (cap) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            int g = pcre2_substring_number_from_name(re, (PCRE2_SPTR) "idx");
            cap[0] = cap[1] = 0;
            if (g > 0 && (uint32_t)g < pcre2_get_ovector_count(md) && ov[2 * g] != PCRE2_UNSET) {
                cap[0] = ov[2 * g];
                cap[1] = ov[2 * g + 1];
            }
        }
    } else {
        out = rc == PCRE2_ERROR_NOMATCH ? 0 : rc;
    }
    pcre2_match_data_free(md);
    return out;
}

/* Why the engine failed (rc < 0) on a name the caller names, into msg (may be NULL): PCRE2's own text (match limit
 * exceeded, bad UTF-8, ...) and the pattern as the config spells it, which is what the user can
 * change; "matching failed" alone says neither. */
static void rx_why(char *msg, size_t msglen, int rc, const char *field, const char *pattern) {
    if (!msg || !msglen) return;
    PCRE2_UCHAR text[256];
    if (pcre2_get_error_message(rc, text, sizeof text) < 0) snprintf((char *)text, sizeof text, "error %d", rc);
    pc_errf(msg, msglen, "field \"%s\": pattern \"%s\": PCRE2 error: %s", field, pattern, (char *)text);
}

#define FULLMATCH (PCRE2_ANCHORED | PCRE2_ENDANCHORED) /* re.fullmatch */
#define MATCH PCRE2_ANCHORED                             /* re.match */

/* ------------------------------------------------------------------------------------------------
 * the matcher
 * ---------------------------------------------------------------------------------------------- */

/* PEFT's layer index of a name when layers_pattern is unset */
#define LAYER_ANY ".*?\\.[^.]*\\.(?P<idx>\\d+)\\."

struct pc_target_matcher {
    pc_adapter_config *cfg;   /* private copy */
    pcre2_code *target_re;    /* target_modules as a string */
    pcre2_code *exclude_re;   /* exclude_modules as a string */
    pcre2_code *ff_re;        /* IA3 feedforward_modules as a string */
    pcre2_code **mts_re;      /* modules_to_save entries */
    size_t n_mts;
    pcre2_code *layer_any_re; /* r".*?\.[^.]*\.(?P<idx>\d+)\." */
    pcre2_code **layer_re;    /* rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\." per layers_pattern entry */
    size_t n_layer_re;
    pcre2_code **rank_re;     /* rf"(.*\.)?({k})$" per rank_pattern key (not AdaLoRA) */
    pcre2_code **alpha_re;
    size_t n_rank, n_alpha;
};

void pc_target_matcher_free(pc_target_matcher *m) {
    if (!m) return;
    pcre2_code_free(m->target_re);
    pcre2_code_free(m->exclude_re);
    pcre2_code_free(m->ff_re);
    for (size_t i = 0; i < m->n_mts; i++) pcre2_code_free(m->mts_re[i]);
    free(m->mts_re);
    pcre2_code_free(m->layer_any_re);
    for (size_t i = 0; i < m->n_layer_re; i++) pcre2_code_free(m->layer_re[i]);
    free(m->layer_re);
    for (size_t i = 0; i < m->n_rank; i++) pcre2_code_free(m->rank_re[i]);
    free(m->rank_re);
    for (size_t i = 0; i < m->n_alpha; i++) pcre2_code_free(m->alpha_re[i]);
    free(m->alpha_re);
    pc_adapter_config_free(m->cfg);
    free(m);
}

static bool is_all_linear(const pc_spec *s) { return s->kind == PC_SPEC_STRING && pc_ascii_ieq(s->str, "all-linear"); }

static bool uses_targets(pc_peft_type t) {
    return t == PC_PEFT_LORA || t == PC_PEFT_LOHA || t == PC_PEFT_LOKR || t == PC_PEFT_ADALORA || t == PC_PEFT_IA3 ||
           t == PC_PEFT_CUSTOM;
}

/* compiles one piece or reports `field`: "..." */
static pcre2_code *compile_field(const char *src, const char *field, const char *prefix, const char *pattern,
                                 const char *suffix, char *err, size_t errlen) {
    char msg[256];
    pcre2_code *re = py_compile(prefix, pattern, suffix, msg, sizeof msg);
    if (!re)
        pc_errf(err, errlen, "%s: field \"%s\": \"%s\" is not a valid regular expression: %s", src, field, pattern, msg);
    return re;
}

pc_target_matcher *pc_target_matcher_new(const pc_adapter_config *cfg, char *err, size_t errlen) {
    const char *src = PC_ADAPTER_CONFIG_NAME;
    if (!cfg) {
        pc_errf(err, errlen, "%s: no config", src);
        return NULL;
    }
    if (!uses_targets(cfg->peft_type)) {
        pc_errf(err, errlen, "%s: peft_type %s does not target modules (prompt learning)", src,
                pc_adapter_config_type_name(cfg));
        return NULL;
    }
    if (pc_adapter_config_validate(cfg, src, err, errlen)) return NULL;
    if (cfg->target_modules.kind == PC_SPEC_NULL) {
        pc_errf(err, errlen,
                "%s: field \"target_modules\" is null: PEFT fills it from its per-model default map; call "
                "pc_adapter_config_fill_default_targets() with the model type, or set target_modules",
                src);
        return NULL;
    }
    if (is_all_linear(&cfg->target_modules)) {
        pc_errf(err, errlen,
                "%s: field \"target_modules\" is \"%s\": expand it with pc_adapter_config_expand_all_linear() "
                "before matching",
                src, cfg->target_modules.str);
        return NULL;
    }
    if (cfg->peft_type == PC_PEFT_IA3 && cfg->ia3.feedforward_modules.kind == PC_SPEC_NULL) {
        pc_errf(err, errlen,
                "%s: field \"feedforward_modules\" is null: PEFT fills it from its per-model default map; call "
                "pc_adapter_config_fill_default_targets() with the model type, or set feedforward_modules",
                src);
        return NULL;
    }
    pc_target_matcher *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->cfg = pc_adapter_config_clone(cfg);
    if (!m->cfg) goto oom;
    const pc_adapter_config *c = m->cfg;

    if (c->target_modules.kind == PC_SPEC_STRING &&
        !(m->target_re = compile_field(src, "target_modules", NULL, c->target_modules.str, NULL, err, errlen)))
        goto fail;
    if (c->exclude_modules.kind == PC_SPEC_STRING &&
        !(m->exclude_re = compile_field(src, "exclude_modules", NULL, c->exclude_modules.str, NULL, err, errlen)))
        goto fail;
    if (c->peft_type == PC_PEFT_IA3 && c->ia3.feedforward_modules.kind == PC_SPEC_STRING &&
        !(m->ff_re = compile_field(src, "feedforward_modules", NULL, c->ia3.feedforward_modules.str, NULL, err, errlen)))
        goto fail;
    if (c->modules_to_save.kind == PC_SPEC_LIST && c->modules_to_save.n) {
        m->mts_re = calloc(c->modules_to_save.n, sizeof *m->mts_re);
        if (!m->mts_re) goto oom;
        for (size_t i = 0; i < c->modules_to_save.n; i++, m->n_mts++)
            if (!(m->mts_re[i] = compile_field(src, "modules_to_save", "(^|.*\\.)", c->modules_to_save.items[i],
                                               "($|\\..*)", err, errlen)))
                goto fail;
    }
    if (c->peft_type != PC_PEFT_IA3) {
        /* Python's \d is Unicode-aware like PCRE2_UCP's; only ASCII digits parse to an index below */
        if (!(m->layer_any_re =
                  compile_field(src, "layers_pattern", NULL, LAYER_ANY, NULL, err, errlen)))
            goto fail;
        const pc_spec *lp = &c->layers_pattern;
        size_t nlp = lp->kind == PC_SPEC_LIST ? lp->n : lp->kind == PC_SPEC_STRING ? 1 : 0;
        if (nlp) {
            m->layer_re = calloc(nlp, sizeof *m->layer_re);
            if (!m->layer_re) goto oom;
            for (size_t i = 0; i < nlp; i++, m->n_layer_re++)
                if (!(m->layer_re[i] = compile_field(src, "layers_pattern", "(?:^|.*?\\.)",
                                                     lp->kind == PC_SPEC_LIST ? lp->items[i] : lp->str,
                                                     "\\.(?P<idx>\\d+)\\.", err, errlen)))
                    goto fail;
        }
        if (c->peft_type != PC_PEFT_ADALORA && c->rank_pattern.n) {
            m->rank_re = calloc(c->rank_pattern.n, sizeof *m->rank_re);
            if (!m->rank_re) goto oom;
            for (size_t i = 0; i < c->rank_pattern.n; i++, m->n_rank++)
                if (!(m->rank_re[i] = compile_field(src, "rank_pattern", "(.*\\.)?(", c->rank_pattern.items[i].key,
                                                    ")$", err, errlen)))
                    goto fail;
        }
        if (c->alpha_pattern.n) {
            m->alpha_re = calloc(c->alpha_pattern.n, sizeof *m->alpha_re);
            if (!m->alpha_re) goto oom;
            for (size_t i = 0; i < c->alpha_pattern.n; i++, m->n_alpha++)
                if (!(m->alpha_re[i] = compile_field(src, "alpha_pattern", "(.*\\.)?(", c->alpha_pattern.items[i].key,
                                                     ")$", err, errlen)))
                    goto fail;
        }
    }
    return m;
oom:
    pc_errf(err, errlen, "%s: out of memory", src);
fail:
    pc_target_matcher_free(m);
    return NULL;
}

static bool ends_with_dot(const char *name, size_t nlen, const char *suffix) {
    size_t sl = strlen(suffix);
    return nlen >= sl + 1 && name[nlen - sl - 1] == '.' && memcmp(name + nlen - sl, suffix, sl) == 0;
}

/* exact or "." + entry suffix, as PEFT's list rule */
static bool list_rule(const pc_spec *s, const char *name) {
    size_t nlen = strlen(name);
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(name, s->items[i]) == 0 || ends_with_dot(name, nlen, s->items[i])) return true;
    return false;
}

/* layer index from a capture; false when it is not plain ASCII digits (or beyond int64) */
static bool parse_index(const char *s, size_t a, size_t b, int64_t *out, bool *overflow) {
    int64_t v = 0;
    *overflow = false;
    if (b <= a) return false;
    for (size_t i = a; i < b; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10) *overflow = true;
        else v = v * 10 + d;
    }
    *out = v;
    return true;
}

pc_match_result pc_target_match_why(const pc_target_matcher *m, const char *key, char *msg, size_t msglen) {
    if (!m || !key) return PC_MATCH_ERROR;
    const pc_adapter_config *c = m->cfg;
    int r;

    /* 1. exclude_modules (only when truthy) */
    if (c->exclude_modules.kind == PC_SPEC_STRING && c->exclude_modules.str[0]) {
        if ((r = rx_match(m->exclude_re, key, FULLMATCH, NULL)) < 0)
            return rx_why(msg, msglen, r, "exclude_modules", c->exclude_modules.str), PC_MATCH_ERROR;
        if (r) return PC_MATCH_EXCLUDED;
    } else if (c->exclude_modules.kind == PC_SPEC_LIST && c->exclude_modules.n) {
        if (list_rule(&c->exclude_modules, key)) return PC_MATCH_EXCLUDED;
    }
    /* 2. modules_to_save */
    for (size_t i = 0; i < m->n_mts; i++) {
        if ((r = rx_match(m->mts_re[i], key, MATCH, NULL)) < 0)
            return rx_why(msg, msglen, r, "modules_to_save", c->modules_to_save.items[i]), PC_MATCH_ERROR;
        if (r) return PC_MATCH_MODULES_TO_SAVE;
    }
    /* 3. targets */
    if (c->target_modules.kind == PC_SPEC_STRING) {
        if ((r = rx_match(m->target_re, key, FULLMATCH, NULL)) < 0)
            return rx_why(msg, msglen, r, "target_modules", c->target_modules.str), PC_MATCH_ERROR;
        return r ? PC_MATCH_YES : PC_MATCH_NO;
    }
    const pc_spec *tg = &c->target_modules;
    for (size_t i = 0; i < tg->n; i++)
        if (strcmp(key, tg->items[i]) == 0) return PC_MATCH_YES; /* exact: no layer filtering */
    size_t klen = strlen(key);
    bool found = false;
    for (size_t i = 0; i < tg->n && !found; i++) found = ends_with_dot(key, klen, tg->items[i]);
    if (!found) return PC_MATCH_NO;

    const pc_layers *lt = &c->layers_to_transform;
    bool using_layers = lt->kind == PC_LAYERS_INT || (lt->kind == PC_LAYERS_LIST && lt->n > 0);
    if (!using_layers) return PC_MATCH_YES;
    size_t cap[2] = {0, 0};
    int got = 0;
    if (m->n_layer_re == 0 || (c->layers_pattern.kind == PC_SPEC_STRING && !c->layers_pattern.str[0])) {
        /* layers_pattern None, "" or []: any layer pattern */
        if ((got = rx_match(m->layer_any_re, key, MATCH, cap)) < 0)
            return rx_why(msg, msglen, got, "layers_to_transform", LAYER_ANY), PC_MATCH_ERROR;
    } else {
        for (size_t i = 0; i < m->n_layer_re && !got; i++)
            if ((got = rx_match(m->layer_re[i], key, MATCH, cap)) < 0)
                return rx_why(msg, msglen, got, "layers_pattern",
                              c->layers_pattern.kind == PC_SPEC_LIST ? c->layers_pattern.items[i] : c->layers_pattern.str),
                       PC_MATCH_ERROR;
    }
    if (!got) return PC_MATCH_LAYER_FILTERED;
    int64_t idx;
    bool overflow;
    if (!parse_index(key, cap[0], cap[1], &idx, &overflow) || overflow) return PC_MATCH_LAYER_FILTERED;
    for (size_t i = 0; i < lt->n; i++)
        if (lt->items[i] == idx) return PC_MATCH_YES;
    return PC_MATCH_LAYER_FILTERED;
}

pc_match_result pc_target_match_ex(const pc_target_matcher *m, const char *key) {
    return pc_target_match_why(m, key, NULL, 0);
}

int pc_target_match(const pc_target_matcher *m, const char *module_name) {
    pc_match_result r = pc_target_match_ex(m, module_name);
    if (r == PC_MATCH_ERROR) return -1;
    return r == PC_MATCH_YES ? 1 : 0;
}

/* index of the first matching key of p (get_pattern_key), -1 none, -2 error (why in msg) */
static long first_key(pcre2_code *const *res, size_t n, const char *name, const pc_pattern *p, const char *field,
                      char *msg, size_t msglen) {
    for (size_t i = 0; i < n; i++) {
        int r = rx_match(res[i], name, MATCH, NULL);
        if (r < 0) return rx_why(msg, msglen, r, field, p->items[i].key), -2;
        if (r) return (long)i;
    }
    return -1;
}

/* AdaLoRA: the rank_pattern entry for a module (keys "<module>.lora_E", or "<module>.lora_E.<adapter>"
 * before saving; PEFT drops two components when the adapter name "default" occurs in the key) */
static const pc_pattern_entry *adalora_entry(const pc_adapter_config *c, const char *name) {
    const pc_pattern_entry *hit = NULL;
    size_t nlen = strlen(name);
    for (size_t i = 0; i < c->rank_pattern.n; i++) {
        const char *k = c->rank_pattern.items[i].key;
        size_t klen = strlen(k);
        int drop = strstr(k, "default") ? 2 : 1;
        size_t end = klen;
        for (int d = 0; d < drop; d++) {
            while (end > 0 && k[end - 1] != '.') end--;
            if (end == 0) break;
            end--; /* the dot */
        }
        if (end == nlen && memcmp(k, name, nlen) == 0) hit = &c->rank_pattern.items[i]; /* last one wins */
    }
    return hit;
}

int pc_target_rank_alpha(const pc_target_matcher *m, const char *name, int *r, double *alpha) {
    return pc_target_rank_alpha_why(m, name, r, alpha, NULL, 0);
}

int pc_target_rank_alpha_why(const pc_target_matcher *m, const char *name, int *r, double *alpha, char *msg,
                             size_t msglen) {
    if (!m || !name) return -1;
    const pc_adapter_config *c = m->cfg;
    int rr;
    double aa;
    switch (c->peft_type) {
    case PC_PEFT_LORA:
        rr = c->r;
        aa = c->lora.lora_alpha.v;
        break;
    case PC_PEFT_LOHA:
    case PC_PEFT_LOKR:
        rr = c->r;
        aa = c->lycoris.alpha.v;
        break;
    case PC_PEFT_ADALORA: {
        const pc_pattern_entry *e = c->rank_pattern.is_null ? NULL : adalora_entry(c, name);
        rr = e ? (int)e->value.v : c->adalora.init_r;
        aa = c->lora.lora_alpha.v;
        if (r) *r = rr;
        if (alpha) *alpha = aa;
        return 0;
    }
    default: return -1;
    }
    long i = first_key(m->rank_re, m->n_rank, name, &c->rank_pattern, "rank_pattern", msg, msglen);
    if (i == -2) return -1;
    if (i >= 0) rr = (int)c->rank_pattern.items[i].value.v;
    i = first_key(m->alpha_re, m->n_alpha, name, &c->alpha_pattern, "alpha_pattern", msg, msglen);
    if (i == -2) return -1;
    if (i >= 0) aa = c->alpha_pattern.items[i].value.v;
    if (r) *r = rr;
    if (alpha) *alpha = aa;
    return 0;
}

const char *pc_target_rank_key(const pc_target_matcher *m, const char *name) {
    if (!m || !name) return NULL;
    if (m->cfg->peft_type == PC_PEFT_ADALORA) {
        const pc_pattern_entry *e = m->cfg->rank_pattern.is_null ? NULL : adalora_entry(m->cfg, name);
        return e ? e->key : NULL;
    }
    long i = first_key(m->rank_re, m->n_rank, name, &m->cfg->rank_pattern, "rank_pattern", NULL, 0);
    return i >= 0 ? m->cfg->rank_pattern.items[i].key : NULL;
}

const char *pc_target_alpha_key(const pc_target_matcher *m, const char *name) {
    if (!m || !name) return NULL;
    long i = first_key(m->alpha_re, m->n_alpha, name, &m->cfg->alpha_pattern, "alpha_pattern", NULL, 0);
    return i >= 0 ? m->cfg->alpha_pattern.items[i].key : NULL;
}

int pc_target_is_feedforward(const pc_target_matcher *m, const char *name) {
    return pc_target_is_feedforward_why(m, name, NULL, 0);
}

int pc_target_is_feedforward_why(const pc_target_matcher *m, const char *name, char *msg, size_t msglen) {
    if (!m || !name || m->cfg->peft_type != PC_PEFT_IA3) return -1;
    const pc_spec *ff = &m->cfg->ia3.feedforward_modules;
    if (ff->kind == PC_SPEC_STRING) {
        int r = rx_match(m->ff_re, name, FULLMATCH, NULL);
        if (r < 0) return rx_why(msg, msglen, r, "feedforward_modules", ff->str), -1;
        return r;
    }
    /* IA3Model._check_target_module_feedforward: key.endswith(target_key), no "." boundary */
    size_t nlen = strlen(name);
    for (size_t i = 0; i < ff->n; i++) {
        size_t sl = strlen(ff->items[i]);
        if (nlen >= sl && memcmp(name + nlen - sl, ff->items[i], sl) == 0) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * config completion: "all-linear" and per-model defaults
 * ---------------------------------------------------------------------------------------------- */

int pc_adapter_config_expand_all_linear(pc_adapter_config *cfg, const char *const *names, size_t n,
                                        int (*is_linear)(void *ctx, const char *module_name), void *ctx,
                                        char *err, size_t errlen) {
    if (!cfg) {
        pc_errf(err, errlen, "%s: no config", PC_ADAPTER_CONFIG_NAME);
        return -1;
    }
    if (!is_all_linear(&cfg->target_modules)) return 0;
    if ((n && !names) || !is_linear) {
        pc_errf(err, errlen, "%s: field \"target_modules\": \"all-linear\" needs the module names and a predicate",
                PC_ADAPTER_CONFIG_NAME);
        return -1;
    }
    const char **sel = n ? malloc(n * sizeof *sel) : NULL;
    if (n && !sel) {
        pc_errf(err, errlen, "%s: out of memory", PC_ADAPTER_CONFIG_NAME);
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !names[i][0] || !is_linear(ctx, names[i])) continue;
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++) dup = strcmp(sel[j], names[i]) == 0;
        if (!dup) sel[k++] = names[i];
    }
    int rc = pc_spec_set_list(&cfg->target_modules, sel, k);
    free(sel);
    if (rc) pc_errf(err, errlen, "%s: out of memory", PC_ADAPTER_CONFIG_NAME);
    return rc;
}

typedef struct {
    const char *model;
    const char *list; /* comma-separated names; a leading '~' marks a regex string */
} default_map;

/* src/peft/utils/constants.py (PEFT 0.20) */
static const default_map LORA_TARGETS[] = {
    {"t5", "q,v"}, {"mt5", "q,v"}, {"bart", "q_proj,v_proj"}, {"gpt2", "c_attn"},
    {"bloom", "query_key_value"}, {"blip-2", "q,v,q_proj,v_proj"}, {"opt", "q_proj,v_proj"},
    {"gptj", "q_proj,v_proj"}, {"gpt_neox", "query_key_value"}, {"gpt_neo", "q_proj,v_proj"},
    {"bert", "query,value"}, {"roberta", "query,value"}, {"xlm-roberta", "query,value"},
    {"electra", "query,value"}, {"deberta-v2", "query_proj,value_proj"}, {"deberta", "in_proj"},
    {"layoutlm", "query,value"}, {"llama", "q_proj,v_proj"}, {"llama4", "q_proj,v_proj"},
    {"chatglm", "query_key_value"}, {"gpt_bigcode", "c_attn"}, {"mpt", "Wqkv"},
    {"RefinedWebModel", "query_key_value"}, {"RefinedWeb", "query_key_value"}, {"falcon", "query_key_value"},
    {"btlm", "c_proj,c_attn"}, {"codegen", "qkv_proj"}, {"mistral", "q_proj,v_proj"},
    {"mixtral", "q_proj,v_proj"}, {"stablelm", "q_proj,v_proj"}, {"phi", "q_proj,v_proj,fc1,fc2"},
    {"gemma", "q_proj,v_proj"}, {"gemma2", "q_proj,v_proj"}, {"gemma3_text", "q_proj,v_proj"},
    {"gemma4", "~.*language_model\\..*\\.(q_proj|v_proj)"}, {"qwen2", "q_proj,v_proj"},
    {"qwen3", "q_proj,v_proj"}, {"nemotron_h", "q_proj,k_proj,v_proj,o_proj"},
    {"rwkv", "key,value,receptance,output"}, {"rwkv7", "r_proj,k_proj,v_proj,o_proj,key,value"},
    {NULL, NULL},
};

static const default_map ADALORA_TARGETS[] = {
    {"t5", "q,k,v,o,wi,wo"}, {"mt5", "q,k,v,o,wi_0,wi_1,wo"}, {"bart", "q_proj,k_proj,v_proj,out_proj,fc1,fc2"},
    {"gpt2", "c_attn"}, {"bloom", "query_key_value"}, {"opt", "q_proj,k_proj,v_proj,out_proj,fc1,fc2"},
    {"gptj", "q_proj,v_proj"}, {"gpt_neox", "query_key_value"}, {"gpt_neo", "q_proj,v_proj"},
    {"llama", "q_proj,v_proj"}, {"llama4", "q_proj,v_proj"}, {"bert", "query,value"},
    {"roberta", "query,key,value,dense"}, {"deberta-v2", "query_proj,key_proj,value_proj,dense"},
    {"gpt_bigcode", "c_attn"}, {"deberta", "in_proj"}, {"gemma", "q_proj,v_proj"}, {"gemma2", "q_proj,v_proj"},
    {"gemma3_text", "q_proj,v_proj"}, {"gemma4", "~.*language_model\\..*\\.(q_proj|v_proj)"},
    {"qwen2", "q_proj,v_proj"}, {"qwen3", "q_proj,v_proj"}, {"nemotron_h", "q_proj,k_proj,v_proj,o_proj"},
    {NULL, NULL},
};

static const default_map IA3_TARGETS[] = {
    {"t5", "k,v,wo"}, {"mt5", "k,v,wi_1"}, {"gpt2", "c_attn,mlp.c_proj"},
    {"bloom", "query_key_value,mlp.dense_4h_to_h"}, {"roberta", "key,value,output.dense"},
    {"opt", "q_proj,k_proj,fc2"}, {"gptj", "q_proj,v_proj,fc_out"}, {"gpt_neox", "query_key_value,dense_4h_to_h"},
    {"gpt_neo", "q_proj,v_proj,c_proj"}, {"bart", "q_proj,v_proj,fc2"}, {"gpt_bigcode", "c_attn,mlp.c_proj"},
    {"llama", "k_proj,v_proj,down_proj"}, {"llama4", "q_proj,v_proj,down_proj"},
    {"mistral", "k_proj,v_proj,down_proj"}, {"mixtral", "k_proj,v_proj,w2"}, {"bert", "key,value,output.dense"},
    {"deberta-v2", "key_proj,value_proj,output.dense"}, {"deberta", "in_proj,output.dense"},
    {"RefinedWebModel", "query_key_value,dense_4h_to_h"}, {"RefinedWeb", "query_key_value,dense_4h_to_h"},
    {"falcon", "query_key_value,dense_4h_to_h"}, {"phi", "q_proj,v_proj,fc2"}, {"gemma", "q_proj,v_proj,down_proj"},
    {"gemma2", "q_proj,v_proj,down_proj"}, {"gemma3_text", "q_proj,v_proj,down_proj"},
    {"qwen2", "q_proj,v_proj,down_proj"}, {"qwen3", "q_proj,v_proj,down_proj"},
    {NULL, NULL},
};

static const default_map IA3_FEEDFORWARD[] = {
    {"t5", "wo"}, {"mt5", ""}, {"gpt2", "mlp.c_proj"}, {"bloom", "mlp.dense_4h_to_h"}, {"roberta", "output.dense"},
    {"opt", "fc2"}, {"gptj", "fc_out"}, {"gpt_neox", "dense_4h_to_h"}, {"gpt_neo", "c_proj"}, {"bart", "fc2"},
    {"gpt_bigcode", "mlp.c_proj"}, {"llama", "down_proj"}, {"llama4", "down_proj"}, {"mistral", "down_proj"},
    {"mixtral", "w2"}, {"bert", "output.dense"}, {"deberta-v2", "output.dense"}, {"deberta", "output.dense"},
    {"RefinedWeb", "dense_4h_to_h"}, {"RefinedWebModel", "dense_4h_to_h"}, {"falcon", "dense_4h_to_h"},
    {"phi", "fc2"}, {"gemma", "down_proj"}, {"gemma2", "down_proj"}, {"gemma3_text", "down_proj"},
    {"qwen2", "down_proj"}, {"qwen3", "down_proj"},
    {NULL, NULL},
};

static const char *map_lookup(const default_map *map, const char *model) {
    for (int i = 0; map[i].model; i++)
        if (strcmp(map[i].model, model) == 0) return map[i].list;
    return NULL;
}

static int spec_from_default(pc_spec *s, const char *list) {
    if (list[0] == '~') return pc_spec_set_string(s, list + 1);
    const char *items[16];
    char buf[256];
    size_t n = 0;
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && n < 16; tok = strtok_r(NULL, ",", &save))
        items[n++] = tok;
    return pc_spec_set_list(s, items, n);
}

/* sets the null `field` to PEFT's default for model_type from `map` */
static int fill_from_default(pc_spec *spec, const char *field, const default_map *map, const char *model_type,
                             char *err, size_t errlen) {
    const char *src = PC_ADAPTER_CONFIG_NAME;
    const char *list = map_lookup(map, model_type);
    if (!list)
        return pc_errf(err, errlen,
                       "%s: field \"%s\" is null and PEFT has no default for model_type \"%s\"; please specify %s",
                       src, field, model_type, field);
    if (spec_from_default(spec, list)) return pc_errf(err, errlen, "%s: out of memory", src);
    return 0;
}

int pc_adapter_config_fill_default_targets(pc_adapter_config *cfg, const char *model_type, char *err,
                                           size_t errlen) {
    const char *src = PC_ADAPTER_CONFIG_NAME;
    if (!cfg || !model_type) {
        pc_errf(err, errlen, "%s: no config or model type", src);
        return -1;
    }
    const default_map *targets = NULL;
    switch (cfg->peft_type) {
    case PC_PEFT_LORA:
    case PC_PEFT_LOHA:
    case PC_PEFT_LOKR: targets = LORA_TARGETS; break;
    case PC_PEFT_ADALORA: targets = ADALORA_TARGETS; break;
    case PC_PEFT_IA3: targets = IA3_TARGETS; break;
    default:
        pc_errf(err, errlen, "%s: peft_type %s has no %s", src, pc_adapter_config_type_name(cfg),
                cfg->peft_type == PC_PEFT_CUSTOM ? "per-model default target modules; set target_modules"
                                                 : "target modules");
        return -1;
    }
    if (cfg->target_modules.kind == PC_SPEC_NULL &&
        fill_from_default(&cfg->target_modules, "target_modules", targets, model_type, err, errlen))
        return -1;
    if (cfg->peft_type == PC_PEFT_IA3 && cfg->ia3.feedforward_modules.kind == PC_SPEC_NULL &&
        fill_from_default(&cfg->ia3.feedforward_modules, "feedforward_modules", IA3_FEEDFORWARD, model_type, err,
                          errlen))
        return -1;
    return 0;
}
