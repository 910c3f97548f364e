/* peftc combine: PEFT's add_weighted_adapter over adapter directories (drivers/combine.h). */
#include "drivers/combine.h"
#include "drivers/combine_math.h"
#include "frontend/family.h"
#include "runtime/adapter_io.h"
#include "runtime/fileio.h"
#include "runtime/target_match.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_PREFIX "base_model.model." /* PEFT's file keys: KEY_PREFIX <module> "." <tensor> */

/* an input as read */
typedef struct {
    const pc_combine_input *in;
    pc_adapter_files f;
    pc_target_matcher *match;
    char src[4200]; /* "adapter 'NAME' (DIR)" for messages */
} input;

/* a module of the union, with each input's tensors on it (NULL where the input lacks it) */
typedef struct {
    char *name;
    int in, out; /* LoRA: A [r, in], B [out, r]; IA3: ia3_l shape [out, in] as stored */
    const pc_st_tensor **a, **b; /* [ninputs]; IA3 uses a only */
} module;

typedef struct {
    input *in;
    int n;
    module *mods;
    int nmods, capmods;
    pc_combined *out;
    char *err;
    size_t errlen;
} combiner;

static int fail(combiner *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(combiner *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static module *find_module(combiner *c, const char *name) {
    for (int i = 0; i < c->nmods; i++)
        if (!strcmp(c->mods[i].name, name)) return &c->mods[i];
    return NULL;
}

static module *add_module(combiner *c, const char *name) {
    module *m = find_module(c, name);
    if (m) return m;
    if (c->nmods == c->capmods) {
        int cap = c->capmods ? 2 * c->capmods : 32;
        module *p = realloc(c->mods, sizeof *p * (size_t)cap);
        if (!p) return NULL;
        c->mods = p, c->capmods = cap;
    }
    m = &c->mods[c->nmods];
    *m = (module){.name = strdup(name), .a = calloc((size_t)c->n, sizeof *m->a),
                  .b = calloc((size_t)c->n, sizeof *m->b)};
    if (!m->name || !m->a || !m->b) return free(m->name), free(m->a), free(m->b), NULL;
    c->nmods++;
    return m;
}

static int add_tensor(combiner *c, const char *key, pc_shape shape, float **data) {
    pc_combined *o = c->out;
    pc_combined_tensor *p = realloc(o->tensors, sizeof *p * (size_t)(o->ntensors + 1));
    if (!p) return fail(c, "out of memory");
    o->tensors = p;
    size_t n = 1;
    for (int i = 0; i < shape.rank; i++) n *= (size_t)shape.dim[i];
    pc_combined_tensor *t = &p[o->ntensors];
    *t = (pc_combined_tensor){.key = strdup(key), .shape = shape, .data = calloc(n ? n : 1, sizeof(float))};
    if (!t->key || !t->data) return free(t->key), free(t->data), fail(c, "out of memory");
    o->ntensors++;
    *data = t->data;
    return 0;
}

static int warn(combiner *c, const char *msg) {
    pc_combined *o = c->out;
    char **p = realloc(o->warnings, sizeof *p * (size_t)(o->nwarnings + 1));
    if (!p) return fail(c, "out of memory");
    o->warnings = p;
    if (!(p[o->nwarnings] = strdup(msg))) return fail(c, "out of memory");
    o->nwarnings++;
    return 0;
}

/* ---- inputs: read, methods checked, modules collected ---- */

/* PEFT's reasons for the methods add_weighted_adapter does not take */
static const char *refusal(const pc_adapter_config *cfg) {
    switch (cfg->peft_type) {
    case PC_PEFT_LORA:
    case PC_PEFT_IA3: return NULL;
    case PC_PEFT_LOHA: return "PEFT 0.21's LoHaModel has no add_weighted_adapter (only LoRA and IA3 adapters combine)";
    case PC_PEFT_LOKR: return "PEFT 0.21's LoKrModel has no add_weighted_adapter (only LoRA and IA3 adapters combine)";
    case PC_PEFT_ADALORA: return "PEFT's AdaLoraModel does not support add_weighted_adapter (use LoRA)";
    default: return "only LoRA and IA3 adapters combine (PEFT's add_weighted_adapter)";
    }
}

static int lora_checks(combiner *c, const input *x) {
    const pc_adapter_config *cfg = x->f.cfg;
    /* what PEFT would accept but lose: its new adapter is created fresh and only lora_A/lora_B
     * are written into it */
    if (cfg->lora.use_dora)
        return fail(c, "%s: field \"use_dora\": true: PEFT's add_weighted_adapter combines lora_A/lora_B only; the "
                    "result's DoRA magnitudes would be the base weights' norms, not the inputs'", x->src);
    if (cfg->lora.lora_bias)
        return fail(c, "%s: field \"lora_bias\": true: PEFT's add_weighted_adapter drops lora_B.bias", x->src);
    if (cfg->modules_to_save.kind != PC_SPEC_NULL)
        return fail(c, "%s: field \"modules_to_save\": PEFT's add_weighted_adapter does not combine saved modules",
                    x->src);
    return 0;
}

/* module name of "base_model.model.<module>.<suffix>", or NULL */
static int split_key(const char *key, const char *suffix, char *mod, size_t cap) {
    size_t lp = strlen(KEY_PREFIX), lk = strlen(key), ls = strlen(suffix);
    if (lk <= lp + ls + 1 || strncmp(key, KEY_PREFIX, lp) || strcmp(key + lk - ls, suffix) || key[lk - ls - 1] != '.')
        return 0;
    size_t n = lk - lp - ls - 1;
    if (n >= cap) return 0;
    memcpy(mod, key + lp, n);
    mod[n] = 0;
    return 1;
}

static int collect(combiner *c, int i, bool ia3) {
    input *x = &c->in[i];
    const pc_st_file *f = x->f.weights;
    for (int k = 0; k < pc_st_count(f); k++) {
        const pc_st_tensor *t = pc_st_get(f, k);
        char mod[1024];
        int which = 0; /* 1: ia3_l or lora_A, 2: lora_B */
        if (ia3) which = split_key(t->name, "ia3_l", mod, sizeof mod);
        else if (split_key(t->name, "lora_A.weight", mod, sizeof mod)) which = 1;
        else if (split_key(t->name, "lora_B.weight", mod, sizeof mod)) which = 2;
        if (!which)
            return fail(c, "%s: %s: tensor \"%s\" is not one peftc combines (%s)", x->src, pc_st_path(f), t->name,
                        ia3 ? "IA3: <module>.ia3_l" : "LoRA: <module>.lora_A.weight and lora_B.weight");
        if (t->shape.rank != 2)
            return fail(c, "%s: %s: tensor \"%s\" has rank %d, expected 2", x->src, pc_st_path(f), t->name,
                        t->shape.rank);
        int hit = pc_target_match(x->match, mod);
        if (hit != 1)
            return fail(c, "%s: %s: tensor \"%s\": module '%s' is not targeted by the adapter's config (field "
                        "\"target_modules\")", x->src, pc_st_path(f), t->name, mod);
        module *m = add_module(c, mod);
        if (!m) return fail(c, "out of memory");
        if (which == 2) m->b[i] = t;
        else m->a[i] = t;
    }
    return 0;
}

/* every input's tensors of a module agree with each other and across inputs */
static int check_module(combiner *c, module *m, bool ia3) {
    int first = -1;
    for (int i = 0; i < c->n; i++) {
        const input *x = &c->in[i];
        const pc_st_tensor *a = m->a[i], *b = m->b[i];
        if (!a && !b) continue;
        if (!ia3 && (!a || !b))
            return fail(c, "%s: %s: module '%s' has lora_%s.weight but no lora_%s.weight", x->src,
                        pc_st_path(x->f.weights), m->name, a ? "A" : "B", a ? "B" : "A");
        int in = (int)a->shape.dim[1], out = ia3 ? (int)a->shape.dim[0] : (int)b->shape.dim[0];
        if (!ia3) {
            int r = (int)a->shape.dim[0], rr;
            double alpha;
            if (b->shape.dim[1] != r)
                return fail(c, "%s: %s: module '%s': lora_A.weight has %d rows, lora_B.weight %lld columns", x->src,
                            pc_st_path(x->f.weights), m->name, r, (long long)b->shape.dim[1]);
            if (pc_target_rank_alpha(x->match, m->name, &rr, &alpha) || rr != r)
                return fail(c, "%s: %s: module '%s' has rank %d, its config (field \"r\" / \"rank_pattern\") says %d",
                            x->src, pc_st_path(x->f.weights), m->name, r, rr);
        }
        if (first < 0) {
            first = i, m->in = in, m->out = out;
        } else if (in != m->in || out != m->out) {
            return fail(c, "%s: module '%s' is %s [%d, %d] there but [%d, %d] in %s: adapters for different base "
                        "models",
                        x->src, m->name, ia3 ? "ia3_l" : "(out, in)", out, in, m->out, m->in, c->in[first].src);
        }
    }
    return 0;
}

static double scale_of(const input *x, const char *module) {
    int r;
    double alpha;
    pc_target_rank_alpha(x->match, module, &r, &alpha); /* checked by check_module */
    return x->f.cfg->lora.use_rslora ? alpha / sqrt((double)r) : alpha / (double)r;
}

/* PEFT's adapters_ranks: r, or the largest of r and the rank_pattern values */
static int config_rank(const pc_adapter_config *cfg) {
    int r = cfg->r;
    for (size_t i = 0; i < cfg->rank_pattern.n; i++) {
        int64_t v = pc_num_int64(cfg->rank_pattern.items[i].value);
        if (v > r) r = (int)v;
    }
    return r;
}

/* ---- the result's config ---- */

/* PEFT: regex strings joined "(t1)|(t2)|…", lists (sets) united; a mix is refused */
static int unite_spec(combiner *c, const char *field, const pc_spec *(*get)(const pc_adapter_config *), pc_spec *out) {
    const pc_spec *s0 = get(c->in[0].f.cfg);
    for (int i = 1; i < c->n; i++)
        if (get(c->in[i].f.cfg)->kind != s0->kind)
            return fail(c, "%s: field \"%s\" is a %s, but a %s in %s: PEFT refuses to combine a mix of list and "
                        "string %s", c->in[i].src, field,
                        get(c->in[i].f.cfg)->kind == PC_SPEC_STRING ? "string" : "list",
                        s0->kind == PC_SPEC_STRING ? "string" : "list", c->in[0].src, field);
    if (s0->kind == PC_SPEC_STRING) {
        size_t len = 1;
        for (int i = 0; i < c->n; i++) len += strlen(get(c->in[i].f.cfg)->str) + 3;
        char *s = malloc(len);
        if (!s) return fail(c, "out of memory");
        s[0] = 0;
        for (int i = 0; i < c->n; i++) {
            if (i) strcat(s, "|");
            strcat(s, "("), strcat(s, get(c->in[i].f.cfg)->str), strcat(s, ")");
        }
        int rc = pc_spec_set_string(out, s);
        free(s);
        return rc ? fail(c, "out of memory") : 0;
    }
    if (s0->kind == PC_SPEC_NULL) return fail(c, "%s: field \"%s\" is null", c->in[0].src, field);
    size_t total = 0;
    for (int i = 0; i < c->n; i++) total += get(c->in[i].f.cfg)->n;
    const char **items = malloc(sizeof *items * (total ? total : 1));
    if (!items) return fail(c, "out of memory");
    size_t n = 0;
    for (int i = 0; i < c->n; i++) {
        const pc_spec *s = get(c->in[i].f.cfg);
        for (size_t k = 0; k < s->n; k++) {
            size_t j = 0;
            while (j < n && strcmp(items[j], s->items[k])) j++;
            if (j == n) items[n++] = s->items[k];
        }
    }
    int rc = pc_spec_set_list(out, items, n);
    free(items);
    return rc ? fail(c, "out of memory") : 0;
}

static const pc_spec *get_targets(const pc_adapter_config *cfg) { return &cfg->target_modules; }
static const pc_spec *get_ff(const pc_adapter_config *cfg) { return &cfg->ia3.feedforward_modules; }

/* the first input's config with PEFT's replacements */
static int result_config(combiner *c, bool ia3, int rank) {
    pc_adapter_config *cfg = pc_adapter_config_clone(c->in[0].f.cfg);
    if (!cfg) return fail(c, "out of memory");
    c->out->cfg = cfg;
    for (size_t i = 0; i < cfg->n_warnings; i++) free(cfg->warnings[i]);
    free(cfg->warnings), cfg->warnings = NULL, cfg->n_warnings = 0;
    pc_spec targets = {0}, ff = {0};
    if (unite_spec(c, "target_modules", get_targets, &targets) ||
        (ia3 && unite_spec(c, "feedforward_modules", get_ff, &ff))) {
        pc_spec_clear(&targets), pc_spec_clear(&ff);
        return -1;
    }
    pc_spec_clear(&cfg->target_modules), cfg->target_modules = targets;
    if (ia3) pc_spec_clear(&cfg->ia3.feedforward_modules), cfg->ia3.feedforward_modules = ff;
    else {
        cfg->r = rank;
        cfg->lora.lora_alpha = (pc_num){(double)rank, true, rank};
        pc_pattern_clear(&cfg->rank_pattern, false);
        pc_pattern_clear(&cfg->alpha_pattern, false);
    }
    cfg->inference_mode = true; /* what save_pretrained writes */
    return pc_adapter_config_validate(cfg, "the combined adapter_config.json", c->err, c->errlen);
}

/* ---- the combinations ---- */

static int combine_ia3(combiner *c, const pc_target_matcher *rm) {
    for (int mi = 0; mi < c->nmods; mi++) {
        module *m = &c->mods[mi];
        if (pc_target_match(rm, m->name) != 1) continue; /* reported by the caller */
        char key[1200];
        snprintf(key, sizeof key, KEY_PREFIX "%s.ia3_l", m->name);
        float *l;
        pc_shape sh = {2, {m->out, m->in}};
        if (add_tensor(c, key, sh, &l)) return -1;
        size_t n = (size_t)m->out * m->in;
        float *tmp = malloc(n * sizeof *tmp);
        if (!tmp) return fail(c, "out of memory");
        for (int i = 0; i < c->n; i++) {
            if (!m->a[i]) continue;
            if (pc_st_to_f32(c->in[i].f.weights, m->a[i], tmp, c->err, c->errlen)) return free(tmp), -1;
            float w = (float)c->in[i].in->weight; /* target += l * weight */
            for (size_t k = 0; k < n; k++) l[k] += tmp[k] * w;
        }
        free(tmp);
        c->out->nmodules++;
    }
    return 0;
}

/* family: "cat", "linear" (with ties, dare_*, magnitude_prune) or "svd" (with their *_svd) */
static int combine_lora(combiner *c, const pc_target_matcher *rm, const char *family, const pc_task_merge *mk,
                        int rank, double clamp) {
    pc_lora_term *terms = malloc(sizeof *terms * (size_t)c->n);
    float **bufs = calloc((size_t)c->n * 2, sizeof *bufs);
    int rc = terms && bufs ? 0 : fail(c, "out of memory");
    for (int mi = 0; !rc && mi < c->nmods; mi++) {
        module *m = &c->mods[mi];
        if (pc_target_match(rm, m->name) != 1) continue;
        int nt = 0;
        for (int i = 0; !rc && i < c->n; i++) {
            if (!m->a[i]) continue;
            int r = (int)m->a[i]->shape.dim[0];
            float *A = realloc(bufs[2 * i], sizeof(float) * (size_t)r * m->in);
            if (A) bufs[2 * i] = A;
            float *B = realloc(bufs[2 * i + 1], sizeof(float) * (size_t)m->out * r);
            if (B) bufs[2 * i + 1] = B;
            if (!A || !B) rc = fail(c, "out of memory");
            else if (pc_st_to_f32(c->in[i].f.weights, m->a[i], A, c->err, c->errlen) ||
                     pc_st_to_f32(c->in[i].f.weights, m->b[i], B, c->err, c->errlen))
                rc = -1;
            else
                terms[nt++] = (pc_lora_term){A, B, r, scale_of(&c->in[i], m->name), c->in[i].in->weight};
        }
        if (rc) break;
        int tr = rank;
        if (!strcmp(family, "linear")) {
            for (int k = 0; k < nt; k++)
                if (terms[k].r != rank) {
                    rc = fail(c, "module '%s' has rank %d in one input, but %s needs every module at rank %d "
                              "(PEFT stacks the A and B tensors; use cat or svd)", m->name, terms[k].r,
                              c->out->type, rank);
                    break;
                }
            if (rc) break;
        }
        if (!strcmp(family, "svd") && rank > (m->in < m->out ? m->in : m->out)) {
            rc = fail(c, "--svd-rank %d is larger than module '%s' allows (min(out %d, in %d)); PEFT's SVD would give "
                      "factors of inconsistent shapes", rank, m->name, m->out, m->in);
            break;
        }
        char ka[1200], kb[1200];
        snprintf(ka, sizeof ka, KEY_PREFIX "%s.lora_A.weight", m->name);
        snprintf(kb, sizeof kb, KEY_PREFIX "%s.lora_B.weight", m->name);
        float *A, *B;
        if (add_tensor(c, ka, (pc_shape){2, {tr, m->in}}, &A) || add_tensor(c, kb, (pc_shape){2, {m->out, tr}}, &B)) {
            rc = -1;
            break;
        }
        if (!strcmp(family, "cat")) {
            pc_combine_cat(terms, nt, m->in, m->out, tr, A, B);
        } else if (!strcmp(family, "linear")) {
            if (pc_combine_linear(terms, nt, m->in, m->out, tr, mk, (uint64_t)mi, A, B)) {
                rc = fail(c, "out of memory");
                break;
            }
        } else if (pc_combine_svd(terms, nt, m->in, m->out, tr, mk, (uint64_t)mi, clamp, A, B, c->err, c->errlen)) {
            char why[1024];
            snprintf(why, sizeof why, "%s", c->err);
            rc = fail(c, "module '%s': %s", m->name, why);
            break;
        }
        c->out->nmodules++;
    }
    if (bufs)
        for (int i = 0; i < 2 * c->n; i++) free(bufs[i]);
    free(bufs), free(terms);
    return rc;
}

/* ---- the entry point ---- */

static int run(combiner *c, const pc_combine_opts *o) {
    for (int i = 0; i < c->n; i++) {
        const pc_combine_input *in = &c->in[i].in[0];
        if (!isfinite(in->weight)) return fail(c, "adapter '%s': weight %g is not finite", in->name, in->weight);
        for (int j = 0; j < i; j++)
            if (!strcmp(c->in[j].in->name, in->name))
                return fail(c, "adapter name '%s' is given twice (%s and %s)", in->name, c->in[j].in->dir, in->dir);
    }
    for (int i = 0; i < c->n; i++) {
        input *x = &c->in[i];
        snprintf(x->src, sizeof x->src, "adapter '%s' (%s)", x->in->name, x->in->dir);
        char why[4096];
        if (pc_adapter_load(x->in->dir, &x->f, why, sizeof why)) return fail(c, "%s: %s", x->src, why);
        if (!x->f.weights) return fail(c, "%s: not an adapter directory (a config file alone has no weights)", x->src);
        const char *no = refusal(x->f.cfg);
        if (no) return fail(c, "%s: field \"peft_type\": %s: %s", x->src, pc_adapter_config_type_name(x->f.cfg), no);
        if (x->f.cfg->peft_type != c->in[0].f.cfg->peft_type)
            return fail(c, "%s: field \"peft_type\": %s, but %s is %s: adapters of different methods do not combine",
                        x->src, pc_adapter_config_type_name(x->f.cfg), c->in[0].src,
                        pc_adapter_config_type_name(c->in[0].f.cfg));
        const char *b0 = c->in[0].f.cfg->base_model_name_or_path, *bi = x->f.cfg->base_model_name_or_path;
        if (b0 && bi && strcmp(b0, bi))
            return fail(c, "%s: field \"base_model_name_or_path\": \"%s\", but %s was trained on \"%s\": adapters for "
                        "different base models", x->src, bi, c->in[0].src, b0);
        if (x->f.cfg->peft_type == PC_PEFT_LORA && lora_checks(c, x)) return -1;
        if (!(x->match = pc_target_matcher_new(x->f.cfg, why, sizeof why))) return fail(c, "%s: %s", x->src, why);
    }
    bool ia3 = c->in[0].f.cfg->peft_type == PC_PEFT_IA3;
    const char *type = o->type, *family = NULL;
    pc_task_merge mk = {.kind = PC_MERGE_SUM, .density = o->density, .frequency = o->frequency, .seed = o->seed};
    if (ia3) {
        if (type && strcmp(type, "linear"))
            return fail(c, "--type %s: PEFT's IA3 add_weighted_adapter has one combination, the weighted sum "
                        "(--type linear or none)", type);
        if (o->svd_rank > 0 || o->clamp || o->pruned || o->frequency)
            return fail(c, "--svd-rank, --svd-clamp, --density and --majority-sign-method do not apply to IA3 (PEFT's "
                        "IA3 add_weighted_adapter is a weighted sum)");
        type = "weighted sum";
    } else {
        /* PEFT's combination types: the family and the merge_utils function */
        static const struct {
            const char *name, *family;
            pc_merge_kind kind;
        } known[] = {{"cat", "cat", PC_MERGE_SUM},
                     {"linear", "linear", PC_MERGE_SUM},
                     {"svd", "svd", PC_MERGE_SUM},
                     {"ties", "linear", PC_MERGE_TIES},
                     {"ties_svd", "svd", PC_MERGE_TIES},
                     {"dare_linear", "linear", PC_MERGE_DARE_LINEAR},
                     {"dare_linear_svd", "svd", PC_MERGE_DARE_LINEAR},
                     {"dare_ties", "linear", PC_MERGE_DARE_TIES},
                     {"dare_ties_svd", "svd", PC_MERGE_DARE_TIES},
                     {"magnitude_prune", "linear", PC_MERGE_MAGNITUDE},
                     {"magnitude_prune_svd", "svd", PC_MERGE_MAGNITUDE}};
        if (!type) type = "svd";
        size_t k = 0;
        while (k < sizeof known / sizeof *known && strcmp(known[k].name, type)) k++;
        if (k == sizeof known / sizeof *known)
            return fail(c, "--type %s: unknown combination type (PEFT's: cat, linear, svd, ties, ties_svd, dare_ties, "
                        "dare_linear, dare_ties_svd, dare_linear_svd, magnitude_prune, magnitude_prune_svd)", type);
        if (c->n == 1) k = 1; /* PEFT: one adapter can only be merged linearly */
        type = known[k].name, family = known[k].family, mk.kind = known[k].kind;
        if (strcmp(family, "svd") && (o->svd_rank > 0 || o->clamp) && c->n > 1)
            return fail(c, "--svd-rank / --svd-clamp apply to the svd types only, not %s", type);
        bool pruned = mk.kind != PC_MERGE_SUM;
        if (pruned && !o->pruned)
            return fail(c, "--type %s needs --density (the fraction of entries kept, in [0, 1])", type);
        if (!pruned && o->pruned && c->n > 1)
            return fail(c, "--density applies to ties, dare_* and magnitude_prune types, not %s", type);
        if (o->frequency && mk.kind != PC_MERGE_TIES && mk.kind != PC_MERGE_DARE_TIES && c->n > 1)
            return fail(c, "--majority-sign-method applies to the ties and dare_ties types, not %s", type);
    }
    c->out->type = type;
    for (int i = 0; i < c->n; i++)
        if (collect(c, i, ia3)) return -1;
    for (int m = 0; m < c->nmods; m++)
        if (check_module(c, &c->mods[m], ia3)) return -1;
    if (!c->nmods) return fail(c, "the adapters hold no tensors to combine");

    int rank = 0;
    if (!ia3) {
        for (int i = 0; i < c->n; i++) {
            int r = config_rank(c->in[i].f.cfg);
            if (!strcmp(family, "linear") && i > 0 && r != rank)
                return fail(c, "%s: rank %d (fields \"r\" and \"rank_pattern\"), but %s has %d: %s needs equal "
                            "ranks (PEFT's rule; use cat or svd)", c->in[i].src, r, c->in[0].src, rank, type);
            if (!strcmp(family, "cat")) rank += r;
            else if (r > rank) rank = r;
        }
        if (!strcmp(family, "svd") && o->svd_rank > 0) rank = o->svd_rank;
    }
    if (result_config(c, ia3, rank)) return -1;
    char why[1024];
    pc_target_matcher *rm = pc_target_matcher_new(c->out->cfg, why, sizeof why);
    if (!rm) return fail(c, "the combined config: %s", why);
    /* PEFT injects the new adapter where the first input's config, with the united targets,
     * matches, and drops the other modules (e.g. another input's layers_to_transform) */
    int rc = 0;
    for (int m = 0; !rc && m < c->nmods; m++)
        if (pc_target_match(rm, c->mods[m].name) != 1) {
            snprintf(why, sizeof why, "module '%s' is not targeted by the combined config (the first adapter's "
                     "exclude/layer fields with the united target_modules); PEFT drops it too", c->mods[m].name);
            rc = warn(c, why);
        }
    if (!rc) rc = ia3 ? combine_ia3(c, rm) : combine_lora(c, rm, family, &mk, rank, o->clamp ? o->svd_clamp : -1);
    pc_target_matcher_free(rm);
    if (!rc && !c->out->nmodules) rc = fail(c, "no module of the adapters is targeted by the combined config");
    return rc;
}

int pc_combine(const pc_combine_input *in, int n, const pc_combine_opts *o, pc_combined *out, char *err,
               size_t errlen) {
    *out = (pc_combined){0};
    if (n < 1) return pc_errf(err, errlen, "no adapter to combine");
    if ((o->clamp && !(o->svd_clamp >= 0 && o->svd_clamp <= 1)) || o->svd_rank < 0 || (o->pruned && !(o->density >= 0)))
        return pc_errf(err, errlen, "--svd-clamp must be in [0, 1], --svd-rank positive and --density >= 0");
    combiner c = {.in = calloc((size_t)n, sizeof *c.in), .n = n, .out = out, .err = err, .errlen = errlen};
    if (!c.in) return pc_errf(err, errlen, "out of memory");
    for (int i = 0; i < n; i++) c.in[i].in = &in[i];
    int rc = run(&c, o);
    for (int i = 0; i < n; i++) pc_adapter_close(&c.in[i].f), pc_target_matcher_free(c.in[i].match);
    for (int m = 0; m < c.nmods; m++) free(c.mods[m].name), free(c.mods[m].a), free(c.mods[m].b);
    free(c.mods), free(c.in);
    if (rc) pc_combined_free(out);
    return rc;
}

const pc_combined_tensor *pc_combined_find(const pc_combined *c, const char *key) {
    for (int i = 0; i < c->ntensors; i++)
        if (!strcmp(c->tensors[i].key, key)) return &c->tensors[i];
    return NULL;
}

int pc_combined_check_model(const pc_combined *c, const struct pc_model *m, const char *model, char *err,
                            size_t errlen) {
    size_t lp = strlen(KEY_PREFIX);
    for (int i = 0; i < c->ntensors; i++) {
        const pc_combined_tensor *t = &c->tensors[i];
        const char *suf = strstr(t->key, ".lora_A.weight");
        bool ia3 = !suf && (suf = strstr(t->key, ".ia3_l")) != NULL;
        if (!suf) continue; /* lora_B: checked with its lora_A */
        char wkey[1200], bkey[1200];
        snprintf(wkey, sizeof wkey, "%.*s.weight", (int)(suf - t->key - lp), t->key + lp);
        pc_shape sh;
        if (!pc_model_weight(m, wkey, &sh))
            return pc_errf(err, errlen, "--model %s: the adapters' module '%.*s' is not in the model (no \"%s\"): "
                           "adapters for a different base model", model, (int)(suf - t->key - lp), t->key + lp, wkey);
        if (ia3) continue;
        snprintf(bkey, sizeof bkey, "%.*s.lora_B.weight", (int)(suf - t->key), t->key);
        const pc_combined_tensor *b = pc_combined_find(c, bkey);
        int64_t out = b ? b->shape.dim[0] : -1, in = t->shape.dim[1];
        if (sh.rank != 2 || sh.dim[0] != out || sh.dim[1] != in)
            return pc_errf(err, errlen, "--model %s: \"%s\" is [%lld, %lld], but the adapters' lora_B/lora_A make "
                           "[%lld, %lld]: adapters for a different base model", model, wkey, (long long)sh.dim[0],
                           (long long)(sh.rank > 1 ? sh.dim[1] : 0), (long long)out, (long long)in);
    }
    return 0;
}

int pc_combined_save(const pc_combined *c, const char *dir, char *err, size_t errlen) {
    pc_st_writer *w = pc_st_writer_new();
    if (!w) return pc_errf(err, errlen, "out of memory");
    int rc = pc_st_writer_meta(w, "format", "pt", err, errlen); /* what PEFT's file carries */
    for (int i = 0; !rc && i < c->ntensors; i++)
        rc = pc_st_writer_add(w, c->tensors[i].key, PC_F32, c->tensors[i].shape, c->tensors[i].data, err, errlen);
    if (!rc) rc = pc_adapter_save(dir, c->cfg, w, err, errlen);
    pc_st_writer_free(w);
    return rc;
}

void pc_combined_free(pc_combined *c) {
    pc_adapter_config_free(c->cfg);
    for (int i = 0; i < c->ntensors; i++) free(c->tensors[i].key), free(c->tensors[i].data);
    for (int i = 0; i < c->nwarnings; i++) free(c->warnings[i]);
    free(c->tensors), free(c->warnings);
    *c = (pc_combined){0};
}
