/* Opening a model, its tokenizer and an adapter; applying the adapter to a model's graphs. */
#include "drivers/session.h"
#include "drivers/bf16_weights.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "passes/modules_to_save.h"
#include "passes/pipeline.h"
#include "runtime/bf16.h"
#include "runtime/fileio.h"
#include "runtime/target_match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PEFTC_SOURCE_ROOT
#define PEFTC_SOURCE_ROOT "."
#endif
/* the installed data directory relative to the installed executable's directory (CMakeLists.txt) */
#ifndef PEFTC_INSTALL_DATA_REL
#define PEFTC_INSTALL_DATA_REL "../share/peftc/data"
#endif

const char *pc_exe_dir(char *buf, size_t len) {
    if (len < 2) return NULL;
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0 || (size_t)n >= len - 1) return NULL; /* no /proc, or maybe truncated */
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash) return NULL;
    if (slash == buf) slash[1] = '\0'; /* "/peftc": "/" */
    else *slash = '\0';
    return buf;
}

/* where the default files may be, in order: PEFTC_DATA_DIR, the installed data beside the
 * executable, the source tree's data/ (the build tree), ./data; returns how many (bufs hold the
 * computed ones) */
static int data_roots(const char *roots[4], char exe[4096], char inst[4200]) {
    int n = 0;
    const char *env = getenv("PEFTC_DATA_DIR");
    if (env && *env) roots[n++] = env;
    if (pc_exe_dir(exe, 4096)) {
        if (PEFTC_INSTALL_DATA_REL[0] == '/') roots[n++] = PEFTC_INSTALL_DATA_REL;
        else if ((size_t)snprintf(inst, 4200, "%s/%s", exe, PEFTC_INSTALL_DATA_REL) < 4200) roots[n++] = inst;
    }
    roots[n++] = PEFTC_SOURCE_ROOT "/data";
    roots[n++] = "data";
    return n;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *pc_default_data_dir(char *buf, size_t len) {
    const char *roots[4];
    char exe[4096], inst[4200];
    int n = data_roots(roots, exe, inst);
    for (int i = 0; i < n; i++)
        if (is_dir(roots[i])) {
            char *canon = realpath(roots[i], NULL); /* without the "bin/.." */
            snprintf(buf, len, "%s", canon ? canon : roots[i]);
            free(canon);
            return buf;
        }
    return NULL;
}

const char *pc_default_path(const char *relative, char *buf, size_t len) {
    const char *roots[4];
    char exe[4096], inst[4200];
    int n = data_roots(roots, exe, inst);
    for (int i = 0; i < n; i++) {
        snprintf(buf, len, "%s/%s", roots[i], relative);
        if (access(buf, R_OK) == 0) return buf;
    }
    /* not found: the path in the first data directory that exists, for the error message */
    const char *root = PEFTC_SOURCE_ROOT "/data";
    for (int i = 0; i < n; i++)
        if (is_dir(roots[i])) {
            root = roots[i];
            break;
        }
    snprintf(buf, len, "%s/%s", root, relative);
    return buf;
}

int pc_session_seq_cls_heads(pc_adapter_config *c) {
    static const char *const heads[] = {"classifier", "score"};
    pc_spec *m = &c->modules_to_save;
    const char *items[64];
    size_t n = 0;
    for (size_t i = 0; i < m->n && n < 62; i++) items[n++] = m->items[i];
    size_t had = n;
    for (size_t h = 0; h < 2; h++) {
        bool found = false;
        for (size_t i = 0; i < had; i++) found |= strcmp(items[i], heads[h]) == 0;
        if (!found) items[n++] = heads[h];
    }
    if (n == m->n && m->kind == PC_SPEC_LIST) return 0;
    return pc_spec_set_list(m, items, n); /* copies the strings before it frees m's */
}

/* the method of a config: by its peft_type (PEFT's, or a registered method's own) */
int pc_session_find_method(pc_session *s, char *err, size_t errlen) {
    const pc_adapter_config *cfg = s->adapter.cfg;
    const char *type = pc_adapter_config_type_name(cfg);
    if (!(s->method = pc_registry_find(s->reg, type)))
        return pc_errf(err, errlen, "%s: field \"peft_type\": %s is not implemented by peftc yet", s->adapter_source,
                       type ? type : "?");
    /* what PEFT fills in from the model's config for prompt methods (and saves) */
    if (pc_peft_type_is_prompt_learning(cfg->peft_type)) {
        pc_adapter_config *c = s->adapter.cfg;
        const pc_model_info *mi = &s->model.info;
        const bool fill_dim = c->prompt.token_dim == PC_INT_NULL, fill_heads = c->prompt.num_attention_heads == PC_INT_NULL;
        if (c->prompt.token_dim == PC_INT_NULL) c->prompt.token_dim = mi->dim;
        if (c->prompt.num_transformer_submodules == PC_INT_NULL) c->prompt.num_transformer_submodules = 1;
        if (c->prompt.num_attention_heads == PC_INT_NULL) c->prompt.num_attention_heads = mi->n_heads;
        if (c->prompt.num_layers == PC_INT_NULL) c->prompt.num_layers = mi->n_layers;
        /* PEFT's GQA rule for prefix tuning: the prefix is as wide as the keys and values (the
         * same as the above without grouped-query attention) */
        if (c->peft_type == PC_PEFT_PREFIX_TUNING && mi->n_heads > 0 && mi->n_kv_heads > 0) {
            const bool gqa = mi->n_kv_heads != mi->n_heads; /* PEFT overwrites the fields then */
            if (fill_dim || gqa) c->prompt.token_dim = (int64_t)(mi->dim / mi->n_heads) * mi->n_kv_heads;
            if (fill_heads || gqa) c->prompt.num_attention_heads = mi->n_kv_heads;
        }
    }
    /* PEFT's per-model defaults for a null target_modules (and IA3's feedforward_modules) */
    if (cfg->target_modules.kind == PC_SPEC_NULL && !pc_peft_type_is_prompt_learning(cfg->peft_type) &&
        cfg->peft_type != PC_PEFT_CUSTOM) {
        char msg[512];
        if (pc_adapter_config_fill_default_targets(s->adapter.cfg, s->model.info.model_type, msg, sizeof msg))
            return pc_errf(err, errlen, "%s: field \"target_modules\": null and %s", s->adapter_source, msg);
    }
    /* PEFT makes fan_in_fan_out follow the module: true on transformers' Conv1D (GPT-2), false on
     * nn.Linear, warning when the config says otherwise (and saves what it set). The family hands
     * Conv1D weights to the graph as [out, in], so the flag changes no math here. */
    const bool conv1d = s->model.info.conv1d;
    if ((cfg->peft_type == PC_PEFT_LORA || cfg->peft_type == PC_PEFT_ADALORA || cfg->peft_type == PC_PEFT_IA3) &&
        cfg->fan_in_fan_out != conv1d) {
        fprintf(stderr, "warning: %s: fan_in_fan_out is set to %s but the target modules are %s. Setting "
                "fan_in_fan_out to %s (as PEFT does)\n", s->adapter_source, conv1d ? "false" : "true",
                conv1d ? "`Conv1D`" : "`torch.nn.Linear`", conv1d ? "true" : "false");
        s->adapter.cfg->fan_in_fan_out = conv1d;
    }
    /* an encoder's graphs classify: a config made for it says SEQ_CLS (or FEATURE_EXTRACTION,
     * whose graphs have no loss to train); null is taken as SEQ_CLS, whose head trains */
    if (s->model.info.encoder) {
        if (cfg->task_type == PC_TASK_NONE) {
            fprintf(stderr, "warning: %s: task_type is null; %s is a %s encoder with a classification head: "
                    "taking SEQ_CLS (its classifier trains as a modules_to_save copy)\n", s->adapter_source,
                    s->model.path, s->model.info.model_type ? s->model.info.model_type : "");
            s->adapter.cfg->task_type = PC_TASK_SEQ_CLS;
        } else if (cfg->task_type != PC_TASK_SEQ_CLS && cfg->task_type != PC_TASK_FEATURE_EXTRACTION) {
            return pc_errf(err, errlen, "%s: field \"task_type\": %s, but %s is a %s encoder: peftc runs SEQ_CLS "
                           "(or FEATURE_EXTRACTION) adapters on it", s->adapter_source,
                           pc_task_type_name(cfg->task_type), s->model.path,
                           s->model.info.model_type ? s->model.info.model_type : "");
        }
    } else if (cfg->task_type == PC_TASK_SEQ_CLS) {
        return pc_errf(err, errlen, "%s: field \"task_type\": SEQ_CLS, but %s is a causal LM (%s): peftc classifies "
                       "with encoders (BERT, RoBERTa)", s->adapter_source, s->model.path,
                       s->model.info.model_type ? s->model.info.model_type : s->model.family->name);
    }
    /* PEFT's sequence classifiers train their head as a modules_to_save copy (and save the
     * extended list) */
    if (cfg->task_type == PC_TASK_SEQ_CLS && pc_session_seq_cls_heads(s->adapter.cfg))
        return pc_errf(err, errlen, "out of memory");
    if ((cfg->peft_type == PC_PEFT_LOHA || cfg->peft_type == PC_PEFT_LOKR) && conv1d)
        fprintf(stderr, "warning: %s: PEFT's %s supports no `Conv1D` module (it raises \"Target module ... not "
                "supported\"): peftc applies it to this model's projections as to linears, but PEFT will not load "
                "the adapter\n", s->adapter_source, pc_adapter_config_type_name(cfg));
    return 0;
}

int pc_session_open(pc_session *s, const pc_registry *reg, const char *model, const char *tokenizer,
                    const char *adapter, char *err, size_t errlen) {
    return pc_session_open_labels(s, reg, model, tokenizer, adapter, 0, err, errlen);
}

/* the labels of the classifier copy an adapter holds (its modules_to_save head), 0 without */
static int adapter_head_labels(const pc_session *s) {
    const char *head = s->model.info.head_weight;
    if (!head || !s->adapter.weights) return 0;
    char key[600];
    snprintf(key, sizeof key, "%s%s", PC_PEFT_KEY_PREFIX, head);
    const pc_st_tensor *t = pc_st_find(s->adapter.weights, key);
    return t && t->shape.rank == 2 && t->shape.dim[0] >= 2 && t->shape.dim[0] <= (1 << 24) ? (int)t->shape.dim[0] : 0;
}

int pc_session_open_labels(pc_session *s, const pc_registry *reg, const char *model, const char *tokenizer,
                           const char *adapter, int num_labels, char *err, size_t errlen) {
    *s = (pc_session){.reg = reg, .adapter_source = adapter};
    if (!reg && !(s->reg = s->own_reg = pc_registry_new())) return pc_errf(err, errlen, "out of memory");
    if (pc_model_open_labels(&s->model, model, NULL, num_labels, err, errlen)) goto fail;
    if (adapter) {
        /* configs may name the registered methods that are not PEFT's */
        const char *custom[64];
        size_t nc = pc_registry_custom_types(s->reg, custom, 64);
        if (pc_adapter_load_ex(adapter, &s->adapter, custom, nc, err, errlen)) goto fail;
        for (size_t i = 0; i < s->adapter.cfg->n_warnings; i++)
            fprintf(stderr, "warning: %s: %s\n", adapter, s->adapter.cfg->warnings[i]);
        /* a trained classifier fixes the head's labels, as PEFT needs num_labels=N to load it */
        int head = num_labels ? 0 : adapter_head_labels(s);
        if (head && head != s->model.info.num_labels) {
            pc_model_close(&s->model);
            if (pc_model_open_labels(&s->model, model, NULL, head, err, errlen)) goto fail;
        }
    }
    /* a head the checkpoint lacks was made at open: say so, unless the adapter brings its own */
    if (s->model.head_note && !(adapter && adapter_head_labels(s)))
        fprintf(stderr, "warning: %s\n", s->model.head_note);
    if (tokenizer && !(s->tok = pc_text_tokenizer_open(tokenizer, s->model.info.vocab, err, errlen))) goto fail;
    /* no --tokenizer: the model's own, where it has one, else the bundled one if its vocabulary
     * is the model's (a merged stories260K written elsewhere) */
    if (!tokenizer && s->model.family->tokenizer) {
        if (errlen) err[0] = 0;
        if (!(s->tok = s->model.family->tokenizer(&s->model, err, errlen)) && errlen && err[0]) goto fail;
    }
    if (!tokenizer && !s->tok) {
        char buf[4096], msg[256];
        const char *bundled = pc_default_path("stories260K/tok512.bin", buf, sizeof buf);
        if (s->model.info.vocab == 512 && access(bundled, R_OK) == 0)
            s->tok = pc_text_tokenizer_open(bundled, s->model.info.vocab, msg, sizeof msg);
    }
    if (adapter && pc_session_find_method(s, err, errlen)) goto fail;
    return 0;
fail:
    pc_session_close(s);
    return -1;
}

int pc_session_need_tokenizer(const pc_session *s, const char *what, char *err, size_t errlen) {
    if (s->tok) return 0;
    return pc_errf(err, errlen, "%s needs a tokenizer and %s has none (no tokenizer file beside it): give --tokenizer",
                   what, s->model.path);
}

void pc_session_close(pc_session *s) {
    pc_bf16_weights_free(s->bf16);
    pc_session_named_free(s);
    pc_model_close(&s->model);
    pc_text_tokenizer_free(s->tok);
    pc_adapter_close(&s->adapter);
    pc_registry_free(s->own_reg);
    *s = (pc_session){0};
}

int pc_session_set_base_dtype(pc_session *s, pc_dtype dt, char *err, size_t errlen) {
    if (dt != PC_F32 && dt != PC_BF16) return pc_errf(err, errlen, "the base dtype must be f32 or bf16");
    if (dt == PC_BF16 && !pc_cpu_has_bf16()) {
        fprintf(stderr, "warning: this CPU has no bf16 instructions (AVX512_BF16 or AMX-BF16): the base stays f32\n");
        dt = PC_F32;
    }
    s->base_dtype = dt;
    if (dt == PC_BF16 && !s->bf16 && !(s->bf16 = pc_bf16_weights_new())) return pc_errf(err, errlen, "out of memory");
    return 0;
}

int pc_session_set_adapter(pc_session *s, pc_adapter_config *cfg, const char *source, char *err, size_t errlen) {
    pc_adapter_config_free(s->adapter.cfg);
    s->adapter.cfg = cfg;
    s->adapter_source = source;
    s->method = NULL;
    return cfg ? pc_session_find_method(s, err, errlen) : 0;
}

int pc_session_default_adapter(pc_session *s, char *err, size_t errlen) {
    if (s->adapter.cfg) return 0;
    static const char *const llama[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    static const char *const gpt2[] = {"c_attn", "c_proj", "c_fc"}; /* c_proj: attention and MLP */
    static const char *const encoder[] = {"query", "value"};         /* PEFT's default for BERT, RoBERTa */
    const bool is_gpt2 = s->model.info.model_type && strcmp(s->model.info.model_type, "gpt2") == 0;
    const bool enc = s->model.info.encoder;
    pc_adapter_config *c = pc_adapter_config_new(PC_PEFT_LORA);
    if (!c || pc_spec_set_list(&c->target_modules, enc ? encoder : is_gpt2 ? gpt2 : llama, enc ? 2 : is_gpt2 ? 3 : 7)) {
        pc_adapter_config_free(c);
        return pc_errf(err, errlen, "out of memory");
    }
    c->r = 8;
    c->lora.lora_alpha = (pc_num){.v = 16, .is_int = true};
    c->lora.lora_dropout = (pc_num){.v = 0.0, .is_int = false};
    c->task_type = enc ? PC_TASK_SEQ_CLS : PC_TASK_CAUSAL_LM; /* SEQ_CLS: the head trains too */
    c->fan_in_fan_out = s->model.info.conv1d; /* what PEFT would set */
    return pc_session_set_adapter(s, c, enc ? "the default adapter (LoRA r=8 on query, value; the classifier trained)"
                                            : "the default adapter (LoRA r=8)", err, errlen);
}

/* encode as PEFT's tokenizer(text) does (with the special tokens: BOS for a Llama) */
static int tokenize(void *ctx, const char *text, int32_t *ids, int cap) {
    const pc_session *s = ctx;
    if (!s->tok) return -1;
    size_t n = 0;
    int32_t *buf;
    char msg[256];
    if (pc_text_encode(s->tok, text, strlen(text), true, &buf, &n, msg, sizeof msg)) return -1;
    if (n > (size_t)cap) n = (size_t)cap;
    memcpy(ids, buf, n * sizeof *ids);
    free(buf);
    return (int)n;
}

pc_adapt_ctx *pc_session_adapter(const pc_session *s, pc_adapt_mode mode, bool trainable, uint64_t seed, char *err,
                                 size_t errlen) {
    if (!s->adapter.cfg || !s->method) { pc_errf(err, errlen, "no adapter"); return NULL; }
    pc_adapt_ctx *cx = pc_adapt_new(s->method, s->adapter.cfg, s->adapter_source, mode, trainable, &s->model.info,
                                    err, errlen);
    if (cx) {
        pc_adapt_set_env(cx, tokenize, (void *)s, seed);
        pc_adapt_set_task(cx, s->task_id);
        pc_adapt_set_training_run(cx, s->training_run);
    }
    return cx;
}

/* virtual tokens (with_tokens) or prefix positions, or both */
static int positions_before(const pc_session *s, bool with_tokens) {
    if (!s->method || (!s->method->prefix_positions && (!with_tokens || !s->method->virtual_tokens))) return 0;
    char msg[256];
    pc_adapt_ctx *cx = pc_session_adapter(s, PC_ADAPT_EVAL, false, 0, msg, sizeof msg);
    int n = cx ? pc_adapt_prefix_positions(cx) + (with_tokens ? pc_adapt_virtual_tokens(cx) : 0) : 0;
    pc_adapt_free(cx);
    return n;
}

int pc_session_virtual_tokens(const pc_session *s) { return positions_before(s, true); }
int pc_session_prefix_positions(const pc_session *s) { return positions_before(s, false); }

static pc_graph *build_base_dtype(const pc_session *s, pc_graph *g, char *err, size_t errlen) {
    if (g && s->base_dtype == PC_BF16 && pc_base_bf16_apply(&g, pc_session_is_base, (void *)s, NULL, err, errlen)) {
        pc_graph_free(g);
        return NULL;
    }
    return g;
}

static pc_graph *build_adapted(const pc_session *s, const pc_build_req *req, bool trainable, char *err, size_t errlen);

static pc_graph *build(const pc_session *s, const pc_build_req *req, bool trainable, char *err, size_t errlen) {
    return build_base_dtype(s, build_adapted(s, req, trainable, err, errlen), err, errlen);
}

static pc_graph *build_adapted(const pc_session *s, const pc_build_req *req, bool trainable, char *err, size_t errlen) {
    if (s->mixed && (trainable || s->merged))
        return pc_errf(err, errlen, "a mixed-adapter batch is for inference: it is neither trained nor merged"), NULL;
    if ((!s->adapter.cfg || s->merged) && !s->mixed) return pc_model_build(&s->model, req, NULL, err, errlen);
    pc_adapt_ctx *cx = s->mixed ? pc_session_mixed_adapter(s, req->mode, err, errlen)
                                : pc_session_adapter(s, req->mode, trainable, 0, err, errlen);
    if (!cx) return NULL;
    pc_site_hook hook = {pc_adapt_site, cx};
    pc_graph *g = pc_model_build(&s->model, req, &hook, err, errlen);
    /* a rewrite may leave the value it replaced unused (IA3 on a feedforward input); products with a
     * Kronecker product (LoKr) never form it */
    if (g && (pc_adapt_finish(cx, g, err, errlen) ||
              (!s->mixed && pc_modules_to_save_apply(g, &s->adapter.cfg->modules_to_save, trainable, pc_session_is_base,
                                                     (void *)s, NULL, err, errlen)) ||
              pc_run_pipeline(&g, "fuse-kron,dce", NULL, err, errlen))) {
        pc_graph_free(g);
        g = NULL;
    }
    pc_adapt_free(cx);
    return g;
}

pc_graph *pc_session_build(const pc_session *s, const pc_build_req *req, bool trainable, char *err, size_t errlen) {
    return pc_session_build_dump(s, req, trainable, s->dump_after, err, errlen);
}

pc_graph *pc_session_build_dump(const pc_session *s, const pc_build_req *req, bool trainable, const char *dump_after,
                                char *err, size_t errlen) {
    pc_graph *g = build(s, req, trainable, err, errlen);
    pc_pipeline_opts po = {.dump_after = dump_after, .print = {.elide_consts_over = 16, .show_locations = 1}};
    if (g) pc_pipeline_dump(g, "adapt", &po);
    return g;
}

int pc_session_is_base(void *session, const char *key) {
    const pc_session *s = session;
    /* a bf16 tensor of the file answers without making its f32 copy */
    return pc_model_weight_bf16(&s->model, key, NULL) != NULL || pc_model_weight(&s->model, key, NULL) != NULL;
}

/* init_from_base's lookup: a frozen model tensor, else one of the run's tensors as the store
 * filled it (DoRA's magnitude reads the module's W, A and B), else an f32 tensor of the adapter
 * file the run started from (P-tuning tells a saved encoder output from a checkpoint) */
typedef struct {
    const pc_session *s;
    const pc_store *st;
} base_ctx;

static const float *base_lookup(void *ctx, const char *key, pc_shape *shape) {
    const base_ctx *b = ctx;
    const float *w = pc_model_weight(&b->s->model, key, shape);
    if (w) return w;
    const pc_store_entry *e = pc_store_find(b->st, key);
    if (e && shape) *shape = e->shape;
    if (e) return e->data;
    const pc_st_tensor *t = b->s->adapter.weights ? pc_st_find(b->s->adapter.weights, key) : NULL;
    if (!t || t->dtype != PC_F32) return NULL;
    if (shape) *shape = t->shape;
    return t->data;
}

static int qk_rows(const pc_session *s, pc_store *st, int to_file, int check, char *err, size_t errlen);

int pc_session_missing_weights(const pc_session *s, const char *key, char *err, size_t errlen) {
    const char *src = s->adapter_source ? s->adapter_source : "the adapter", *slash = strrchr(src, '/');
    char dir[4096], weights[4200], need[700] = "";
    if (key) snprintf(need, sizeof need, "\"%s\" is needed; ", key);
    if (!slash) snprintf(dir, sizeof dir, ".");
    else snprintf(dir, sizeof dir, "%.*s", slash == src ? 1 : (int)(slash - src), src);
    snprintf(weights, sizeof weights, "%s/%s", dir, PC_ADAPTER_WEIGHTS_NAME);
    struct stat st;
    if (stat(weights, &st) == 0)
        return pc_errf(err, errlen, "%s is a config file, which holds no trained tensors (%spass the adapter directory "
                       "%s, which has %s)", src, need, dir, PC_ADAPTER_WEIGHTS_NAME);
    return pc_errf(err, errlen, "%s is a config file, which holds no trained tensors: the weights file %s is missing "
                   "in %s (%sa trained adapter is a directory with %s and %s)", src, PC_ADAPTER_WEIGHTS_NAME, dir,
                   need, PC_ADAPTER_CONFIG_NAME, PC_ADAPTER_WEIGHTS_NAME);
}

/* --adapter CONFIG.json where trained tensors are needed (eval): say that the weights file is
 * what is missing, and where, rather than that one tensor is */
static int no_weights(const pc_session *s, const pc_graph *g, const pc_st_file *extra, char *err, size_t errlen) {
    const char *key = s->adapter.weights || extra ? NULL : pc_store_file_key(g, pc_session_is_base, (void *)s);
    struct stat st;
    if (!key || !s->adapter_source || stat(s->adapter_source, &st) || S_ISDIR(st.st_mode)) return 0;
    return pc_session_missing_weights(s, key, err, errlen);
}

int pc_session_store(const pc_session *s, const pc_graph *g, pc_store *st, const pc_st_file *extra, uint64_t seed,
                     char *err, size_t errlen) {
    *st = (pc_store){0};
    if (s->mixed) {
        if (pc_session_store_mixed(s, g, st, err, errlen)) return -1;
        if (qk_rows(s, st, 0, 1, err, errlen)) return pc_store_free(st), -1;
        pc_session_fix_qk_rows(s, st, 0);
        return 0;
    }
    if (no_weights(s, g, extra, err, errlen)) return -1;
    const pc_st_file *files[2] = {s->adapter.weights, extra};
    if (pc_store_init(st, g, pc_session_is_base, (void *)s, files, 2, seed, err, errlen)) return -1;
    if (qk_rows(s, st, 0, 1, err, errlen)) return pc_store_free(st), -1;
    pc_session_fix_qk_rows(s, st, 0); /* loaded rows are in the file's order */
    /* a modules_to_save copy starts as the base module */
    for (int i = 0; i < st->n; i++) {
        pc_store_entry *e = &st->e[i];
        size_t np = strlen(PC_PEFT_KEY_PREFIX);
        pc_shape sh;
        if (e->loaded || !(e->flags & PC_TRAINABLE) || strncmp(e->key, PC_PEFT_KEY_PREFIX, np)) continue;
        const float *w = pc_model_weight(&s->model, e->key + np, &sh);
        if (w && pc_shape_eq(sh, e->shape)) memcpy(e->data, w, (size_t)e->n * sizeof *w);
    }
    if (!s->method || !s->method->init_from_base) return 0;
    pc_adapt_ctx *cx = pc_session_adapter(s, PC_ADAPT_TRAIN, true, seed, err, errlen);
    if (!cx) return -1;
    int rc = 0;
    char msg[1024] = "";
    base_ctx bc = {s, st};
    for (int i = 0; i < st->n && !rc; i++) {
        pc_store_entry *e = &st->e[i];
        if (e->loaded || !(e->flags & PC_TRAINABLE)) continue;
        if (s->method->init_from_base(cx, pc_adapt_state(cx), e->key, e->data, e->shape, base_lookup, &bc, msg,
                                      sizeof msg) < 0)
            rc = pc_errf(err, errlen, "%s: %s", s->adapter_source, msg);
    }
    pc_adapt_free(cx);
    return rc;
}

int pc_session_bind_base(const pc_session *s, pc_exec *r, const pc_graph *g, bool all, char *err, size_t errlen) {
    const char *file = s->model.path;
    for (pc_val i = 0; i < g->nvals; i++) {
        const pc_value *v = &g->vals[i];
        if (v->op != PC_OP_param || !(v->flags & PC_FROZEN)) continue;
        if (!v->key) return pc_errf(err, errlen, "bind: frozen param %%%s has no checkpoint key", v->name);
        pc_shape sh;
        const uint16_t *raw = v->dtype == PC_BF16 ? pc_model_weight_bf16(&s->model, v->key, &sh) : NULL;
        if (raw && pc_shape_eq(v->shape, sh)) { /* the file's own bf16 bytes: no copy at all */
            if (r && pc_exec_bind(r, i, (void *)raw))
                return pc_errf(err, errlen, "bind: the executor refused '%s' (%%%s)", v->key, v->name);
            continue;
        }
        const float *data = pc_model_weight(&s->model, v->key, &sh);
        if (!data) {
            if (!all) continue; /* an adapter param: the caller's store binds it */
            return pc_errf(err, errlen, "bind: %s has no tensor '%s' (wanted by %%%s)", file, v->key, v->name);
        }
        if (v->dtype == PC_BF16 && s->bf16 && pc_shape_eq(v->shape, sh)) { /* passes/base_bf16.c chose it */
            if (!(data = (const float *)(const void *)pc_bf16_weights_get(s->bf16, v->key, data, (size_t)pc_shape_numel(sh))))
                return pc_errf(err, errlen, "bind: out of memory for the bf16 copy of '%s'", v->key);
        } else if (v->dtype != PC_F32 || !pc_shape_eq(v->shape, sh)) {
            char a[96], b[96];
            pc_shape_str(sh, a, sizeof a);
            pc_shape_str(v->shape, b, sizeof b);
            return pc_errf(err, errlen, "bind: tensor '%s' is f32%s in %s but %%%s is %s%s", v->key, a, file, v->name,
                           pc_dtype_name(v->dtype), b);
        }
        /* frozen params are never written (no update targets them), so the read-only mapping is fine */
        if (r && pc_exec_bind(r, i, (void *)data))
            return pc_errf(err, errlen, "bind: the executor refused '%s' (%%%s)", v->key, v->name);
    }
    return 0;
}

/* llama2.c rotates adjacent pairs (2i, 2i+1); HF-converted checkpoints store row 2i+j of each
 * head at j*hd/2 + i (llama2.c export.py's permute) */
void pc_qk_permute_rows(float *w, int64_t rows, int64_t cols, int hd, int to_hf) {
    float *tmp = malloc((size_t)hd * (size_t)cols * sizeof *tmp);
    if (!tmp || hd < 2 || rows % hd) { free(tmp); return; }
    for (int64_t h = 0; h < rows / hd; h++) {
        float *blk = w + h * hd * cols;
        memcpy(tmp, blk, (size_t)hd * (size_t)cols * sizeof *tmp);
        for (int i = 0; i < hd / 2; i++)
            for (int j = 0; j < 2; j++) {
                int l2c = 2 * i + j, hf = j * (hd / 2) + i;
                int dst = to_hf ? hf : l2c, src = to_hf ? l2c : hf;
                memcpy(blk + (int64_t)dst * cols, tmp + (int64_t)src * cols, (size_t)cols * sizeof *tmp);
            }
    }
    free(tmp);
}

/* the q/k adapter tensors whose rows follow the RoPE row order: permutes them (check 0), or
 * (check 1) fails on one whose rows do not divide into heads, where no row permutation of the
 * tensor is the permutation of the module's rows (LoKr's w2 with fewer rows than a head) */
static int qk_rows(const pc_session *s, pc_store *st, int to_file, int check, char *err, size_t errlen) {
    /* prefix rows hold keys in the q/k head order too, as columns of a model-level table: not
     * permuted yet, so refused rather than run in the wrong order */
    if (check && s->hf_qk_rows && s->model.family->rotary_rows && pc_session_prefix_positions(s) > 0)
        return pc_errf(err, errlen, "%s: --hf-qk-rows: the %s adapter's key rows are not permuted from Hugging Face order "
                       "yet (run it on the Hugging Face model, or permute each layer's key columns as "
                       "tests/golden/gen_peft_prefix.py does)", s->adapter_source ? s->adapter_source : "adapter",
                       s->method->name);
    /* a mixed session's adapters share one method (the active one may be the base model) */
    const pc_adapter_method *m = s->method ? s->method : s->mixed && s->nnamed ? s->named[0].method : NULL;
    if (!s->hf_qk_rows || !m || !m->output_rows || !s->model.family->rotary_rows) return 0;
    static const char prefix[] = "base_model.model.";
    for (int i = 0; i < st->n; i++) {
        pc_store_entry *e = &st->e[i];
        /* a mixed graph keys each adapter's tensors "<name>/<PEFT key>" */
        const char *key = s->mixed && strchr(e->key, '/') ? strchr(e->key, '/') + 1 : e->key;
        if (!(e->flags & (PC_TRAINABLE | PC_FROZEN)) || strncmp(key, prefix, sizeof prefix - 1)) continue;
        /* "<module>.<tensor>": the longest prefix the family rotates is the module */
        const char *rest = key + sizeof prefix - 1;
        char module[512];
        snprintf(module, sizeof module, "%s", rest);
        for (char *dot = strrchr(module, '.'); dot; dot = strrchr(module, '.')) {
            *dot = 0;
            int hd = s->model.family->rotary_rows(&s->model, module);
            if (hd <= 0) continue;
            if (!m->output_rows(rest + strlen(module) + 1)) break;
            if (check && e->shape.dim[0] % hd)
                return pc_errf(err, errlen, "%s: --hf-qk-rows: %s has %lld rows, not a multiple of the head size %d, so "
                               "the Hugging Face q/k row order of %s is not a row order of this tensor (%s); use the "
                               "adapter without --hf-qk-rows (llama2.c row order)", s->adapter_source, e->key,
                               (long long)e->shape.dim[0], hd, module, m->name);
            if (!check && e->shape.dim[0] > 1 && e->shape.dim[0] % hd == 0)
                pc_qk_permute_rows(e->data, e->shape.dim[0], e->shape.rank == 2 ? e->shape.dim[1] : 1, hd, to_file);
            break;
        }
    }
    return 0;
}

void pc_session_fix_qk_rows(const pc_session *s, pc_store *st, int to_file) { qk_rows(s, st, to_file, 0, NULL, 0); }
