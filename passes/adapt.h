/* Adapters are rewrites. A rewrite = a matcher over module names + a builder that receives a
 * matched site and returns the value that replaces it. The built-in methods (LoRA, ...) use
 * exactly this public mechanism; users register their own from C (examples/custom_adapter.c).
 *
 * Linear sites follow the frontend's linear convention (frontend/linear.h): a matmul
 * (transpose_b=1, transpose_a=0) against a rank-2 param whose key is "<module>.weight",
 * optionally followed by `add` of a param "<module>.bias". The site's replacement takes the
 * place of the whole linear (bias included). */
#ifndef PEFTC_PASSES_ADAPT_H
#define PEFTC_PASSES_ADAPT_H

#include "peftc/peftc.h"
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    pc_graph *g;        /* the graph being built: append the replacement here */
    const char *module; /* "model.layers.0.self_attn.q_proj" */
    int layer;          /* the layer index PEFT would take from the name, or -1 */
    pc_val x;           /* input activation [..., in] */
    pc_val weight;      /* frozen base weight [out, in] */
    pc_val bias;        /* frozen base bias [out] or PC_NONE */
    pc_val base;        /* x W^T (+ b), already built */
    int64_t in, out;
    pc_loc loc;         /* where the base linear was made */
} pc_linear_site;

typedef struct {
    const char *name; /* for messages: "lora" */
    /* 1 = rewrite this module, 0 = leave it, -1 = error (message in err) */
    int (*match)(void *user, const char *module, char *err, size_t errlen);
    /* returns the replacement of site->base, or PC_NONE with a message in err (or the graph's
     * sticky error) */
    pc_val (*build)(void *user, const pc_linear_site *site, char *err, size_t errlen);
    void *user;
} pc_linear_rewrite;

/* Rebuilds *g with every matched linear replaced. *nmatched (may be NULL) gets the count.
 * On error *g is unchanged. */
int pc_rewrite_linears(pc_graph **g, const pc_linear_rewrite *rw, int *nmatched, char *err, size_t errlen);

/* The i32[] input `%seed` that dropout masks hash (created on first use). */
pc_val pc_dropout_seed(pc_graph *g);

#endif
