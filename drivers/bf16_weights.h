/* The bf16 copies of a session's frozen weights (--base-dtype bf16): made once per weight when a
 * graph first binds it, owned here, shared by every executor of the session. */
#ifndef PEFTC_DRIVERS_BF16_WEIGHTS_H
#define PEFTC_DRIVERS_BF16_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct pc_bf16_weights pc_bf16_weights;

pc_bf16_weights *pc_bf16_weights_new(void);
void pc_bf16_weights_free(pc_bf16_weights *w);
/* the bf16 copy (rounded to nearest even) of the n f32 values at src, known as key: made on the
 * first call for (key, src), the same pointer after; NULL when out of memory. A weight replaced
 * by a merge has another src, so it gets a copy of its own. */
const uint16_t *pc_bf16_weights_get(pc_bf16_weights *w, const char *key, const float *src, size_t n);
/* the pages of every f32 source converted so far go back to the system (runtime/fileio.h
 * pc_pages_drop): for a run that reads them no more (a training run binds its frozen weights
 * once; later binds find their copies by (key, src) without reading src) */
void pc_bf16_weights_drop_sources(const pc_bf16_weights *w);
/* bytes held */
size_t pc_bf16_weights_bytes(const pc_bf16_weights *w);

#endif
