/* LoRA builder for the linear rewrite driver. */
#include "passes/lora.h"
#include "passes/adapt.h"
#include "ir/ir.h"
#include "runtime/target_match.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const pc_lora_opts *o;
    pc_target_matcher *m;
} lora_ctx;

int pc_lora_key(char *buf, size_t len, const char *module, const char *adapter_name, const char *kind) {
    const char *dot = strchr(kind, '.'); /* "lora_A" + ".weight" */
    int n;
    if (!adapter_name || strcmp(adapter_name, "default") == 0)
        n = snprintf(buf, len, "base_model.model.%s.%s", module, kind);
    else
        n = snprintf(buf, len, "base_model.model.%s.%.*s.%s%s", module, (int)(dot - kind), kind, adapter_name, dot);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int lora_match(void *user, const char *module, char *err, size_t errlen) {
    lora_ctx *c = user;
    int r = pc_target_match(c->m, module);
    if (r < 0) snprintf(err, errlen, "matching module '%s' failed", module);
    return r;
}

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static pc_val lora_build(void *user, const pc_linear_site *site, char *err, size_t errlen) {
    lora_ctx *c = user;
    const pc_adapter_config *cfg = c->o->cfg;
    pc_graph *g = site->g;
    int r;
    double alpha;
    if (pc_target_rank_alpha(c->m, site->module, &r, &alpha)) {
        snprintf(err, errlen, "no rank for module '%s'", site->module);
        return PC_NONE;
    }
    if (r <= 0) { snprintf(err, errlen, "rank %d for module '%s' must be positive", r, site->module); return PC_NONE; }
    double s = cfg->lora.use_rslora ? alpha / sqrt((double)r) : alpha / (double)r;
    unsigned kind = c->o->trainable ? PC_TRAINABLE : PC_FROZEN;
    pc_init ia = {PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0}, ib = {PC_INIT_ZEROS, 0, 0};
    if (cfg->lora.init_lora_weights == PC_LORA_INIT_GAUSSIAN) ia = (pc_init){PC_INIT_NORMAL, 1.0 / r, 0};
    if (cfg->lora.init_lora_weights == PC_LORA_INIT_FALSE) ib = (pc_init){PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0};
    char key[600], name[600];
    pc_loc at = site->loc;
    if (pc_lora_key(key, sizeof key, site->module, c->o->adapter_name, "lora_A.weight")) goto too_long;
    snprintf(name, sizeof name, "%s.lora_A", site->module);
    pc_val A = pc_param_at(g, at, pc_lookup(g, name) == PC_NONE ? name : NULL, key, PC_F32,
                           pc_shape_make(2, (int64_t[]){r, site->in}), kind, ia);
    if (pc_lora_key(key, sizeof key, site->module, c->o->adapter_name, "lora_B.weight")) goto too_long;
    snprintf(name, sizeof name, "%s.lora_B", site->module);
    pc_val B = pc_param_at(g, at, pc_lookup(g, name) == PC_NONE ? name : NULL, key, PC_F32,
                           pc_shape_make(2, (int64_t[]){site->out, r}), kind, ib);
    pc_val h = site->x;
    double p = cfg->lora.lora_dropout.v;
    if (c->o->training && p > 0)
        h = pc_dropout_at(g, at, h, pc_dropout_seed(g), p, (int64_t)(str_hash(site->module) & 0x7fffffff));
    pc_val down = pc_matmul_at(g, at, h, A, 0, 1);
    pc_val up = pc_matmul_at(g, at, down, B, 0, 1);
    if (cfg->lora.lora_bias) {
        if (pc_lora_key(key, sizeof key, site->module, c->o->adapter_name, "lora_B.bias")) goto too_long;
        snprintf(name, sizeof name, "%s.lora_B.bias", site->module);
        pc_val bb = pc_param_at(g, at, pc_lookup(g, name) == PC_NONE ? name : NULL, key, PC_F32,
                                pc_shape_make(1, (int64_t[]){site->out}), kind, (pc_init){PC_INIT_ZEROS, 0, 0});
        up = pc_add_at(g, at, up, bb);
    }
    return pc_add_at(g, at, site->base, pc_scale_at(g, at, up, s, 0.0));
too_long:
    snprintf(err, errlen, "module name too long");
    return PC_NONE;
}

int pc_apply_lora(pc_graph **g, const pc_lora_opts *o, int *nmatched, char *err, size_t errlen) {
    const pc_adapter_config *cfg = o->cfg;
    if (cfg->peft_type != PC_PEFT_LORA) { snprintf(err, errlen, "lora: the config's peft_type is not LORA"); return -1; }
    if (cfg->lora.use_dora) { snprintf(err, errlen, "lora: use_dora=true is not implemented by peftc yet"); return -1; }
    if (cfg->lora.bias != PC_BIAS_NONE) { snprintf(err, errlen, "lora: bias=\"%s\" is not implemented by peftc yet (use \"none\")",
                                                   cfg->lora.bias == PC_BIAS_ALL ? "all" : "lora_only"); return -1; }
    if (cfg->target_modules.kind == PC_SPEC_NULL) { snprintf(err, errlen, "lora: target_modules is null (no default for this model)"); return -1; }
    lora_ctx c = {o, pc_target_matcher_new(cfg, err, errlen)};
    if (!c.m) return -1;
    pc_linear_rewrite rw = {"lora", lora_match, lora_build, &c};
    int n = 0;
    int rc = pc_rewrite_linears(g, &rw, &n, err, errlen);
    pc_target_matcher_free(c.m);
    if (rc) return -1;
    if (n == 0) {
        snprintf(err, errlen, "lora: target_modules matched no linear module of the model");
        return -1;
    }
    if (nmatched) *nmatched = n;
    return 0;
}
