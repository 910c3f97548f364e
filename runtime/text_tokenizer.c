/* The tokenizer interface, and the llama2.c tokenizer behind it. */
#include "runtime/text_tokenizer.h"
#include "runtime/fileio.h"
#include "runtime/tokenizer.h"
#include "runtime/tokenizer_json.h"

#include <stdlib.h>
#include <string.h>

static int l2c_encode(const void *impl, const char *text, size_t len, bool add_special, int32_t **ids, size_t *n,
                      char *err, size_t errlen) {
    size_t cap = pc_tok_encode_bound(len);
    if (!(*ids = malloc(cap * sizeof **ids))) return pc_errf(err, errlen, "out of memory (%zu token ids)", cap);
    if (pc_tok_encode(impl, text, len, add_special, 0, *ids, cap, n, err, errlen) == 0) return 0;
    free(*ids);
    *ids = NULL;
    return -1;
}

/* run.c's printing: BOS skipped, the leading space after it stripped, unprintable bytes dropped */
static int l2c_decode(const void *impl, const int32_t *ids, size_t n, char **text, size_t *len, char *err,
                      size_t errlen) {
    int prev = -1;
    if (n && ids[0] == PC_TOK_BOS) prev = PC_TOK_BOS, ids++, n--;
    return pc_tok_decode_seq(impl, prev, ids, n, 1, text, len, err, errlen);
}

static int l2c_vocab(const void *impl) { return pc_tok_vocab_size(impl); }
static void l2c_free(void *impl) { pc_tok_free(impl); }

static const pc_text_tokenizer_ops llama2c_ops = {"llama2.c tokenizer", l2c_encode, l2c_decode, l2c_vocab, l2c_free};

/* ---- tokenizer.json (and a GGUF's vocabulary, made the same way) ---- */
static int hf_encode(const void *impl, const char *text, size_t len, bool add_special, int32_t **ids, size_t *n,
                     char *err, size_t errlen) {
    return pc_hftok_encode(impl, text, len, add_special, ids, n, err, errlen);
}

static int hf_decode(const void *impl, const int32_t *ids, size_t n, char **text, size_t *len, char *err,
                     size_t errlen) {
    return pc_hftok_decode(impl, ids, n, true, text, len, err, errlen);
}

static int hf_vocab(const void *impl) { return (int)pc_hftok_id_bound(impl); }
static void hf_free(void *impl) { pc_hftok_free(impl); }

static const pc_text_tokenizer_ops hftok_ops = {"tokenizer.json", hf_encode, hf_decode, hf_vocab, hf_free};

pc_text_tokenizer *pc_text_tokenizer_from_hf(void *hftok, const char *path, char *err, size_t errlen) {
    return pc_text_tokenizer_wrap(&hftok_ops, hftok, path, err, errlen);
}

pc_text_tokenizer *pc_text_tokenizer_wrap(const pc_text_tokenizer_ops *ops, void *impl, const char *path, char *err,
                                          size_t errlen) {
    pc_text_tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(path ? path : "(tokenizer)"))) {
        free(t);
        ops->free(impl);
        pc_errf(err, errlen, "%s: out of memory", path ? path : "tokenizer");
        return NULL;
    }
    t->ops = ops, t->impl = impl;
    return t;
}

/* a tokenizer.json is a JSON object; a llama2.c tokenizer starts with a binary int32 */
static bool looks_like_json(const char *path) {
    char head[64];
    long n = pc_read_head(path, head, sizeof head);
    for (long i = 0; i < n; i++) {
        if (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t') continue;
        return head[i] == '{';
    }
    return false;
}

pc_text_tokenizer *pc_text_tokenizer_open(const char *path, int vocab_size, char *err, size_t errlen) {
    if (looks_like_json(path)) {
        pc_hftok *t = pc_hftok_load(path, err, errlen);
        if (!t) return NULL;
        if (vocab_size > 0 && pc_hftok_id_bound(t) > vocab_size) {
            pc_errf(err, errlen, "%s: the tokenizer has ids up to %d but the model's vocabulary is %d", path,
                    (int)pc_hftok_id_bound(t) - 1, vocab_size);
            pc_hftok_free(t);
            return NULL;
        }
        return pc_text_tokenizer_wrap(&hftok_ops, t, path, err, errlen);
    }
    pc_tokenizer *l2c = pc_tok_load(path, vocab_size, err, errlen);
    return l2c ? pc_text_tokenizer_wrap(&llama2c_ops, l2c, path, err, errlen) : NULL;
}

void pc_text_tokenizer_free(pc_text_tokenizer *t) {
    if (!t) return;
    t->ops->free(t->impl);
    free(t->path);
    free(t);
}

int pc_text_encode(const pc_text_tokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                   size_t *n, char *err, size_t errlen) {
    *ids = NULL, *n = 0;
    return t->ops->encode(t->impl, text, len, add_special, ids, n, err, errlen);
}

int pc_text_decode(const pc_text_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len, char *err,
                   size_t errlen) {
    *text = NULL, *len = 0;
    return t->ops->decode(t->impl, ids, n, text, len, err, errlen);
}

int pc_text_vocab_size(const pc_text_tokenizer *t) { return t->ops->vocab_size(t->impl); }
