/* A model's tokenizer, whatever its file: what drivers need of one (encode text for training,
 * evaluation and prompts; decode generated ids). Kinds: the llama2.c tokenizer (.bin), and
 * further readers (tokenizer.json, a GGUF's vocabulary) through the same interface.
 *
 * pc_text_tokenizer_open detects the kind by content, so --tokenizer takes any of them. */
#ifndef PEFTC_RUNTIME_TEXT_TOKENIZER_H
#define PEFTC_RUNTIME_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pc_text_tokenizer pc_text_tokenizer;

typedef struct {
    const char *kind; /* "llama2.c tokenizer" */
    /* ids of text[0..len) into a malloc'd array (*ids, *n); add_special: what the tokenizer adds
     * by default (the Hugging Face library's add_special_tokens: BOS for a Llama) */
    int (*encode)(const void *impl, const char *text, size_t len, bool add_special, int32_t **ids, size_t *n,
                  char *err, size_t errlen);
    /* text of ids[0..n) into a malloc'd NUL-terminated string, special tokens skipped, as the
     * library's decode(skip_special_tokens=True) prints it */
    int (*decode)(const void *impl, const int32_t *ids, size_t n, char **text, size_t *len, char *err, size_t errlen);
    int (*vocab_size)(const void *impl);
    void (*free)(void *impl);
} pc_text_tokenizer_ops;

struct pc_text_tokenizer {
    const pc_text_tokenizer_ops *ops;
    void *impl;  /* owned */
    char *path;  /* for messages; owned */
};

/* Opens the tokenizer in `path` (kind detected by content). vocab_size > 0: the model's, which
 * the tokenizer must match (a llama2.c tokenizer file does not store its own). */
pc_text_tokenizer *pc_text_tokenizer_open(const char *path, int vocab_size, char *err, size_t errlen);
/* wraps an opened tokenizer (impl owned from now on, also on failure) */
pc_text_tokenizer *pc_text_tokenizer_wrap(const pc_text_tokenizer_ops *ops, void *impl, const char *path, char *err,
                                          size_t errlen);
void pc_text_tokenizer_free(pc_text_tokenizer *t); /* NULL is fine */
/* wraps a pc_hftok (runtime/tokenizer_json.h; owned from now on) */
pc_text_tokenizer *pc_text_tokenizer_from_hf(void *hftok, const char *path, char *err, size_t errlen);

int pc_text_encode(const pc_text_tokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                   size_t *n, char *err, size_t errlen);
int pc_text_decode(const pc_text_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len, char *err,
                   size_t errlen);
int pc_text_vocab_size(const pc_text_tokenizer *t);

#endif
