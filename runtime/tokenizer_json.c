/* tokenizer.json: load, encode, decode, lookups (the pieces live in tokenizer_json_*.c). */
#include "runtime/tokenizer_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fileio.h"
#include "runtime/tokenizer_json_internal.h"

void pc_hftok_free(pc_hftok *t) {
    if (!t) return;
    free(t->name);
    pc_hft_norm_free(t->norm);
    pc_hft_pretok_free(t->pretok);
    pc_hft_model_free(t->model);
    pc_hft_post_free(t->post);
    pc_hft_dec_free(t->dec);
    for (size_t i = 0; i < t->nadded; i++) {
        free(t->added[i].content);
        free(t->added[i].norm);
    }
    free(t->added);
    pc_hft_vocab_free(t->added_map);
    free(t->match_raw);
    free(t->match_norm);
    free(t->added_of_id);
    free(t->special_id);
    free(t);
}

/* ---- added_tokens ---- */

static int32_t added_find(const pc_hftok *t, const char *s, size_t len) {
    return t->added_map ? pc_hft_vocab_get(t->added_map, s, len) : -1;
}

/* the library's add_tokens: an added token takes the id its content has (added tokens first,
 * then the model), else the next id after the model's vocabulary; the file's id must agree */
static int parse_added(const pc_hft_ctx *cx, json_t *a, pc_hftok *t) {
    if (!json_is_array(a)) return pc_hft_fail(cx, "added_tokens", "expected an array");
    size_t n = json_array_size(a);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    t->added_map = pc_hft_vocab_new(n);
    if (!t->added || !t->added_map) return pc_hft_oom(cx, "added_tokens");
    int64_t next_id = (int64_t)pc_hft_model_size(t->model);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i);
        char f[64];
        pc_hft_pathf(f, sizeof f, "added_tokens[%zu]", i);
        if (!json_is_object(e)) return pc_hft_fail(cx, f, "expected an object");
        pc_hft_added x = {0};
        const char *content;
        size_t len;
        int64_t id;
        if (pc_hft_get_int(cx, e, f, "id", 0, (1 << 24) - 1, &id) ||
            pc_hft_get_str(cx, e, f, "content", false, &content, &len) ||
            pc_hft_get_bool(cx, e, f, "single_word", false, false, &x.single_word) ||
            pc_hft_get_bool(cx, e, f, "lstrip", false, false, &x.lstrip) ||
            pc_hft_get_bool(cx, e, f, "rstrip", false, false, &x.rstrip) ||
            pc_hft_get_bool(cx, e, f, "normalized", false, false, &x.normalized) ||
            pc_hft_get_bool(cx, e, f, "special", false, false, &x.special))
            return -1;
        if (len == 0) continue; /* the library ignores empty tokens */
        if (pc_utf8_valid_prefix(content, len) != len)
            return pc_hft_fail(cx, f, "content is not UTF-8");
        int32_t prev = added_find(t, content, len);
        int64_t lib_id =
            prev >= 0 ? t->added[prev].id : pc_hft_model_token_to_id(t->model, content, len);
        if (lib_id < 0) lib_id = next_id++;
        if (lib_id != id) {
            char g[80];
            pc_hft_pathf(g, sizeof g, "%s.id", f);
            return pc_hft_fail(cx, g,
                               "%lld, but the tokenizers library gives \"%.*s\" id %lld (it takes "
                               "the id the model's vocabulary has, else the next free one)",
                               (long long)id, (int)(len > 60 ? 60 : len), content,
                               (long long)lib_id);
        }
        x.id = (int32_t)id;
        if (prev >= 0) { /* listed again: the later properties win */
            x.content = t->added[prev].content;
            x.len = len;
            t->added[prev] = x;
            continue;
        }
        if (!(x.content = pc_hft_strndup(content, len))) return pc_hft_oom(cx, f);
        x.len = len;
        t->added[t->nadded] = x;
        if (pc_hft_vocab_add(t->added_map, content, len, (int32_t)t->nadded++))
            return pc_hft_oom(cx, f);
    }
    return 0;
}

/* ---- ids, special flags, roles ---- */

static const char *decode_str(const pc_hftok *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->id_bound) return NULL;
    int32_t a = t->added_of_id[id];
    if (a >= 0) {
        const pc_hft_added *x = &t->added[a];
        *len = x->norm ? x->norm_len : x->len;
        return x->norm ? x->norm : x->content;
    }
    return pc_hft_model_id_to_token(t->model, id, len);
}

static int32_t special_named(const pc_hftok *t, const char *const *names) {
    for (const char *const *n = names; *n; n++) {
        int32_t a = added_find(t, *n, strlen(*n));
        if (a >= 0 && t->added[a].special) return t->added[a].id;
    }
    return -1;
}

int pc_hft_finish(const pc_hft_ctx *cx, pc_hftok *t) {
    t->added_of_id = malloc(((size_t)t->id_bound + 1) * sizeof *t->added_of_id);
    t->special_id = calloc((size_t)t->id_bound + 1, 1);
    if (!t->added_of_id || !t->special_id) return pc_hft_oom(cx, "added_tokens");
    memset(t->added_of_id, 0xff, ((size_t)t->id_bound + 1) * sizeof *t->added_of_id);
    for (size_t i = 0; i < t->nadded; i++) t->added_of_id[t->added[i].id] = (int32_t)i;
    if (pc_hft_added_index(cx, t)) return -1;
    /* decode skips an id whose token string is the content of a special added token */
    for (int32_t id = 0; id < t->id_bound; id++) {
        size_t n;
        const char *s = decode_str(t, id, &n);
        if (!s) continue;
        int32_t a = added_find(t, s, n);
        t->special_id[id] = a >= 0 && t->added[a].special;
    }
    pc_hftok_special_ids *sp = &t->specials;
    *sp = (pc_hftok_special_ids){-1, -1, -1, -1, -1, -1, -1};
    const char *unk = pc_hft_model_unk(t->model);
    if (unk) sp->unk = pc_hftok_token_to_id(t, unk, strlen(unk));
    int32_t before, after;
    int kind;
    pc_hft_post_roles(t->post, &before, &after, &kind);
    if (kind == PC_HFT_ROLES_BERT || kind == PC_HFT_ROLES_ROBERTA ||
        (kind == PC_HFT_ROLES_TEMPLATE && before >= 0 && after >= 0)) {
        sp->cls = before;
        sp->sep = after;
    }
    if (kind == PC_HFT_ROLES_ROBERTA || kind == PC_HFT_ROLES_TEMPLATE) {
        sp->bos = before;
        sp->eos = after;
    }
    static const char *const bos[] = {"<s>", "<|begin_of_text|>", "<|startoftext|>", NULL};
    static const char *const eos[] = {"</s>", "<|endoftext|>", "<|end_of_text|>", NULL};
    static const char *const pad[] = {"[PAD]", "<pad>", "<|pad|>", "<|padding|>", NULL};
    static const char *const mask[] = {"[MASK]", "<mask>", NULL};
    if (sp->bos < 0) sp->bos = special_named(t, bos);
    if (sp->eos < 0) sp->eos = special_named(t, eos);
    sp->pad = t->pad ? t->pad_id : special_named(t, pad);
    sp->mask = special_named(t, mask);
    return 0;
}

/* an id the model's vocabulary or an added token has */
static bool has_token(const void *tv, int32_t id) {
    const pc_hftok *t = tv;
    if (pc_hft_model_id_to_token(t->model, id, NULL)) return true;
    for (size_t i = 0; i < t->nadded; i++)
        if (t->added[i].id == id) return true;
    return false;
}

/* ---- truncation and padding ---- */

static int parse_trunc_pad(const pc_hft_ctx *cx, json_t *root, pc_hftok *t) {
    json_t *tr = json_object_get(root, "truncation"), *pd = json_object_get(root, "padding");
    const char *s;
    int64_t x;
    if (tr && !json_is_null(tr)) {
        if (!json_is_object(tr)) return pc_hft_fail(cx, "truncation", "expected an object or null");
        t->trunc = true;
        if (pc_hft_get_int(cx, tr, "truncation", "max_length", 0, INT32_MAX, &x)) return -1;
        t->trunc_max = (size_t)x;
        if (pc_hft_get_int(cx, tr, "truncation", "stride", 0, INT32_MAX, &x)) return -1;
        t->trunc_stride = (size_t)x;
        if (pc_hft_get_str(cx, tr, "truncation", "strategy", false, &s, NULL)) return -1;
        if (!strcmp(s, "OnlySecond"))
            return pc_hft_fail(cx, "truncation.strategy",
                               "OnlySecond truncates a pair's second sequence: unsupported");
        if (strcmp(s, "LongestFirst") && strcmp(s, "OnlyFirst"))
            return pc_hft_fail(cx, "truncation.strategy", "unknown strategy %s", s);
        if (json_object_get(tr, "direction")) {
            if (pc_hft_get_str(cx, tr, "truncation", "direction", false, &s, NULL)) return -1;
            if (strcmp(s, "Left") && strcmp(s, "Right"))
                return pc_hft_fail(cx, "truncation.direction", "unknown direction %s", s);
            t->trunc_left = !strcmp(s, "Left");
        }
    }
    if (pd && !json_is_null(pd)) {
        if (!json_is_object(pd)) return pc_hft_fail(cx, "padding", "expected an object or null");
        t->pad = true;
        json_t *st = pc_hft_get(cx, pd, "padding", "strategy", false), *m;
        if (!st) return -1;
        if (json_is_string(st) && !strcmp(json_string_value(st), "BatchLongest")) {
            t->pad_fixed = false;
        } else if (json_is_object(st) && json_is_integer(json_object_get(st, "Fixed"))) {
            json_int_t v = json_integer_value(json_object_get(st, "Fixed"));
            if (v < 0 || v > INT32_MAX)
                return pc_hft_fail(cx, "padding.strategy.Fixed", "%lld is out of range",
                                   (long long)v);
            t->pad_fixed = true;
            t->pad_len = (size_t)v;
        } else {
            return pc_hft_fail(cx, "padding.strategy",
                               "expected \"BatchLongest\" or {\"Fixed\": n}");
        }
        if (pc_hft_get_str(cx, pd, "padding", "direction", false, &s, NULL)) return -1;
        if (strcmp(s, "Left") && strcmp(s, "Right"))
            return pc_hft_fail(cx, "padding.direction", "unknown direction %s", s);
        t->pad_left = !strcmp(s, "Left");
        if ((m = json_object_get(pd, "pad_to_multiple_of")) && !json_is_null(m)) {
            if (pc_hft_get_int(cx, pd, "padding", "pad_to_multiple_of", 0, INT32_MAX, &x))
                return -1;
            t->pad_multiple = (size_t)x;
        }
        if (pc_hft_get_int(cx, pd, "padding", "pad_id", 0, INT32_MAX, &x)) return -1;
        if (x >= t->id_bound || !has_token(t, (int32_t)x))
            return pc_hft_fail(cx, "padding.pad_id", "id %lld is not in the vocabulary (ids 0..%d)",
                               (long long)x, t->id_bound - 1);
        t->pad_id = (int32_t)x;
    }
    return 0;
}

/* ---- load ---- */

pc_hftok *pc_hftok_load_mem(const char *name, const char *json, size_t len, char *err,
                            size_t errlen) {
    pc_hft_ctx cx = {name, err, errlen};
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &je);
    if (!root) {
        pc_hft_fail(&cx, NULL, "invalid JSON at line %d column %d: %s", je.line, je.column,
                    je.text);
        return NULL;
    }
    pc_hftok *t = calloc(1, sizeof *t);
    if (!t || !(t->name = pc_hft_strndup(name, strlen(name)))) {
        pc_hft_oom(&cx, NULL);
        goto fail;
    }
    if (!json_is_object(root)) {
        pc_hft_fail(&cx, NULL, "expected a JSON object at the top");
        goto fail;
    }
    const char *ver;
    json_t *j;
    if (json_object_get(root, "version")) {
        if (pc_hft_get_str(&cx, root, "", "version", false, &ver, NULL)) goto fail;
        if (strcmp(ver, "1.0")) {
            pc_hft_fail(&cx, "version", "unknown tokenizer version %s (the library reads 1.0)",
                        ver);
            goto fail;
        }
    }
    if (!(j = pc_hft_get(&cx, root, "", "model", false)) || pc_hft_model_parse(&cx, j, &t->model))
        goto fail;
    if ((j = json_object_get(root, "normalizer")) && !json_is_null(j) &&
        pc_hft_norm_parse(&cx, j, "normalizer", &t->norm))
        goto fail;
    if ((j = json_object_get(root, "pre_tokenizer")) && !json_is_null(j) &&
        pc_hft_pretok_parse(&cx, j, "pre_tokenizer", &t->pretok))
        goto fail;
    if ((j = json_object_get(root, "decoder")) && !json_is_null(j) &&
        pc_hft_dec_parse(&cx, j, "decoder", &t->dec))
        goto fail;
    if ((j = json_object_get(root, "added_tokens")) && !json_is_null(j) && parse_added(&cx, j, t))
        goto fail;
    t->id_bound = pc_hft_model_id_bound(t->model);
    for (size_t i = 0; i < t->nadded; i++)
        if (t->added[i].id >= t->id_bound) t->id_bound = t->added[i].id + 1;
    if ((j = json_object_get(root, "post_processor")) && !json_is_null(j) &&
        pc_hft_post_parse(&cx, j, "post_processor", has_token, t, t->id_bound, &t->post))
        goto fail;
    if (parse_trunc_pad(&cx, root, t) || pc_hft_finish(&cx, t)) goto fail;
    json_decref(root);
    return t;
fail:
    json_decref(root);
    pc_hftok_free(t);
    return NULL;
}

pc_hftok *pc_hftok_load(const char *path, char *err, size_t errlen) {
    char *buf;
    size_t len;
    if (pc_read_file(path, &buf, &len, err, errlen)) return NULL;
    pc_hftok *t = pc_hftok_load_mem(path, buf, len, err, errlen);
    free(buf);
    return t;
}

/* ---- encode ---- */

/* ids of the text before the post-processor */
static int encode_raw(const pc_hftok *t, const char *text, size_t len, pc_hft_ids *ids, char *err,
                      size_t errlen) {
    size_t ok = pc_utf8_valid_prefix(text, len);
    if (ok != len)
        return pc_errf(err, errlen, "%s: text: invalid UTF-8 at byte %zu (0x%02x)", t->name, ok,
                       (unsigned char)text[ok]);
    pc_hft_pieces a = {0}, b = {0};
    int rc = -1;
    if (pc_hft_extract_added(t, text, len, &a, err, errlen) ||
        pc_hft_pretok_apply(t->pretok, &a, &b, err, errlen))
        goto done;
    for (size_t i = 0; i < b.n; i++) {
        if (b.v[i].id >= 0) {
            if (pc_hft_ids_push(ids, b.v[i].id)) goto oom;
        } else if (pc_hft_model_tokenize(t->model, pc_hft_piece_str(&b, i), b.v[i].len, ids, err,
                                         errlen)) {
            goto done;
        }
    }
    rc = 0;
    goto done;
oom:
    pc_errf(err, errlen, "%s: encode: out of memory", t->name);
done:
    pc_hft_pieces_free(&a);
    pc_hft_pieces_free(&b);
    return rc;
}

int pc_hftok_encode(const pc_hftok *t, const char *text, size_t len, bool add_special_tokens,
                    int32_t **ids, size_t *n, char *err, size_t errlen) {
    pc_hft_ids raw = {0}, out = {0};
    *ids = NULL;
    *n = 0;
    if (encode_raw(t, text, len, &raw, err, errlen)) {
        free(raw.v);
        return -1;
    }
    int rc = pc_hft_post_apply(t->post, raw.v, raw.n, add_special_tokens, &out);
    free(raw.v);
    if (rc) {
        free(out.v);
        return pc_errf(err, errlen, "%s: encode: out of memory", t->name);
    }
    *ids = out.v;
    *n = out.n;
    return 0;
}

int pc_hftok_encode_padded(const pc_hftok *t, const char *text, size_t len, bool add_special_tokens,
                           int32_t **ids, size_t *n, uint8_t **attention_mask, char *err,
                           size_t errlen) {
    pc_hft_ids raw = {0}, out = {0};
    *ids = NULL;
    *n = 0;
    if (attention_mask) *attention_mask = NULL;
    if (encode_raw(t, text, len, &raw, err, errlen)) goto fail;
    if (t->trunc) {
        size_t max = t->trunc_max, added = pc_hft_post_added(t->post);
        if (add_special_tokens && added > 0) {
            if (max < added) {
                pc_errf(err, errlen,
                        "%s: truncation.max_length %zu is smaller than the %zu special "
                        "tokens",
                        t->name, max, added);
                goto fail;
            }
            max -= added;
        }
        if (raw.n > max) {
            if (max > 0 && t->trunc_stride >= max) {
                pc_errf(err, errlen, "%s: truncation.stride %zu must be less than the length %zu",
                        t->name, t->trunc_stride, max);
                goto fail;
            }
            if (t->trunc_left) memmove(raw.v, raw.v + raw.n - max, max * sizeof *raw.v);
            raw.n = max;
        }
    }
    if (pc_hft_post_apply(t->post, raw.v, raw.n, add_special_tokens, &out)) goto oom;
    size_t real = out.n, target = real;
    if (t->pad) {
        target = t->pad_fixed ? t->pad_len : real;
        if (t->pad_multiple > 0 && target % t->pad_multiple)
            target += t->pad_multiple - target % t->pad_multiple;
        if (target < real) target = real;
        for (size_t i = real; i < target; i++)
            if (pc_hft_ids_push(&out, t->pad_id)) goto oom;
        if (t->pad_left && target > real) {
            memmove(out.v + (target - real), out.v, real * sizeof *out.v);
            for (size_t i = 0; i < target - real; i++) out.v[i] = t->pad_id;
        }
    }
    if (attention_mask) {
        uint8_t *m = malloc(target ? target : 1);
        if (!m) goto oom;
        size_t lead = t->pad_left ? target - real : 0;
        for (size_t i = 0; i < target; i++) m[i] = i >= lead && i < lead + real;
        *attention_mask = m;
    }
    free(raw.v);
    *ids = out.v;
    *n = out.n;
    return 0;
oom:
    pc_errf(err, errlen, "%s: encode: out of memory", t->name);
fail:
    free(raw.v);
    free(out.v);
    return -1;
}

/* ---- decode ---- */

int pc_hftok_decode(const pc_hftok *t, const int32_t *ids, size_t n, bool skip_special_tokens,
                    char **out, size_t *outlen, char *err, size_t errlen) {
    pc_hft_pieces toks = {0};
    pc_hft_buf b = {0};
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = decode_str(t, ids[i], &len);
        if (!s) {
            pc_hft_pieces_free(&toks);
            return pc_errf(err, errlen, "%s: decode: ids[%zu] = %d is not in the vocabulary",
                           t->name, i, ids[i]);
        }
        if (skip_special_tokens && t->special_id[ids[i]]) continue;
        if (pc_hft_pieces_add(&toks, s, len, -1, false)) goto oom;
    }
    if (t->dec && pc_hft_dec_apply(t->dec, &toks, err, errlen)) goto fail;
    if (pc_hft_buf_put(&b, "", 0)) goto oom;
    for (size_t i = 0; i < toks.n; i++)
        if ((!t->dec && i > 0 && pc_hft_buf_put(&b, " ", 1)) ||
            pc_hft_buf_put(&b, pc_hft_piece_str(&toks, i), toks.v[i].len))
            goto oom;
    pc_hft_pieces_free(&toks);
    *out = b.p;
    if (outlen) *outlen = b.len;
    return 0;
oom:
    pc_errf(err, errlen, "%s: decode: out of memory", t->name);
fail:
    pc_hft_pieces_free(&toks);
    pc_hft_buf_free(&b);
    return -1;
}

/* ---- lookups ---- */

size_t pc_hftok_vocab_size(const pc_hftok *t) {
    size_t n = pc_hft_model_size(t->model);
    for (size_t i = 0; i < t->nadded; i++)
        if (pc_hft_model_token_to_id(t->model, t->added[i].content, t->added[i].len) < 0) n++;
    return n;
}

int32_t pc_hftok_id_bound(const pc_hftok *t) { return t->id_bound; }

const char *pc_hftok_id_to_token(const pc_hftok *t, int32_t id, size_t *len) {
    size_t l;
    const char *s = decode_str(t, id, &l);
    if (s && len) *len = l;
    return s;
}

int32_t pc_hftok_token_to_id(const pc_hftok *t, const char *s, size_t len) {
    int32_t a = added_find(t, s, len);
    return a >= 0 ? t->added[a].id : pc_hft_model_token_to_id(t->model, s, len);
}

bool pc_hftok_is_special(const pc_hftok *t, int32_t id) {
    return id >= 0 && id < t->id_bound && t->special_id[id];
}

void pc_hftok_specials(const pc_hftok *t, pc_hftok_special_ids *out) { *out = t->specials; }
