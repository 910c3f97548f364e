/* Hugging Face `tokenizers` files (tokenizer.json): load, encode, decode.
 *
 * Encoding gives the ids of the library (tokenizers 0.23) for the same file and text:
 * `Tokenizer.from_file(path)` with truncation and padding switched off (`no_truncation()`,
 * `no_padding()`, which is also what transformers' `tokenizer(text)` does), then
 * `.encode(text, add_special_tokens).ids`. pc_hftok_encode_padded also applies the file's
 * truncation and padding, as `Tokenizer.from_file(path).encode(text)` does.
 *
 * The pipeline is the library's: added tokens matched on the raw text (normalized == false)
 * and on the normalized text (normalized == true; single_word, lstrip, rstrip honoured), the
 * normalizer, the pre-tokenizer, the model, the post-processor. What a file may use:
 *   normalizers     BertNormalizer, NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents,
 *                   Replace, Prepend, Sequence
 *   pre-tokenizers  BertPreTokenizer, ByteLevel, Split, Digits, Whitespace, WhitespaceSplit,
 *                   Punctuation, CharDelimiterSplit, Metaspace, Sequence
 *   models          WordPiece; BPE (merges "a b" or [a, b], unk_token, continuing_subword_prefix,
 *                   end_of_word_suffix, ignore_merges, byte_fallback, fuse_unk; dropout null or 0)
 *   post-processors BertProcessing, RobertaProcessing, TemplateProcessing, ByteLevel, Sequence
 *   decoders        WordPiece, ByteLevel, Metaspace, Replace, Strip, Fuse, ByteFallback,
 *                   BPEDecoder, Sequence
 * Anything else (Precompiled, Unigram, WordLevel, a regex Oniguruma accepts and PCRE2 does not,
 * ...) is refused at load with "FILE: FIELD: unsupported ..." rather than encoded differently.
 * Text must be valid UTF-8 (the library takes a Python str): invalid bytes are an error naming
 * the offset, never replaced silently.
 *
 * All functions returning int give 0 on success, -1 with a message in err. A loaded tokenizer
 * is read-only: encode and decode may run from several threads at once. */
#ifndef PEFTC_RUNTIME_TOKENIZER_JSON_H
#define PEFTC_RUNTIME_TOKENIZER_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pc_hftok pc_hftok;

pc_hftok *pc_hftok_load(const char *path, char *err, size_t errlen);
/* the same from a JSON text in memory; `name` stands for the file in messages */
pc_hftok *pc_hftok_load_mem(const char *name, const char *json, size_t len, char *err,
                            size_t errlen);
void pc_hftok_free(pc_hftok *t); /* NULL is fine */

/* Byte-level BPE from arrays, as a GGUF file carries it (tokenizer.ggml.*). The tokenizer is
 * the one transformers builds from such a file: BPE over `tokens` (id = index; a token that
 * is not spelled in the byte-level alphabet is respelled from its UTF-8 bytes) and `merges`
 * ("a b", rank = index), the pre-tokenizer of `pre` (see below) or of `regex`, ByteLevel
 * decoding, [bos] $A [eos] as asked. Token types (optional) make tokens of type 3 (control)
 * special added tokens and of type 4 (user defined) plain added tokens, both matched whole
 * in the text. */
typedef struct {
    const char *const *tokens; /* tokenizer.ggml.tokens */
    size_t n_tokens;
    const char *const *merges; /* tokenizer.ggml.merges */
    size_t n_merges;
    const int32_t *token_types; /* tokenizer.ggml.token_type, n_tokens entries, or NULL */
    /* tokenizer.ggml.pre: "gpt2" (also "mpt", "olmo", "jais", "default"): ByteLevel's GPT-2
     * regex; "llama-bpe" (also "llama3", "llama-v3", "falcon3", "dbrx", "smaug-bpe", ...): the
     * Llama-3 Split regex; "qwen2" (also "deepseek-r1-qwen", "megrez"): NFC and Qwen2's regex;
     * "smollm" (also "starcoder", "refact", "codeshell", "exaone"): single digits, then GPT-2;
     * "tekken"; "gpt-4o" (also "llama4"). Anything else is refused: pass `regex` instead.
     * NULL with regex NULL means "gpt2". */
    const char *pre;
    const char *regex; /* when pre is NULL: Split(regex, isolated), then ByteLevel (no regex) */
    int32_t bos_id, eos_id; /* -1: none */
    bool add_bos, add_eos; /* tokenizer.ggml.add_bos_token / add_eos_token */
    /* a word that is a token is not merged (Llama-3's files; always on for the Llama-3 names) */
    bool ignore_merges;
} pc_hftok_bpe_spec;

pc_hftok *pc_hftok_from_bpe(const pc_hftok_bpe_spec *spec, char *err, size_t errlen);

/* Encodes text[0..len) into a malloc'd array (*ids, caller frees; NULL when *n == 0).
 * add_special_tokens is the library's argument (its default is true): the post-processor's
 * tokens ([CLS] ... [SEP], <s> ... </s>, the template's). */
int pc_hftok_encode(const pc_hftok *t, const char *text, size_t len, bool add_special_tokens,
                    int32_t **ids, size_t *n, char *err, size_t errlen);
/* As pc_hftok_encode, then the file's "truncation" (longest_first/only_first, left or right;
 * the special tokens count) and "padding" (fixed length or the sequence's own, to a multiple,
 * left or right). attention_mask (optional, caller frees) gets 1 for tokens, 0 for padding. */
int pc_hftok_encode_padded(const pc_hftok *t, const char *text, size_t len, bool add_special_tokens,
                           int32_t **ids, size_t *n, uint8_t **attention_mask, char *err,
                           size_t errlen);
/* Decodes ids to text (*out malloc'd, NUL-terminated; outlen optional), as the library's
 * decode(ids, skip_special_tokens). Unlike the library, which drops ids it does not know, an
 * id outside the vocabulary is an error. */
int pc_hftok_decode(const pc_hftok *t, const int32_t *ids, size_t n, bool skip_special_tokens,
                    char **out, size_t *outlen, char *err, size_t errlen);

/* the library's get_vocab_size(with_added_tokens=True) */
size_t pc_hftok_vocab_size(const pc_hftok *t);
/* 1 + the largest id (rows an embedding table needs); every id below it may be looked up */
int32_t pc_hftok_id_bound(const pc_hftok *t);
/* the token of an id as the library's id_to_token (NUL-terminated; len optional); NULL for an
 * id no token has */
const char *pc_hftok_id_to_token(const pc_hftok *t, int32_t id, size_t *len);
/* added tokens first, then the model's vocabulary; -1 when none */
int32_t pc_hftok_token_to_id(const pc_hftok *t, const char *s, size_t len);
/* a special added token (what decode skips with skip_special_tokens) */
bool pc_hftok_is_special(const pc_hftok *t, int32_t id);

/* Special ids as the file defines them, -1 when it does not:
 *   unk       the model's unk_token
 *   cls, sep  BertProcessing's / RobertaProcessing's, or a template's first special token
 *             before and after $A when it has both
 *   bos, eos  RobertaProcessing's cls / sep, a template's special token before / after $A;
 *             else a special added token named <s>, <|begin_of_text|>, <|startoftext|> (bos),
 *             </s>, <|endoftext|>, <|end_of_text|> (eos)
 *   pad       the padding's pad_id; else a special added token named [PAD], <pad>, <|pad|>,
 *             <|padding|>
 *   mask      a special added token named [MASK] or <mask>
 * (For the array constructor, bos and eos are the spec's.) */
typedef struct {
    int32_t bos, eos, cls, sep, pad, unk, mask;
} pc_hftok_special_ids;

void pc_hftok_specials(const pc_hftok *t, pc_hftok_special_ids *out);

#endif
