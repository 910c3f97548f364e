/* The tokenizer a GGUF file carries (tokenizer.ggml.model "gpt2": byte-level BPE with its
 * merges and pre-tokenizer), as transformers' GGUF loader builds it. */
#ifndef PEFTC_RUNTIME_GGUF_TOKENIZER_H
#define PEFTC_RUNTIME_GGUF_TOKENIZER_H

#include "runtime/gguf.h"
#include "runtime/tokenizer_json.h"

#include <string.h>

/* NULL with err "" when the file has no tokenizer; NULL with a message when it cannot be read */
pc_hftok *pc_gguf_tokenizer(const pc_gguf *g, char *err, size_t errlen);

#endif
