/* RoPE's frequencies, shared by the interpreter and the compiled backend so both rotate by the
 * same angles. The rope op's attributes: theta, style, inverse, then llama3's frequency scaling
 * (factor, low_freq, high_freq, orig_ctx; orig_ctx 0 = none). */
#ifndef PEFTC_IR_ROPE_H
#define PEFTC_IR_ROPE_H

#include "ir/ir.h"

#include <math.h>

/* inverse frequency of pair i of a head of d dims: theta^(-2i/d), then, with orig_ctx > 0,
 * llama3's rule (transformers' _compute_llama3_parameters): wavelengths longer than
 * orig_ctx/low_freq are divided by factor, shorter than orig_ctx/high_freq kept, and the band
 * between interpolated */
static inline double pc_rope_inv_freq(const pc_attr *a, int64_t i, int64_t d) {
    double inv = pow(a[0].f, -2.0 * (double)i / (double)d);
    if (a[6].i <= 0) return inv;
    double factor = a[3].f, low = a[4].f, high = a[5].f, ctx = (double)a[6].i;
    double wavelen = 2.0 * M_PI / inv;
    if (wavelen < ctx / high) return inv;
    if (wavelen > ctx / low) return inv / factor;
    double smooth = (ctx / wavelen - low) / (high - low);
    return (1.0 - smooth) * inv / factor + smooth * inv;
}

#endif
