/* llama2.c tokenizer (tokenizer.bin / tok512.bin): load, encode, decode.
 *
 * File: int32 max_token_length, then per token {float32 score, int32 len, len bytes}. The file does
 * not store the token count (llama2.c takes it from the model).
 *
 * Encoding gives exactly the ids of llama2.c run.c encode(): optional BOS, a dummy-prefix " " token
 * when the text is non-empty, one token per UTF-8 code point (a lead byte plus up to 3 following
 * continuation bytes, any byte starting a group; byte fallback id = byte + 3 when the group is not
 * a piece), then repeatedly merge the adjacent pair whose concatenation is a piece with the
 * highest score (leftmost on ties; scores <= -1e10 never merge), optional EOS. It runs in
 * O(n log n) with a heap of candidate pairs over a linked list instead of run.c's O(n^2) rescans.
 * Differences only where run.c cannot go: text is (pointer, length) so a NUL byte is encoded
 * (byte fallback) rather than ending the text, and pieces compare as byte strings. */
#ifndef PEFTC_RUNTIME_TOKENIZER_H
#define PEFTC_RUNTIME_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define PC_TOK_UNK 0
#define PC_TOK_BOS 1
#define PC_TOK_EOS 2

typedef struct pc_tokenizer pc_tokenizer;

/* vocab_size > 0: the file must hold exactly that many tokens; <= 0: read tokens until EOF */
pc_tokenizer *pc_tok_load(const char *path, int vocab_size, char *err, size_t errlen);
void pc_tok_free(pc_tokenizer *t); /* NULL is fine */

int pc_tok_vocab_size(const pc_tokenizer *t);
int pc_tok_max_token_length(const pc_tokenizer *t);
/* raw piece bytes (NUL-terminated, len excludes it); NULL for an id out of range */
const char *pc_tok_piece(const pc_tokenizer *t, int id, size_t *len);
float pc_tok_score(const pc_tokenizer *t, int id);
/* id of the piece equal to s[0..len), the lowest id if duplicated; -1 if none */
int pc_tok_lookup(const pc_tokenizer *t, const char *s, size_t len);

/* capacity that always suffices for pc_tok_encode (BOS + prefix + one per byte + EOS) */
static inline size_t pc_tok_encode_bound(size_t len) { return len + 3; }

/* Encodes text[0..len) into ids (cap entries); *n gets the count. Errors: cap too small, text too
 * long for int32 positions, a byte fallback id beyond the vocabulary, out of memory. */
int pc_tok_encode(const pc_tokenizer *t, const char *text, size_t len, int bos, int eos,
                  int32_t *ids, size_t cap, size_t *n, char *err, size_t errlen);

/* run.c decode(): the piece of `id` as it is printed after `prev` — one leading space stripped
 * after BOS, "<0xNN>" pieces turned into the raw byte. The result points into the tokenizer (not
 * NUL-terminated when len is used; it is NUL-terminated too). NULL for an id out of range. */
const char *pc_tok_decode(const pc_tokenizer *t, int prev, int id, size_t *len);
/* like pc_tok_decode but returns "" for what run.c's safe_printf would skip: a single byte that
 * is neither printable ASCII nor whitespace */
const char *pc_tok_decode_safe(const pc_tokenizer *t, int prev, int id, size_t *len);

/* decodes ids[0..n), ids[-1] being `prev` (pass PC_TOK_BOS for text that follows BOS, -1 for
 * none), into a malloc'd NUL-terminated string (caller frees *out); safe != 0 uses
 * pc_tok_decode_safe. Fails on an id out of range. */
int pc_tok_decode_seq(const pc_tokenizer *t, int prev, const int32_t *ids, size_t n, int safe,
                      char **out, size_t *outlen, char *err, size_t errlen);

#endif
