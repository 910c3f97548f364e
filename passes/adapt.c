/* Applying an adapter method to a graph (see adapt.h and include/peftc/adapter.h). */
#include "passes/adapt.h"
#include "ir/ir.h"
#include "runtime/fileio.h"
#include "runtime/target_match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pc_adapt_ctx {
    const pc_adapter_method *m;
    const pc_adapter_config *cfg;
    const char *source;
    pc_adapt_mode mode;
    bool trainable;
    bool training_run;
    pc_model_info info;
    pc_target_matcher *tm; /* NULL for methods that target no modules */
    void *state;
    int nrewritten;
    /* why the last pc_adapt_targets failed (the regex engine's message and the pattern): the
     * methods report "matching module 'X' failed" and pc_adapt_site adds this */
    char match_why[512];
    int (*tokenize)(void *ctx, const char *text, int32_t *ids, int cap);
    void *tokenize_ctx;
    uint64_t seed;
    int task; /* pc_adapt_task */
    /* a member of a mixed application: its params are keyed "<name>/<PEFT key>" (NULL: plain) */
    const char *name;
    /* a mixed application (rewrite_mixed): its members, owned */
    pc_adapt_ctx **members;
    int nmembers;
};

pc_adapt_ctx *pc_adapt_new(const pc_adapter_method *m, const pc_adapter_config *cfg, const char *source,
                           pc_adapt_mode mode, bool trainable, const pc_model_info *info, char *err, size_t errlen) {
    if (!m || !m->rewrite || !cfg) { pc_errf(err, errlen, "adapter: no method or config"); return NULL; }
    pc_adapt_ctx *cx = calloc(1, sizeof *cx);
    if (!cx || (m->state_size && !(cx->state = calloc(1, m->state_size)))) {
        free(cx);
        pc_errf(err, errlen, "out of memory");
        return NULL;
    }
    *cx = (pc_adapt_ctx){.m = m, .cfg = cfg, .source = source ? source : PC_ADAPTER_CONFIG_NAME, .mode = mode,
                         .trainable = trainable, .state = cx->state};
    if (info) cx->info = *info;
    char msg[1024] = "";
    /* layer-wrapping methods (and user methods) target modules the PEFT way */
    if (cfg->target_modules.kind != PC_SPEC_NULL && !pc_peft_type_is_prompt_learning(cfg->peft_type) &&
        !(cx->tm = pc_target_matcher_new(cfg, msg, sizeof msg))) {
        pc_errf(err, errlen, "%s: %s", cx->source, msg);
        pc_adapt_free(cx);
        return NULL;
    }
    if (m->begin && m->begin(cx, cx->state, msg, sizeof msg)) {
        pc_errf(err, errlen, "%s: %s", cx->source, msg[0] ? msg : "invalid config");
        pc_adapt_free(cx);
        return NULL;
    }
    return cx;
}

pc_adapt_ctx *pc_adapt_new_mixed(pc_adapt_ctx **members, int n, const char *const *names, char *err, size_t errlen) {
    pc_adapt_ctx *cx = NULL;
    const pc_adapter_method *m = n > 0 && members[0] ? members[0]->m : NULL;
    if (!m) { pc_errf(err, errlen, "a mixed batch needs at least one adapter"); goto fail; }
    for (int i = 1; i < n; i++)
        if (members[i]->m != m) {
            pc_errf(err, errlen, "adapters '%s' (%s) and '%s' (%s) cannot be mixed in one batch: their methods differ",
                    names[0], m->name, names[i], members[i]->m->name);
            goto fail;
        }
    if (!m->rewrite_mixed) {
        pc_errf(err, errlen, "%s cannot be mixed in one batch: the method has no per-row form (adapters %s%s); "
                "select one with --active", m->name, names[0], n > 1 ? ", ..." : "");
        goto fail;
    }
    if (!(cx = calloc(1, sizeof *cx)) || (m->state_size && !(cx->state = calloc(1, m->state_size)))) {
        pc_errf(err, errlen, "out of memory");
        goto fail;
    }
    *cx = (pc_adapt_ctx){.m = m, .cfg = members[0]->cfg, .source = members[0]->source, .mode = members[0]->mode,
                         .info = members[0]->info, .state = cx->state, .members = members, .nmembers = n};
    for (int i = 0; i < n; i++) members[i]->name = names[i];
    return cx;
fail:
    for (int i = 0; i < n; i++) pc_adapt_free(members[i]);
    free(members);
    if (cx) free(cx->state);
    free(cx);
    return NULL;
}

int pc_adapt_members(const pc_adapt_ctx *cx) { return cx->nmembers; }
pc_adapt_ctx *pc_adapt_member(pc_adapt_ctx *cx, int i) { return i >= 0 && i < cx->nmembers ? cx->members[i] : NULL; }

pc_val pc_adapt_rows(pc_adapt_ctx *cx, const pc_site *s, const pc_val *per_member, int64_t batch) {
    pc_graph *g = s->g;
    const int n = cx->nmembers + 1;
    pc_shape sh = pc_val_shape(g, per_member[0]);
    int64_t numel = pc_shape_numel(sh);
    pc_val *flat = malloc((size_t)n * sizeof *flat);
    if (!flat) return pc_fail(g, s->loc, "out of memory");
    for (int i = 0; i < n; i++) {
        if (!pc_shape_eq(pc_val_shape(g, per_member[i]), sh)) {
            free(flat);
            return pc_fail(g, s->loc, "%s: the per-row tensors of a mixed batch differ in shape", s->module);
        }
        flat[i] = pc_reshape_at(g, s->loc, per_member[i], PC_SHAPE(1, numel));
    }
    pc_val stack = pc_concat_at(g, s->loc, n, flat, 0); /* [N+1, numel]: weights only, folded once */
    free(flat);
    pc_val ids = pc_lookup(g, "adapter_ids");
    if (ids == PC_NONE) ids = pc_input_at(g, s->loc, "adapter_ids", PC_I32, PC_SHAPE(batch));
    const pc_value *iv = pc_v(g, ids);
    if (iv->op != PC_OP_input || iv->dtype != PC_I32 || iv->shape.rank != 1 || iv->shape.dim[0] != batch)
        return pc_fail(g, s->loc, "%%adapter_ids is not an i32[%lld] input", (long long)batch);
    pc_shape out = {.rank = sh.rank + 1};
    out.dim[0] = batch;
    for (int d = 0; d < sh.rank; d++) out.dim[d + 1] = sh.dim[d];
    return pc_reshape_at(g, s->loc, pc_embedding_at(g, s->loc, stack, ids), out);
}

void pc_adapt_free(pc_adapt_ctx *cx) {
    if (!cx) return;
    for (int i = 0; i < cx->nmembers; i++) pc_adapt_free(cx->members[i]);
    free(cx->members);
    if (cx->m->end && cx->state && !cx->nmembers) cx->m->end(cx->state);
    pc_target_matcher_free(cx->tm);
    free(cx->state);
    free(cx);
}

void pc_adapt_set_env(pc_adapt_ctx *cx, int (*tokenize)(void *ctx, const char *text, int32_t *ids, int cap),
                      void *tokenize_ctx, uint64_t seed) {
    cx->tokenize = tokenize, cx->tokenize_ctx = tokenize_ctx, cx->seed = seed;
}

int pc_adapt_tokenize(pc_adapt_ctx *cx, const char *text, int32_t *ids, int cap) {
    return cx->tokenize ? cx->tokenize(cx->tokenize_ctx, text, ids, cap) : -1;
}

uint64_t pc_adapt_seed(const pc_adapt_ctx *cx) { return cx->seed; }

void pc_adapt_set_task(pc_adapt_ctx *cx, int task) { cx->task = task; }
int pc_adapt_task(const pc_adapt_ctx *cx) { return cx->task; }

int pc_adapt_site(void *ctx, pc_site *s, char *err, size_t errlen) {
    pc_adapt_ctx *cx = ctx;
    if (!(cx->m->sites & (unsigned)s->kind)) return 0;
    cx->match_why[0] = 0;
    int r = cx->nmembers ? cx->m->rewrite_mixed(cx, cx->state, s, err, errlen) : cx->m->rewrite(cx, cx->state, s, err, errlen);
    if (r < 0 || s->value == PC_NONE || pc_graph_error(s->g)) {
        if (!err[0]) snprintf(err, errlen, "%s: %s", cx->m->name, pc_graph_error(s->g) ? pc_graph_error(s->g) : "rewrite failed");
        size_t n = strlen(err);
        if (cx->match_why[0] && n < errlen) snprintf(err + n, errlen - n, ": %s: %s", cx->source, cx->match_why);
        return -1;
    }
    cx->nrewritten += r > 0;
    return 0;
}

int pc_adapt_finish(pc_adapt_ctx *cx, pc_graph *g, char *err, size_t errlen) {
    char msg[1024] = "";
    if (cx->nmembers) /* the members' own finish checks ran on their own graphs (the session checks each) */
        return cx->nrewritten ? 0 : pc_errf(err, errlen, "%s: the mixed adapters target no module of the model", cx->m->name);
    if (cx->m->finish) {
        if (cx->m->finish(cx, cx->state, cx->nrewritten, msg, sizeof msg))
            return pc_errf(err, errlen, "%s: %s", cx->source, msg[0] ? msg : "invalid adapter");
    } else if (cx->nrewritten == 0) {
        return pc_errf(err, errlen, "%s: %s: target_modules matched no module of the model", cx->source, cx->m->name);
    }
    if (cx->mode != PC_ADAPT_TRAIN || !cx->m->loss_term) return 0;
    pc_val loss = PC_NONE;
    for (int i = 0; i < g->noutputs; i++)
        if (pc_v(g, g->outputs[i])->flags & PC_LOSS) loss = g->outputs[i];
    if (loss == PC_NONE) return 0;
    pc_val t = cx->m->loss_term(cx, cx->state, g, loss, msg, sizeof msg);
    if (t == PC_NONE) return g->error ? pc_errf(err, errlen, "%s: %s", cx->m->name, g->error) : 0;
    /* the method's term joins the task loss; the sum becomes the loss autograd differentiates */
    pc_val total = pc_add(g, loss, t);
    if (g->error) return pc_errf(err, errlen, "%s: loss term: %s", cx->m->name, g->error);
    pc_v(g, loss)->flags &= ~(unsigned)PC_LOSS;
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i] == loss) g->outputs[i] = total;
    pc_v(g, total)->flags |= PC_LOSS | PC_OUTPUT;
    pc_v(g, loss)->flags &= ~(unsigned)PC_OUTPUT;
    /* the sum is what dumps and drivers know as %loss; the task's part becomes %task_loss */
    const char *old = pc_val_name(g, loss);
    if (old && !strcmp(old, "loss") && !pc_set_name(g, loss, "task_loss")) pc_set_name(g, total, "loss");
    return 0;
}

const pc_adapter_method *pc_adapt_method(const pc_adapt_ctx *cx) { return cx->m; }
int pc_adapt_nrewritten(const pc_adapt_ctx *cx) { return cx->nrewritten; }
void *pc_adapt_state(pc_adapt_ctx *cx) { return cx->state; }
const pc_target_matcher *pc_adapt_matcher(const pc_adapt_ctx *cx) { return cx->tm; }
int pc_adapt_virtual_tokens(pc_adapt_ctx *cx) {
    return cx->m->virtual_tokens ? cx->m->virtual_tokens(cx, cx->state) : 0;
}
int pc_adapt_prefix_positions(pc_adapt_ctx *cx) {
    return cx->m->prefix_positions ? cx->m->prefix_positions(cx, cx->state) : 0;
}

/* ---- what callbacks ask ---- */
pc_adapt_mode pc_adapt_get_mode(const pc_adapt_ctx *cx) { return cx->mode; }
bool pc_adapt_trainable(const pc_adapt_ctx *cx) { return cx->trainable; }
bool pc_adapt_training_run(const pc_adapt_ctx *cx) { return cx->trainable || cx->training_run; }
void pc_adapt_set_training_run(pc_adapt_ctx *cx, bool on) { cx->training_run = on; }
const pc_model_info *pc_adapt_model(const pc_adapt_ctx *cx) { return &cx->info; }
const struct pc_adapter_config *pc_adapt_config(const pc_adapt_ctx *cx) { return cx->cfg; }

int pc_adapt_targets(pc_adapt_ctx *cx, const char *module) {
    if (!cx->tm) return 0;
    pc_match_result r = pc_target_match_why(cx->tm, module, cx->match_why, sizeof cx->match_why);
    return r == PC_MATCH_ERROR ? -1 : r == PC_MATCH_YES;
}

int pc_adapt_config_number(const pc_adapt_ctx *cx, const char *field, double dflt, double *out) {
    int r = pc_adapter_config_custom_number(cx->cfg, field, out);
    if (r == 1) *out = dflt;
    return r;
}

int pc_adapter_key(char *buf, size_t len, const char *module, const char *name, const char *tensor) {
    int n;
    const char *dot = strchr(tensor, '.');
    int head = dot ? (int)(dot - tensor) : (int)strlen(tensor);
    const char *pre = module ? "base_model.model." : "", *mod = module ? module : "", *sep = module ? "." : "";
    if (!name || strcmp(name, "default") == 0)
        n = snprintf(buf, len, "%s%s%s%s", pre, mod, sep, tensor);
    else
        n = snprintf(buf, len, "%s%s%s%.*s.%s%s", pre, mod, sep, head, tensor, name, dot ? dot : "");
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

pc_val pc_adapt_param(pc_adapt_ctx *cx, const pc_site *s, const char *tensor, pc_shape shape, pc_init init) {
    pc_graph *g = s ? s->g : NULL;
    if (!g) return PC_NONE;
    pc_loc at = s->loc;
    const char *module = s->module; /* NULL: a model-level tensor (prompt_embeddings) */
    char key[600], name[600];
    size_t pre = 0;
    if (cx->name && (pre = (size_t)snprintf(key, sizeof key, "%s/", cx->name)) >= sizeof key)
        return pc_fail(g, at, "adapter key too long");
    if (pc_adapter_key(key + pre, sizeof key - pre, module, NULL, tensor)) return pc_fail(g, at, "adapter key too long");
    pc_val p = pc_lookup_key(g, key);
    if (p != PC_NONE) {
        if (!pc_shape_eq(pc_val_shape(g, p), shape)) return pc_fail(g, at, "%s: two shapes for one tensor", key);
        return p;
    }
    /* SSA name: "<module>.<tensor>" without a trailing ".weight" (what dumps and grad.* show) */
    size_t tl = strlen(tensor);
    int cut = tl > 7 && strcmp(tensor + tl - 7, ".weight") == 0 ? (int)tl - 7 : (int)tl;
    if (module) snprintf(name, sizeof name, "%s%s%s.%.*s", cx->name ? cx->name : "", cx->name ? "." : "", module, cut, tensor);
    else snprintf(name, sizeof name, "%s%s%.*s", cx->name ? cx->name : "", cx->name ? "." : "", cut, tensor);
    return pc_param_at(g, at, pc_lookup(g, name) == PC_NONE ? name : NULL, key, PC_F32, shape,
                       cx->trainable ? PC_TRAINABLE : PC_FROZEN, init);
}

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

pc_val pc_dropout_seed(pc_graph *g) {
    pc_val s = pc_lookup(g, "seed");
    if (s != PC_NONE) {
        if (pc_v(g, s)->op == PC_OP_input && pc_v(g, s)->dtype == PC_I32 && pc_v(g, s)->shape.rank == 0) return s;
        return pc_fail(g, pc_v(g, s)->loc, "%%seed exists but is not an i32[] input");
    }
    return pc_input_at(g, (pc_loc){0}, "seed", PC_I32, pc_shape_make(0, NULL));
}

pc_val pc_adapt_keep_mask(pc_adapt_ctx *cx, const pc_site *s, pc_shape shape, double p, const char *tag) {
    (void)cx;
    pc_graph *g = s->g;
    uint64_t h = str_hash(s->module);
    for (const char *q = tag; *q; q++) h = (h ^ (unsigned char)*q) * 1099511628211ull; /* FNV-1a on: module, tag */
    pc_val ones = pc_broadcast_at(g, s->loc, pc_scalar_at(g, s->loc, 1.0f), shape);
    pc_val kept = pc_dropout_at(g, s->loc, ones, pc_dropout_seed(g), p, (int64_t)(h & 0x7fffffff));
    return pc_gt_at(g, s->loc, kept, pc_scalar_at(g, s->loc, 0.0f));
}

pc_val pc_adapt_dropout(pc_adapt_ctx *cx, const pc_site *s, pc_val x, double p) {
    if (cx->mode != PC_ADAPT_TRAIN || p <= 0) return x;
    return pc_dropout_at(s->g, s->loc, x, pc_dropout_seed(s->g), p, (int64_t)(str_hash(s->module) & 0x7fffffff));
}

/* ---- linear sites of any graph (the `adapt` pass) ---- */

/* PEFT's layer index: the first numbered path segment that follows another segment */
static int layer_index(const char *module) {
    const char *p = strchr(module, '.');
    while (p) {
        const char *q = p + 1;
        const char *e = q;
        while (*e >= '0' && *e <= '9') e++;
        if (e > q && *e == '.') return atoi(q);
        p = strchr(q, '.');
    }
    return -1;
}

/* the bias add that completes a linear: its only user is add(mm, param "<module>.bias") */
static pc_val bias_add(const pc_graph *g, pc_val mm, const char *module, int *uses) {
    pc_val found = PC_NONE;
    for (pc_val u = mm + 1; u < g->nvals; u++) {
        const pc_value *x = pc_v(g, u);
        for (int k = 0; k < x->nin; k++) {
            if (x->in[k] != mm) continue;
            uses[0]++;
            const pc_value *b = x->nin == 2 ? pc_v(g, x->in[1 - k]) : x;
            size_t ml = strlen(module);
            if (x->op == PC_OP_add && x->nin == 2 && b->op == PC_OP_param && b->key &&
                strncmp(b->key, module, ml) == 0 && strcmp(b->key + ml, ".bias") == 0)
                found = u;
        }
    }
    return uses[0] == 1 ? found : PC_NONE;
}

int pc_adapt_linears(pc_graph **gp, pc_adapt_ctx *cx, int *nmatched, char *err, size_t errlen) {
    pc_graph *g = *gp;
    const char *name = cx->m->name;
    if (!(cx->m->sites & PC_SITE_LINEAR))
        return pc_errf(err, errlen, "%s rewrites sites only model builders emit (embeddings, positions, attention, "
                       "head): apply it through a model verb (peftc train/eval/dump)", name);
    pc_val *map = malloc(((size_t)g->nvals + 1) * sizeof *map);
    pc_val *bias_of = malloc(((size_t)g->nvals + 1) * sizeof *bias_of); /* bias add -> its matmul */
    pc_graph *ng = pc_graph_new(g->name);
    int count = 0, rc = -1, before = cx->nrewritten;
    char module[512], msg[1024] = "";
    if (!map || !bias_of || !ng) { snprintf(err, errlen, "%s: out of memory", name); goto done; }
    for (int v = 0; v < g->nvals; v++) bias_of[v] = map[v] = PC_NONE;
    for (int v = 0; v < g->nvals; v++) {
        if (map[v] != PC_NONE) continue; /* a bias param copied early */
        if (bias_of[v] != PC_NONE) { /* the add completing a rewritten linear: already replaced */
            map[v] = map[bias_of[v]];
            continue;
        }
        if ((map[v] = pc_copy_value(ng, g, v, map)) == PC_NONE) break;
        if (!pc_linear_module(g, v, module, sizeof module)) continue;
        const pc_value *mm = pc_v(g, v);
        int uses = 0;
        pc_val badd = bias_add(g, v, module, &uses);
        pc_site site = {
            .kind = PC_SITE_LINEAR, .module = module, .layer = layer_index(module), .g = ng, .loc = mm->loc,
            .value = map[v], .value2 = PC_NONE, .x = map[mm->in[0]], .weight = map[mm->in[1]], .bias = PC_NONE,
            .ids = PC_NONE, .in = pc_v(g, mm->in[1])->shape.dim[1], .out = pc_v(g, mm->in[1])->shape.dim[0],
        };
        if (badd != PC_NONE) {
            /* build the bias add now so the method sees the whole linear */
            const pc_value *a = pc_v(g, badd);
            pc_val b = a->in[0] == v ? a->in[1] : a->in[0];
            if (map[b] == PC_NONE && (map[b] = pc_copy_value(ng, g, b, map)) == PC_NONE) break;
            site.bias = map[b];
            site.value = pc_add_at(ng, a->loc, map[v], map[b]);
            bias_of[badd] = v;
        }
        pc_val base = site.value;
        msg[0] = 0;
        if (pc_adapt_site(cx, &site, msg, sizeof msg)) {
            snprintf(err, errlen, "%s: %s: %s", name, module, msg);
            goto done;
        }
        if (pc_val_dtype(ng, site.value) != pc_val_dtype(ng, base) ||
            !pc_shape_eq(pc_val_shape(ng, site.value), pc_val_shape(ng, base))) {
            snprintf(err, errlen, "%s: %s: the replacement's type differs from the linear's", name, module);
            goto done;
        }
        map[v] = site.value; /* the bias add (visited later) maps to it too */
    }
    count = cx->nrewritten - before;
    if (pc_rebuild_commit(gp, &ng, map, name, err, errlen)) goto done;
    if (nmatched) *nmatched = count;
    rc = 0;
done:
    pc_graph_free(ng);
    free(map);
    free(bias_of);
    return rc;
}
