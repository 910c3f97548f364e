/* Internals shared by the tokenizer_json*.c files (not part of the API). */
#ifndef PEFTC_RUNTIME_TOKENIZER_JSON_INTERNAL_H
#define PEFTC_RUNTIME_TOKENIZER_JSON_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/tokenizer_json.h"
#include "runtime/tokenizer_json_unicode.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* where a message goes: every error names the file and the field */
typedef struct {
    const char *file;
    char *err;
    size_t errlen;
} pc_hft_ctx;

int pc_hft_fail(const pc_hft_ctx *cx, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int pc_hft_oom(const pc_hft_ctx *cx, const char *field);

/* JSON field readers: -1 with "FILE: FIELD: ..." when missing (unless optional) or mistyped.
 * Paths are built by the caller ("pre_tokenizer.pretokenizers[2].pattern"). */
json_t *pc_hft_get(const pc_hft_ctx *cx, json_t *obj, const char *path, const char *key,
                   bool optional); /* NULL when absent (optional) or on error (not optional) */
int pc_hft_get_bool(const pc_hft_ctx *cx, json_t *obj, const char *path, const char *key,
                    bool dflt_present, bool dflt, bool *out);
/* a string; *out points into the JSON (valid while it lives), len excludes the NUL.
 * null_ok: a JSON null gives *out = NULL */
int pc_hft_get_str(const pc_hft_ctx *cx, json_t *obj, const char *path, const char *key,
                   bool null_ok, const char **out, size_t *len);
int pc_hft_get_int(const pc_hft_ctx *cx, json_t *obj, const char *path, const char *key, int64_t lo,
                   int64_t hi, int64_t *out);
/* "FIELD.type" of a component, checked to be a string */
int pc_hft_get_type(const pc_hft_ctx *cx, json_t *obj, const char *path, const char **type);
char *pc_hft_strndup(const char *s, size_t n);
/* snprintf for field paths (a long path is cut, which is fine in a message) */
void pc_hft_pathf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- pieces: a list of strings in one buffer, some already tokens ---- */
typedef struct {
    size_t off, len;
    int32_t id; /* >= 0: an added token, passed through untouched */
    bool at_start; /* starts at offset 0 of the original text (Metaspace prepend_scheme first) */
} pc_hft_piece;

typedef struct {
    pc_hft_buf text;
    pc_hft_piece *v;
    size_t n, cap;
} pc_hft_pieces;

int pc_hft_pieces_add(pc_hft_pieces *ps, const char *s, size_t len, int32_t id, bool at_start);
void pc_hft_pieces_clear(pc_hft_pieces *ps); /* keeps the memory */
void pc_hft_pieces_free(pc_hft_pieces *ps);
static inline const char *pc_hft_piece_str(const pc_hft_pieces *ps, size_t i) {
    return ps->text.p + ps->v[i].off;
}

/* ---- ids ---- */
typedef struct {
    int32_t *v;
    size_t n, cap;
} pc_hft_ids;

int pc_hft_ids_push(pc_hft_ids *ids, int32_t id);

/* ---- patterns (Split, Replace): a literal or an Oniguruma-syntax regex run by PCRE2 ---- */
typedef struct {
    char *lit; /* literal when re == NULL */
    size_t litlen;
    pcre2_code *re;
} pc_hft_pattern;

/* "pattern": {"String": s} or {"Regex": r} */
int pc_hft_pattern_parse(const pc_hft_ctx *cx, json_t *j, const char *path, pc_hft_pattern *p);
int pc_hft_pattern_regex(const pc_hft_ctx *cx, const char *path, const char *onig, size_t len,
                         pc_hft_pattern *p);
void pc_hft_pattern_free(pc_hft_pattern *p);

/* a match span [start, end) over the searched string, as the library's find_matches: the
 * spans cover the whole string, alternating between non-matches and matches */
typedef struct {
    size_t start, end;
    bool match;
} pc_hft_span;

typedef struct {
    pc_hft_span *v;
    size_t n, cap;
} pc_hft_spans;

int pc_hft_pattern_find(const pc_hft_pattern *p, const char *s, size_t len, pc_hft_spans *out,
                        char *err, size_t errlen);
int pc_hft_spans_push(pc_hft_spans *sp, size_t start, size_t end, bool match);

/* ---- normalizers ---- */
typedef struct pc_hft_norm pc_hft_norm;
int pc_hft_norm_parse(const pc_hft_ctx *cx, json_t *j, const char *path, pc_hft_norm **out);
/* appends the normalized s to out */
int pc_hft_norm_apply(const pc_hft_norm *n, const char *s, size_t len, pc_hft_buf *out, char *err,
                      size_t errlen);
pc_hft_norm *pc_hft_norm_nfc(void); /* for the array constructor; NULL when out of memory */
void pc_hft_norm_free(pc_hft_norm *n);

/* ---- pre-tokenizers ---- */
typedef struct pc_hft_pretok pc_hft_pretok;
int pc_hft_pretok_parse(const pc_hft_ctx *cx, json_t *j, const char *path, pc_hft_pretok **out);
/* splits the pieces of `in` that are not tokens yet into `out` (cleared first) */
int pc_hft_pretok_apply(const pc_hft_pretok *pt, const pc_hft_pieces *in, pc_hft_pieces *out,
                        char *err, size_t errlen);
/* for the array constructor: Split(regex, Isolated), Digits(individual), ByteLevel */
pc_hft_pretok *pc_hft_pretok_split_regex(const pc_hft_ctx *cx, const char *regex);
pc_hft_pretok *pc_hft_pretok_digits(bool individual);
pc_hft_pretok *pc_hft_pretok_byte_level(bool add_prefix_space, bool use_regex);
pc_hft_pretok *pc_hft_pretok_sequence(pc_hft_pretok **items, size_t n); /* takes the items */
void pc_hft_pretok_free(pc_hft_pretok *pt);

/* byte <-> character of the GPT-2 byte-level alphabet */
uint32_t pc_hft_byte_char(unsigned char b);
int pc_hft_char_byte(uint32_t c); /* -1 when c is not in the alphabet */

/* ---- models ---- */
typedef struct pc_hft_vocab pc_hft_vocab; /* string -> id */
pc_hft_vocab *pc_hft_vocab_new(size_t expected);
int pc_hft_vocab_add(pc_hft_vocab *v, const char *s, size_t len, int32_t id); /* -1: OOM */
int32_t pc_hft_vocab_get(const pc_hft_vocab *v, const char *s, size_t len); /* -1: none */
size_t pc_hft_vocab_count(const pc_hft_vocab *v);
void pc_hft_vocab_free(pc_hft_vocab *v);

typedef struct pc_hft_model pc_hft_model;
int pc_hft_model_parse(const pc_hft_ctx *cx, json_t *j, pc_hft_model **out);
/* BPE from arrays (token i has id i; merges "a b") */
int pc_hft_model_bpe_arrays(const pc_hft_ctx *cx, const char *const *tokens, size_t ntok,
                            const char *const *merges, size_t nmerges, pc_hft_model **out);
void pc_hft_model_set_ignore_merges(pc_hft_model *m, bool on);
int pc_hft_model_tokenize(const pc_hft_model *m, const char *s, size_t len, pc_hft_ids *out,
                          char *err, size_t errlen);
size_t pc_hft_model_size(const pc_hft_model *m); /* entries of the vocab */
int32_t pc_hft_model_id_bound(const pc_hft_model *m); /* 1 + the largest id, 0 when empty */
int32_t pc_hft_model_token_to_id(const pc_hft_model *m, const char *s, size_t len);
const char *pc_hft_model_id_to_token(const pc_hft_model *m, int32_t id, size_t *len);
const char *pc_hft_model_unk(const pc_hft_model *m); /* unk_token or NULL */
void pc_hft_model_free(pc_hft_model *m);

/* ---- post-processors ---- */
typedef struct pc_hft_post pc_hft_post;
/* ids must be tokens' ids: is_token(ctx, id) says which are */
typedef bool (*pc_hft_is_token)(const void *ctx, int32_t id);
int pc_hft_post_parse(const pc_hft_ctx *cx, json_t *j, const char *path, pc_hft_is_token is_token,
                      const void *ctx, int32_t id_bound, pc_hft_post **out);
/* [bos] $A [eos] (either may be -1) */
pc_hft_post *pc_hft_post_bos_eos(int32_t bos, int32_t eos);
int pc_hft_post_apply(const pc_hft_post *p, const int32_t *ids, size_t n, bool add_special,
                      pc_hft_ids *out);
size_t pc_hft_post_added(const pc_hft_post *p); /* special tokens added to a single sequence */
/* the special tokens around $A in a single sequence: the first before, the first after (-1:
 * none), and which processor put them there (the first of a Sequence that has any) */
enum { PC_HFT_ROLES_NONE, PC_HFT_ROLES_BERT, PC_HFT_ROLES_ROBERTA, PC_HFT_ROLES_TEMPLATE };
void pc_hft_post_roles(const pc_hft_post *p, int32_t *before, int32_t *after, int *kind);
void pc_hft_post_free(pc_hft_post *p);

/* ---- decoders ---- */
typedef struct pc_hft_dec pc_hft_dec;
int pc_hft_dec_parse(const pc_hft_ctx *cx, json_t *j, const char *path, pc_hft_dec **out);
pc_hft_dec *pc_hft_dec_byte_level(void);
/* rewrites the token strings in place (`toks` may be replaced by fewer, longer strings) */
int pc_hft_dec_apply(const pc_hft_dec *d, pc_hft_pieces *toks, char *err, size_t errlen);
void pc_hft_dec_free(pc_hft_dec *d);

/* ---- the tokenizer ---- */
typedef struct {
    char *content; /* as in the file */
    size_t len;
    char *norm; /* the normalizer's form (normalized tokens with a normalizer), else NULL */
    size_t norm_len;
    int32_t id;
    bool special, single_word, lstrip, rstrip, normalized;
} pc_hft_added;

struct pc_hftok {
    char *name; /* file name in messages */
    pc_hft_norm *norm;
    pc_hft_pretok *pretok;
    pc_hft_model *model;
    pc_hft_post *post;
    pc_hft_dec *dec;
    pc_hft_added *added;
    size_t nadded;
    pc_hft_vocab *added_map; /* content -> index into added */
    /* added-token matchers, raw and normalized: per first byte, indices into `added` by
     * decreasing length (leftmost-longest) */
    uint32_t *match_raw, *match_norm; /* concatenated lists */
    uint32_t start_raw[257], start_norm[257];
    int32_t id_bound;
    int32_t *added_of_id; /* id -> index into added, or -1 (id_bound entries) */
    uint8_t *special_id; /* id -> skipped by decode(skip_special_tokens) */
    /* truncation and padding from the file */
    bool trunc, trunc_left;
    size_t trunc_max, trunc_stride;
    bool pad, pad_left, pad_fixed;
    size_t pad_len, pad_multiple;
    int32_t pad_id;
    pc_hftok_special_ids specials;
};

/* after model, normalizer, added tokens and post-processor are set: the id tables, the
 * matchers, the special ids */
int pc_hft_finish(const pc_hft_ctx *cx, pc_hftok *t);
/* added tokens: splits text by the raw (normalized == false) tokens, normalizes the rest and
 * splits it by the normalized ones */
int pc_hft_extract_added(const pc_hftok *t, const char *text, size_t len, pc_hft_pieces *out,
                         char *err, size_t errlen);
int pc_hft_added_index(const pc_hft_ctx *cx, pc_hftok *t);

#endif
