/* Virtual-token site rewrites (passes/adapters/virtual_tokens.h). */
#include "passes/adapters/virtual_tokens.h"
#include "ir/ir.h"
#include "runtime/adapter_config.h"

#include <stdio.h>
#include <stdlib.h>

int pc_virtual_check_config(pc_adapt_ctx *cx, char *err, size_t errlen) {
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    const pc_model_info *mi = pc_adapt_model(cx);
    int64_t P = cfg->prompt.num_virtual_tokens;
    if (P == PC_INT_NULL || P <= 0)
        return snprintf(err, errlen, "field \"num_virtual_tokens\": must be a positive integer"), -1;
    if (mi->context > 0 && P >= mi->context)
        return snprintf(err, errlen, "field \"num_virtual_tokens\": %lld virtual tokens leave no room in the model's context of %d",
                        (long long)P, mi->context), -1;
    if (cfg->prompt.token_dim != PC_INT_NULL && mi->dim > 0 && cfg->prompt.token_dim != mi->dim)
        return snprintf(err, errlen, "field \"token_dim\": %lld, but the model's hidden size is %d", (long long)cfg->prompt.token_dim,
                        mi->dim), -1;
    if (cfg->prompt.num_transformer_submodules != PC_INT_NULL && cfg->prompt.num_transformer_submodules != 1)
        return snprintf(err, errlen, "field \"num_transformer_submodules\": %lld (a decoder-only model has 1)",
                        (long long)cfg->prompt.num_transformer_submodules), -1;
    return 0;
}

void pc_virtual_decode_embed(pc_site *s, pc_val table) {
    pc_val all = pc_concat_at(s->g, s->loc, 2, (pc_val[]){s->weight, table}, 0);
    s->value = pc_embedding_at(s->g, s->loc, all, s->ids);
}

void pc_virtual_prepend(pc_site *s, pc_val rows) {
    pc_graph *g = s->g;
    pc_shape e = pc_val_shape(g, s->value), r = pc_val_shape(g, rows); /* [B, S, D]; [P, D] or [B, P, D] */
    if (r.rank == 2) /* one table for every row (PEFT repeats it) */
        rows = pc_broadcast_at(g, s->loc, pc_reshape_at(g, s->loc, rows, PC_SHAPE(1, r.dim[0], r.dim[1])),
                               PC_SHAPE(e.dim[0], r.dim[0], r.dim[1]));
    s->value = pc_concat_at(g, s->loc, 2, (pc_val[]){rows, s->value}, 1);
}

int pc_virtual_other_site(pc_site *s, int64_t P, bool decode, const char *method, char *err, size_t errlen) {
    if (decode) return 0;
    if (s->kind == PC_SITE_POSITIONS) return pc_virtual_positions(s, P, method, err, errlen);
    if (s->kind != PC_SITE_HEAD) return 0;
    pc_virtual_head(s, P);
    return 1;
}

int pc_virtual_positions(pc_site *s, int64_t P, const char *method, char *err, size_t errlen) {
    const pc_value *p = pc_v(s->g, s->value);
    if (p->op != PC_OP_const || p->dtype != PC_I32 || p->shape.rank != 1)
        return snprintf(err, errlen, "%s needs the model's positions as a constant", method), -1;
    int64_t S = p->shape.dim[0], n = P + S;
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    if (!pos) return snprintf(err, errlen, "out of memory"), -1;
    for (int64_t i = 0; i < P; i++) pos[i] = (int32_t)i;
    for (int64_t i = 0; i < S; i++) pos[P + i] = ((const int32_t *)p->data)[i] + (int32_t)P;
    s->value = pc_const_at(s->g, s->loc, PC_I32, PC_SHAPE(n), pos);
    free(pos);
    return 1;
}

void pc_virtual_head(pc_site *s, int64_t P) {
    pc_shape l = pc_val_shape(s->g, s->value);
    s->value = pc_slice_at(s->g, s->loc, s->value, 1, P, l.dim[1]);
}
