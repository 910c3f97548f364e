/* The Hugging Face BERT / RoBERTa family: a directory (config.json + safetensors; f32, bf16 or
 * f16, converted to f32 at load) whose model_type is "bert" or "roberta", built by
 * frontend/bert.h as *ForSequenceClassification (or the bare encoder for feature extraction).
 *
 * Checkpoint layouts: a *ForSequenceClassification file has keys with the model prefix
 * ("bert.encoder.layer.0...") and the head; a bare BertModel / RobertaModel (all-MiniLM-L6-v2)
 * has its keys without the prefix and no classifier. Both are read: the family lists every
 * key under the name a SEQ_CLASSIFY graph gives it (the prefix added to a bare encoder's keys)
 * and resolves a graph key with or without the prefix. A head the file lacks (classifier,
 * BERT's pooler) is made as transformers initializes it, normal(0, initializer_range) weights
 * and zero biases, drawn like the executors' init of the params (seed 0, the key's stream), so
 * it is the same on every run; open says so on stderr, as transformers warns. Every other
 * tensor the graph needs must be in the file with the config's shape: open checks them all and
 * names the missing or misshapen one. */
#include "frontend/bert.h"
#include "ir/ir.h"
#include "runtime/fileio.h"
#include "runtime/hf_checkpoint.h"
#include "runtime/hf_write.h"
#include "runtime/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key;            /* the SEQ_CLASSIFY graph's name (owned) */
    const char *file_key; /* the checkpoint's, NULL for a head made here */
    pc_shape shape;
    float *data;          /* a head made here (owned) */
} entry;

typedef struct {
    pc_hf_checkpoint *ckpt;
    pc_bert_config cfg;
    entry *e;
    int n;
    bool labels_asked; /* cfg.num_labels is the caller's (pc_model.num_labels), not the config's */
} bert_impl;

static int hf_bert_probe(const char *path) {
    char t[64];
    if (pc_hf_model_type(path, t, sizeof t)) return 0;
    return strcmp(t, "bert") == 0 || strcmp(t, "roberta") == 0;
}

/* config.json -> the builder's config; what the builder cannot honour is refused */
static int read_config(pc_hf_checkpoint *ck, pc_bert_config *c, char *err, size_t errlen) {
    char where[4200];
    snprintf(where, sizeof where, "%s/config.json", pc_hf_dir(ck));
    int rc = 0;
    const char *type = pc_hf_string(ck, "model_type", err, errlen, &rc);
    if (rc) return -1;
    if (!type || (strcmp(type, "bert") && strcmp(type, "roberta")))
        return pc_errf(err, errlen, "%s: field \"model_type\": %s%s%s is not a model peftc reads as BERT or RoBERTa",
                       where, type ? "\"" : "", type ? type : "missing", type ? "\"" : "");
    *c = pc_bert_config_default(strcmp(type, "roberta") == 0);
    struct { const char *field; int *to; long long dflt; } ints[] = {
        {"hidden_size", &c->dim, 0}, {"intermediate_size", &c->hidden_dim, 0}, {"num_hidden_layers", &c->n_layers, 0},
        {"num_attention_heads", &c->n_heads, 0}, {"vocab_size", &c->vocab_size, 0},
        {"max_position_embeddings", &c->max_positions, 512}, {"type_vocab_size", &c->type_vocab_size, 2},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        long long v;
        bool found;
        if (pc_hf_int(ck, ints[i].field, ints[i].dflt, &v, &found, err, errlen)) return -1;
        if (v <= 0 || v > 1 << 30)
            return pc_errf(err, errlen, "%s: field \"%s\": %s", where, ints[i].field, found ? "must be a positive size" : "missing");
        *ints[i].to = (int)v;
    }
    long long pad;
    if (pc_hf_int(ck, "pad_token_id", c->pad_token_id, &pad, NULL, err, errlen)) return -1;
    if (pad < 0 || pad >= c->vocab_size)
        return pc_errf(err, errlen, "%s: field \"pad_token_id\": %lld is not a token id (vocab_size %d)", where, pad,
                       c->vocab_size);
    c->pad_token_id = (int)pad;
    /* num_labels: the field when written, else id2label's size, else transformers' 2 */
    long long nl, n2l;
    bool has_nl, has_id2label;
    if (pc_hf_int(ck, "num_labels", 2, &nl, &has_nl, err, errlen) ||
        pc_hf_size(ck, "id2label", &n2l, &has_id2label, err, errlen))
        return -1;
    if (has_nl && has_id2label && nl != n2l)
        return pc_errf(err, errlen, "%s: field \"num_labels\": %lld, but id2label has %lld labels", where, nl, n2l);
    if (!has_nl && has_id2label) nl = n2l;
    if (nl < 2 || nl > 1 << 24)
        return pc_errf(err, errlen, "%s: field \"%s\": %lld labels; peftc's classification head needs >= 2 "
                       "(1 label is transformers' regression, not supported)", where, has_nl ? "num_labels" : "id2label", nl);
    c->num_labels = (int)nl;
    const char *pt = pc_hf_string(ck, "problem_type", err, errlen, &rc);
    if (rc) return -1;
    if (pt && strcmp(pt, "single_label_classification"))
        return pc_errf(err, errlen, "%s: field \"problem_type\": \"%s\"; peftc's head is single-label classification "
                       "(cross-entropy)", where, pt);
    if (pc_hf_number(ck, "layer_norm_eps", 1e-12, &c->norm_eps, NULL, err, errlen) ||
        pc_hf_number(ck, "hidden_dropout_prob", 0.1, &c->hidden_dropout, NULL, err, errlen) ||
        pc_hf_number(ck, "attention_probs_dropout_prob", 0.1, &c->attention_dropout, NULL, err, errlen) ||
        pc_hf_number(ck, "classifier_dropout", c->hidden_dropout, &c->classifier_dropout, NULL, err, errlen) ||
        pc_hf_number(ck, "initializer_range", 0.02, &c->initializer_range, NULL, err, errlen))
        return -1;
    const char *act = pc_hf_string(ck, "hidden_act", err, errlen, &rc);
    if (rc) return -1;
    static const struct { const char *name; pc_bert_act act; } acts[] = {
        {"gelu", PC_BERT_GELU}, {"gelu_new", PC_BERT_GELU_TANH}, {"gelu_pytorch_tanh", PC_BERT_GELU_TANH},
        {"relu", PC_BERT_RELU}, {"silu", PC_BERT_SILU}, {"swish", PC_BERT_SILU},
    };
    if (act) {
        size_t i = 0;
        while (i < sizeof acts / sizeof acts[0] && strcmp(acts[i].name, act)) i++;
        if (i == sizeof acts / sizeof acts[0])
            return pc_errf(err, errlen, "%s: field \"hidden_act\": \"%s\" is not supported (gelu, gelu_new, "
                           "gelu_pytorch_tanh, relu, silu are)", where, act);
        c->act = acts[i].act;
    }
    const char *pe = pc_hf_string(ck, "position_embedding_type", err, errlen, &rc);
    if (rc) return -1;
    if (pe && strcmp(pe, "absolute"))
        return pc_errf(err, errlen, "%s: field \"position_embedding_type\": \"%s\"; peftc's encoder has absolute "
                       "positions only", where, pe);
    bool dec, cross;
    if (pc_hf_bool(ck, "is_decoder", false, &dec, err, errlen) ||
        pc_hf_bool(ck, "add_cross_attention", false, &cross, err, errlen))
        return -1;
    if (dec || cross)
        return pc_errf(err, errlen, "%s: field \"%s\": true; peftc builds the encoder (bidirectional, no cross-attention)",
                       where, dec ? "is_decoder" : "add_cross_attention");
    if (pc_bert_config_check(c, err, errlen)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err);
        return pc_errf(err, errlen, "%s: %s", where, msg);
    }
    return 0;
}

static entry *find(const bert_impl *x, const char *key) {
    for (int i = 0; i < x->n; i++)
        if (strcmp(x->e[i].key, key) == 0) return &x->e[i];
    return NULL;
}

/* a graph key with or without the model prefix ("bert." on a FEATURE_EXTRACT graph's keys) */
static entry *resolve(const bert_impl *x, const char *key) {
    entry *e = find(x, key);
    if (e) return e;
    char k[600];
    snprintf(k, sizeof k, "%s.%s", pc_bert_prefix(&x->cfg), key);
    return find(x, k);
}

static const float *entry_data(const bert_impl *x, const entry *e, pc_shape *shape, char *err, size_t errlen) {
    if (shape) *shape = e->shape;
    return e->file_key ? pc_hf_weight(x->ckpt, e->file_key, shape, err, errlen) : e->data;
}

static int add_entry(bert_impl *x, const char *key, const char *file_key, pc_shape shape, float *data) {
    entry *ne = realloc(x->e, (size_t)(x->n + 1) * sizeof *ne);
    if (!ne) return -1;
    x->e = ne;
    x->e[x->n] = (entry){.key = strdup(key), .file_key = file_key, .shape = shape, .data = data};
    if (!x->e[x->n].key) return -1;
    x->n++;
    return 0;
}

/* the checkpoint's keys under the graph's names, then every tensor of the SEQ_CLASSIFY graph
 * checked (a missing head made here) */
static int index_weights(bert_impl *x, char **out_note, char *err, size_t errlen) {
    const pc_bert_config *c = &x->cfg;
    const char *dir = pc_hf_dir(x->ckpt);
    pc_build_req req = {.task = PC_TASK_SEQ_CLASSIFY, .batch = 1, .seq = 1, .mode = PC_ADAPT_EVAL};
    pc_graph *g = pc_bert_build(c, &req, NULL, err, errlen);
    if (!g) return -1;
    int rc = 0;
    char k[600], made[1024] = "";
    size_t plen = strlen(pc_bert_prefix(c));
    for (int i = 0; i < pc_hf_nweights(x->ckpt) && !rc; i++) {
        const char *fk = pc_hf_weight_key(x->ckpt, i);
        /* a bare encoder's key: the graph knows it with the prefix */
        snprintf(k, sizeof k, "%s.%s", pc_bert_prefix(c), fk);
        bool prefixed = strncmp(fk, pc_bert_prefix(c), plen) == 0 && fk[plen] == '.';
        const char *name = !prefixed && pc_lookup_key(g, k) != PC_NONE ? k : fk;
        if (find(x, name)) rc = pc_errf(err, errlen, "%s: tensors \"%s\" and \"%s\" are the same weight", dir, name, fk);
        else if (add_entry(x, name, fk, (pc_shape){0}, NULL)) rc = pc_errf(err, errlen, "out of memory");
    }
    for (pc_val v = 0; v < g->nvals && !rc; v++) {
        const pc_value *p = pc_v(g, v);
        if (p->op != PC_OP_param || !p->key) continue;
        entry *e = find(x, p->key);
        if (e) {
            pc_shape s;
            char msg[600] = "";
            if (!entry_data(x, e, &s, msg, sizeof msg)) {
                rc = pc_errf(err, errlen, "%s", msg[0] ? msg : "cannot read a tensor");
            } else if (!pc_shape_eq(s, p->shape)) {
                char a[96], b[96];
                pc_shape_str(s, a, sizeof a);
                pc_shape_str(p->shape, b, sizeof b);
                if (x->labels_asked && pc_bert_head_init(c, p->key).kind != PC_INIT_NONE && s.rank >= 1 &&
                    p->shape.rank >= 1 && s.dim[0] != p->shape.dim[0] && strstr(p->key, "classifier"))
                    rc = pc_errf(err, errlen, "%s: tensor \"%s\" is %s: the checkpoint's classifier has %lld labels, "
                                 "and %d were asked for (the names of --labels)", dir, e->file_key, a,
                                 (long long)s.dim[0], c->num_labels);
                else
                    rc = pc_errf(err, errlen, "%s: tensor \"%s\" is %s; config.json's sizes want %s", dir, e->file_key, a, b);
            }
            e->shape = s;
            continue;
        }
        if (p->init.kind == PC_INIT_NONE) {
            bool bare = strncmp(p->key, pc_bert_prefix(c), plen) == 0 && p->key[plen] == '.';
            rc = pc_errf(err, errlen, "%s: no tensor \"%s\"%s%s%s (the %s encoder needs it)", dir, p->key,
                         bare ? " (nor \"" : "", bare ? p->key + plen + 1 : "", bare ? "\")" : "", pc_bert_prefix(c));
            continue;
        }
        /* a head the checkpoint lacks: transformers' init, drawn as pc_init_fill (seed 0) */
        int64_t n = pc_shape_numel(p->shape);
        float *d = malloc((size_t)(n ? n : 1) * sizeof *d);
        if (!d || add_entry(x, p->key, NULL, p->shape, d)) {
            free(d);
            rc = pc_errf(err, errlen, "out of memory");
            continue;
        }
        uint64_t h = 1469598103934665603ull;
        for (const char *q = p->key; *q; q++) h = (h ^ (unsigned char)*q) * 1099511628211ull;
        for (int64_t j = 0; j < n; j++)
            d[j] = p->init.kind == PC_INIT_NORMAL ? (float)(p->init.a * pc_hash_normal(0, h, (uint64_t)j)) : 0.0f;
        size_t ml = strlen(made);
        snprintf(made + ml, sizeof made - ml, "%s%s", ml ? ", " : "", p->key);
    }
    pc_graph_free(g);
    if (!rc && made[0] && out_note) {
        char note[1600];
        snprintf(note, sizeof note, "%s: no %s in the checkpoint: initialized as transformers does (normal(0, %g) "
                 "weights, zero biases; the same values on every run)", dir, made, c->initializer_range);
        *out_note = strdup(note); /* told by the session, unless an adapter brings the head */
    }
    return rc;
}

static void hf_bert_close(pc_model *m) {
    bert_impl *x = m->impl;
    if (!x) return;
    for (int i = 0; i < x->n; i++) {
        free(x->e[i].key);
        free(x->e[i].data);
    }
    free(x->e);
    pc_hf_close(x->ckpt);
    free(x);
    m->impl = NULL;
}

static int hf_bert_open(pc_model *m, const char *path, char *err, size_t errlen) {
    bert_impl *x = calloc(1, sizeof *x);
    if (!x) return pc_errf(err, errlen, "out of memory");
    m->impl = x;
    if (!(x->ckpt = pc_hf_open(path, err, errlen)) || read_config(x->ckpt, &x->cfg, err, errlen)) {
        hf_bert_close(m);
        return -1;
    }
    /* transformers' from_pretrained(num_labels=N): the head is made for N labels */
    if (m->num_labels > 0) x->cfg.num_labels = m->num_labels, x->labels_asked = true;
    if (index_weights(x, &m->head_note, err, errlen)) {
        hf_bert_close(m);
        return -1;
    }
    const pc_bert_config *c = &x->cfg;
    m->info = (pc_model_info){.model_type = c->roberta ? "roberta" : "bert", .dim = c->dim, .vocab = c->vocab_size,
                              .context = pc_bert_context(c), .n_layers = c->n_layers, .n_heads = c->n_heads,
                              .n_kv_heads = c->n_heads, .num_labels = c->num_labels,
                              .head_weight = c->roberta ? "classifier.out_proj.weight" : "classifier.weight",
                              .encoder = true, .start_id = -1, .stop_id = -1};
    m->kv_row = 0; /* no decode graphs */
    return 0;
}

static pc_graph *hf_bert_build(const pc_model *m, const pc_build_req *req, const pc_site_hook *hook, char *err,
                               size_t errlen) {
    return pc_bert_build(&((const bert_impl *)m->impl)->cfg, req, hook, err, errlen);
}

static const float *hf_bert_weight(const pc_model *m, const char *key, pc_shape *shape) {
    const bert_impl *x = m->impl;
    const entry *e = resolve(x, key);
    return e ? entry_data(x, e, shape, NULL, 0) : NULL;
}

static int hf_bert_nweights(const pc_model *m) { return ((const bert_impl *)m->impl)->n; }
static const char *hf_bert_weight_key(const pc_model *m, int i) {
    const bert_impl *x = m->impl;
    return i >= 0 && i < x->n ? x->e[i].key : NULL;
}

/* an HF directory of the *ForSequenceClassification layout: every floating-point tensor in f32
 * under the SEQ_CLASSIFY graph's names (the replaced ones merged, a head made here included),
 * the config with dtype float32, the tokenizer and other files copied */
static int hf_bert_write(const pc_model *m, const char *path, const pc_weight *rep, int n, char *err, size_t errlen) {
    const bert_impl *x = m->impl;
    pc_hf_tensor *t = calloc((size_t)(x->n ? x->n : 1), sizeof *t);
    /* a *ForSequenceClassification directory, its head's labels in the config */
    char *config = pc_hf_config_text_classifier(x->ckpt, x->cfg.roberta ? "RobertaForSequenceClassification"
                                                : "BertForSequenceClassification", x->cfg.num_labels);
    int rc = t && config ? 0 : pc_errf(err, errlen, "%s: out of memory", path), nt = 0;
    for (int i = 0; !rc && i < x->n; i++) {
        const entry *e = &x->e[i];
        const char *dt = e->file_key ? pc_hf_weight_dtype(x->ckpt, e->file_key) : "F32";
        if (strcmp(dt, "F32") && strcmp(dt, "BF16") && strcmp(dt, "F16") && strcmp(dt, "F64")) continue;
        t[nt].key = e->key;
        for (int j = 0; j < n && !t[nt].data; j++)
            if (strcmp(rep[j].key, e->key) == 0) t[nt].data = rep[j].data, t[nt].shape = rep[j].shape;
        if (!t[nt].data && !(t[nt].data = entry_data(x, e, &t[nt].shape, err, errlen))) rc = -1;
        nt++;
    }
    if (!rc) rc = pc_hf_write_model(path, config, t, nt, pc_hf_dir(x->ckpt), err, errlen);
    free(config);
    free(t);
    return rc;
}

static int hf_bert_rotary_rows(const pc_model *m, const char *module) {
    (void)m, (void)module;
    return 0;
}

const pc_bert_config *pc_hf_bert_config(const pc_model *m) {
    return m && m->family == &pc_family_hf_bert ? &((const bert_impl *)m->impl)->cfg : NULL;
}

const pc_model_family pc_family_hf_bert = {
    .name = "hf-bert",
    .model_type = "bert",
    .format = "Hugging Face model directory",
    .probe = hf_bert_probe,
    .open = hf_bert_open,
    .close = hf_bert_close,
    .build = hf_bert_build,
    .weight = hf_bert_weight,
    .nweights = hf_bert_nweights,
    .weight_key = hf_bert_weight_key,
    .write = hf_bert_write,
    .rotary_rows = hf_bert_rotary_rows,
    .tokenizer = pc_hf_dir_tokenizer,
};
