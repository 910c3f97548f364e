/* The site rewrites every method shares that puts P virtual tokens before each sequence (prompt
 * tuning, P-tuning, multitask prompt tuning): where their rows go, which positions they take,
 * and that they predict nothing. The methods differ only in how the rows are made. */
#ifndef PEFTC_PASSES_ADAPTERS_VIRTUAL_TOKENS_H
#define PEFTC_PASSES_ADAPTERS_VIRTUAL_TOKENS_H

#include "peftc/adapter.h"

/* PEFT's prompt-learning fields against the model: num_virtual_tokens positive and leaving room
 * in the context, token_dim the hidden size, one transformer submodule; -1 naming the field */
int pc_virtual_check_config(pc_adapt_ctx *cx, char *err, size_t errlen);

/* EMBED of a decode graph: `table` [P, D] appended to the vocabulary, so the generation loop
 * feeds the virtual tokens as ids V..V+P-1 */
void pc_virtual_decode_embed(pc_site *s, pc_val table);
/* EMBED: `rows` before the sequence's embeddings: [B, P, D] per row, or one [P, D] for all */
void pc_virtual_prepend(pc_site *s, pc_val rows);
/* POSITIONS: the virtual tokens at 0..P-1, the sequence after them; -1 (message naming
 * `method`) when the model's positions are not a constant */
int pc_virtual_positions(pc_site *s, int64_t P, const char *method, char *err, size_t errlen);
/* HEAD [B, P+S, V]: the virtual positions predict nothing */
void pc_virtual_head(pc_site *s, int64_t P);
/* every site but EMBED (the method's own table): POSITIONS and HEAD as above, outside decoding
 * (a decode step feeds the virtual tokens itself); 1 rewritten, 0 not one of them, -1 error */
int pc_virtual_other_site(pc_site *s, int64_t P, bool decode, const char *method, char *err, size_t errlen);

#endif
