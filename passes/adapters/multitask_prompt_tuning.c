/* Multitask prompt tuning (PEFT's MultitaskPromptTuningConfig; reference/peft.md §10, Wang et al.
 * 2023): prompt tuning whose T virtual tokens depend on the example's task t. A shared prompt
 * `prompt_embeddings [T, D]` is scaled element-wise by a rank-k per-task factor:
 *     prompt_t = P ⊙ (prefix_task_cols[t] @ prefix_task_rows[t]),
 *     prefix_task_cols [num_tasks, T, k], prefix_task_rows [num_tasks, k, D], k = num_ranks,
 * and prepended to the input embeddings like prompt tuning (virtual positions 0..T-1, the head
 * drops them). Train and eval graphs take the task of each row from the i32 input %task_ids [B]
 * (the drivers fill it); a decode graph is built for one task (pc_adapt_task, --task-id) and
 * appends that task's prompt to the vocabulary as ids V..V+T-1 — weights only, so the fold pass
 * computes it once.
 * Init: prompt_embeddings RANDOM N(0, 1) or TEXT (rows of the frozen embeddings, as prompt
 * tuning); cols and rows N(0, 0.02). From a source run's safetensors file
 * (prompt_tuning_init_state_dict_path): AVERAGE_SOURCE_TASKS (P, and cols/rows averaged over the
 * source tasks), EXACT_SOURCE_TASK (P, and cols/rows of source task prompt_tuning_init_task),
 * ONLY_SOURCE_SHARED (P only). The first two load a single task (PEFT's strict load of a
 * [1, ...] tensor), so they need num_tasks = 1. Saved: the three tensors as trained. Not
 * mergeable. */
#include "passes/adapt.h"
#include "passes/adapters/virtual_tokens.h"
#include "ir/ir.h"
#include "runtime/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t T, D, N, K; /* virtual tokens, width, tasks, ranks */
    pc_st_file *src;    /* the source run's tensors (opened by the first init that needs them) */
} mpt_state;

static bool from_source(pc_prompt_init how) {
    return how == PC_PROMPT_INIT_AVERAGE_SOURCE_TASKS || how == PC_PROMPT_INIT_EXACT_SOURCE_TASK ||
           how == PC_PROMPT_INIT_ONLY_SOURCE_SHARED;
}

static const char *init_name(pc_prompt_init how) {
    return how == PC_PROMPT_INIT_AVERAGE_SOURCE_TASKS ? "AVERAGE_SOURCE_TASKS"
         : how == PC_PROMPT_INIT_EXACT_SOURCE_TASK    ? "EXACT_SOURCE_TASK"
         : how == PC_PROMPT_INIT_ONLY_SOURCE_SHARED   ? "ONLY_SOURCE_SHARED"
         : how == PC_PROMPT_INIT_TEXT                 ? "TEXT"
                                                      : "RANDOM";
}

static bool ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

static int mpt_begin(pc_adapt_ctx *cx, void *state, char *err, size_t errlen) {
    mpt_state *st = state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    const pc_model_info *mi = pc_adapt_model(cx);
    const pc_prompt_init how = cfg->prompt.prompt_tuning_init;
    st->T = cfg->prompt.num_virtual_tokens, st->D = mi->dim;
    st->N = cfg->prompt.num_tasks, st->K = cfg->prompt.num_ranks;
    if (pc_virtual_check_config(cx, err, errlen)) return -1;
    if (st->N == PC_INT_NULL || st->N <= 0)
        return snprintf(err, errlen, "field \"num_tasks\": must be a positive integer"), -1;
    if (st->K == PC_INT_NULL || st->K <= 0)
        return snprintf(err, errlen, "field \"num_ranks\": must be a positive integer"), -1;
    if (how == PC_PROMPT_INIT_TEXT && !cfg->prompt.prompt_tuning_init_text)
        return snprintf(err, errlen, "field \"prompt_tuning_init_text\": TEXT init needs the text"), -1;
    if (from_source(how)) {
        const char *path = cfg->prompt.prompt_tuning_init_state_dict_path;
        if (!path || !path[0])
            return snprintf(err, errlen, "field \"prompt_tuning_init_state_dict_path\": prompt_tuning_init %s needs the "
                            "source run's adapter file", init_name(how)), -1;
        if (!ends_with(path, ".safetensors"))
            return snprintf(err, errlen, "field \"prompt_tuning_init_state_dict_path\": %s is not a .safetensors file; "
                            "peftc does not read torch pickles (.bin): save the source run with safetensors", path), -1;
        if (how != PC_PROMPT_INIT_ONLY_SOURCE_SHARED && st->N != 1)
            return snprintf(err, errlen, "field \"num_tasks\": %lld, but prompt_tuning_init %s loads one task's "
                            "prefix_task_cols/rows ([1, ...], as PEFT does): use num_tasks 1, or ONLY_SOURCE_SHARED",
                            (long long)st->N, init_name(how)), -1;
    }
    return 0;
}

static void mpt_end(void *state) { pc_st_close(((mpt_state *)state)->src); }

static pc_val param(pc_adapt_ctx *cx, const pc_site *s, const char *name, pc_shape shape, double std) {
    pc_site top = *s;
    top.module = NULL; /* PEFT keys them without a module: "prompt_embeddings", "prefix_task_cols" */
    return pc_adapt_param(cx, &top, name, shape, (pc_init){PC_INIT_NORMAL, std, 0});
}

/* P ⊙ (cols[ids] @ rows[ids]) for task ids i32[n]: [n, T, D] */
static pc_val task_prompts(pc_adapt_ctx *cx, const mpt_state *st, const pc_site *s, pc_val ids, int64_t n) {
    pc_graph *g = s->g;
    pc_val p = param(cx, s, "prompt_embeddings", PC_SHAPE(st->T, st->D), 1.0);
    pc_val cols = param(cx, s, "prefix_task_cols", PC_SHAPE(st->N, st->T, st->K), 0.02);
    pc_val rows = param(cx, s, "prefix_task_rows", PC_SHAPE(st->N, st->K, st->D), 0.02);
    /* a gather of each row's task: embedding over the tensors flattened to one row per task */
    pc_val c = pc_embedding_at(g, s->loc, pc_reshape_at(g, s->loc, cols, PC_SHAPE(st->N, st->T * st->K)), ids);
    pc_val r = pc_embedding_at(g, s->loc, pc_reshape_at(g, s->loc, rows, PC_SHAPE(st->N, st->K * st->D)), ids);
    c = pc_reshape_at(g, s->loc, c, PC_SHAPE(n, st->T, st->K));
    r = pc_reshape_at(g, s->loc, r, PC_SHAPE(n, st->K, st->D));
    return pc_mul_at(g, s->loc, pc_matmul_at(g, s->loc, c, r, 0, 0), p);
}

static int mpt_rewrite(pc_adapt_ctx *cx, void *state, pc_site *s, char *err, size_t errlen) {
    mpt_state *st = state;
    pc_graph *g = s->g;
    bool decode = pc_adapt_get_mode(cx) == PC_ADAPT_DECODE;
    if (s->kind == PC_SITE_EMBED) {
        int task = pc_adapt_task(cx);
        if (task < 0 || task >= st->N)
            return snprintf(err, errlen, "task id %d (--task-id) is out of range: the adapter has num_tasks = %lld (ids 0..%lld)",
                            task, (long long)st->N, (long long)st->N - 1), -1;
        if (decode) { /* the task's prompt as ids V..V+T-1 */
            int32_t t = task;
            pc_val ids = pc_const_at(g, s->loc, PC_I32, PC_SHAPE(1), &t);
            pc_virtual_decode_embed(s, pc_reshape_at(g, s->loc, task_prompts(cx, st, s, ids, 1), PC_SHAPE(st->T, st->D)));
            return 1;
        }
        pc_shape e = pc_val_shape(g, s->value); /* [B, S, D] */
        pc_val ids = pc_lookup(g, "task_ids");
        if (ids == PC_NONE) ids = pc_input_at(g, s->loc, "task_ids", PC_I32, PC_SHAPE(e.dim[0]));
        pc_virtual_prepend(s, task_prompts(cx, st, s, ids, e.dim[0]));
        return 1;
    }
    return pc_virtual_other_site(s, st->T, decode, "multitask prompt tuning", err, errlen);
}

static int mpt_virtual_tokens(pc_adapt_ctx *cx, void *state) {
    (void)cx;
    return (int)((mpt_state *)state)->T;
}

/* TEXT: the tokenized text (BOS first), repeated or cut to T, rows of the frozen embeddings */
static int text_init(pc_adapt_ctx *cx, const mpt_state *st, float *data, pc_base_lookup base, void *base_ctx, char *err,
                     size_t errlen) {
    pc_shape es;
    const float *emb = base(base_ctx, "model.embed_tokens.weight", &es);
    if (!emb || es.rank != 2 || es.dim[1] != st->D)
        return snprintf(err, errlen, "prompt_tuning_init: the model has no embedding table of width %lld", (long long)st->D), -1;
    int cap = (int)st->T + 4096;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return snprintf(err, errlen, "out of memory"), -1;
    int n = pc_adapt_tokenize(cx, pc_adapt_config(cx)->prompt.prompt_tuning_init_text, ids, cap);
    if (n <= 0) {
        free(ids);
        return snprintf(err, errlen, "field \"prompt_tuning_init_text\": %s", n < 0 ? "no tokenizer to encode it" : "encodes to no tokens"), -1;
    }
    for (int64_t i = 0; i < st->T; i++) {
        int32_t id = ids[i % n];
        if (id < 0 || id >= es.dim[0]) { free(ids); return snprintf(err, errlen, "token id %d out of the vocabulary", (int)id), -1; }
        memcpy(data + i * st->D, emb + (int64_t)id * st->D, (size_t)st->D * sizeof *data);
    }
    free(ids);
    return 1;
}

/* the source tensor `key` as f32, checked to be `want` (rank and dims; dim 0 of cols/rows free:
 * the source run's task count). Returns a malloc'd copy, NULL with a message. */
static float *source_tensor(mpt_state *st, const char *path, const char *key, pc_shape want, bool any_dim0, pc_shape *got,
                            char *err, size_t errlen) {
    char msg[1024];
    if (!st->src && !(st->src = pc_st_open(path, msg, sizeof msg))) {
        snprintf(err, errlen, "field \"prompt_tuning_init_state_dict_path\": %s", msg);
        return NULL;
    }
    const pc_st_tensor *t = pc_st_find(st->src, key);
    if (!t) {
        snprintf(err, errlen, "field \"prompt_tuning_init_state_dict_path\": %s has no tensor \"%s\" (a multitask prompt "
                 "tuning run saves prompt_embeddings, prefix_task_cols and prefix_task_rows)", path, key);
        return NULL;
    }
    bool ok = t->shape.rank == want.rank && (any_dim0 ? t->shape.dim[0] > 0 : t->shape.dim[0] == want.dim[0]);
    for (int d = 1; ok && d < want.rank; d++) ok = t->shape.dim[d] == want.dim[d];
    if (!ok) {
        char a[96], b[96];
        pc_shape_str(t->shape, a, sizeof a);
        pc_shape_str(want, b, sizeof b);
        snprintf(err, errlen, "field \"prompt_tuning_init_state_dict_path\": %s: \"%s\" is %s, but this adapter needs %s%s",
                 path, key, a, b, any_dim0 ? " (any number of source tasks first)" : "");
        return NULL;
    }
    size_t n = (size_t)pc_shape_numel(t->shape);
    float *out = malloc((n ? n : 1) * sizeof *out);
    if (!out) { snprintf(err, errlen, "out of memory"); return NULL; }
    if (pc_st_to_f32(st->src, t, out, msg, sizeof msg)) {
        free(out);
        snprintf(err, errlen, "field \"prompt_tuning_init_state_dict_path\": %s", msg);
        return NULL;
    }
    *got = t->shape;
    return out;
}

static int mpt_init(pc_adapt_ctx *cx, void *state, const char *key, float *data, pc_shape shape, pc_base_lookup base,
                    void *base_ctx, char *err, size_t errlen) {
    mpt_state *st = state;
    const pc_adapter_config *cfg = pc_adapt_config(cx);
    const pc_prompt_init how = cfg->prompt.prompt_tuning_init;
    const bool shared = strcmp(key, "prompt_embeddings") == 0;
    const bool factor = !strcmp(key, "prefix_task_cols") || !strcmp(key, "prefix_task_rows");
    if (shared && how == PC_PROMPT_INIT_TEXT) return text_init(cx, st, data, base, base_ctx, err, errlen);
    if (!from_source(how) || !(shared || (factor && how != PC_PROMPT_INIT_ONLY_SOURCE_SHARED))) return 0;
    const char *path = cfg->prompt.prompt_tuning_init_state_dict_path;
    pc_shape got;
    float *src = source_tensor(st, path, key, shape, factor, &got, err, errlen);
    if (!src) return -1;
    size_t per = (size_t)pc_shape_numel(shape); /* one task's factor (num_tasks is 1 here) */
    if (shared) {
        memcpy(data, src, per * sizeof *data);
    } else if (how == PC_PROMPT_INIT_EXACT_SOURCE_TASK) {
        int64_t t = cfg->prompt.prompt_tuning_init_task == PC_INT_NULL ? 0 : cfg->prompt.prompt_tuning_init_task;
        if (t < 0 || t >= got.dim[0]) {
            free(src);
            return snprintf(err, errlen, "field \"prompt_tuning_init_task\": %lld, but %s holds %lld source tasks", (long long)t,
                            path, (long long)got.dim[0]), -1;
        }
        memcpy(data, src + (size_t)t * per, per * sizeof *data);
    } else { /* the mean over the source tasks */
        for (size_t i = 0; i < per; i++) {
            double acc = 0;
            for (int64_t t = 0; t < got.dim[0]; t++) acc += src[(size_t)t * per + i];
            data[i] = (float)(acc / (double)got.dim[0]);
        }
    }
    free(src);
    return 1;
}

const pc_adapter_method pc_method_multitask_prompt_tuning = {
    .name = "multitask_prompt_tuning",
    .peft_type = "MULTITASK_PROMPT_TUNING",
    .sites = PC_SITE_EMBED | PC_SITE_POSITIONS | PC_SITE_HEAD,
    .state_size = sizeof(mpt_state),
    .begin = mpt_begin,
    .end = mpt_end,
    .rewrite = mpt_rewrite,
    .not_mergeable = "multitask prompt tuning prepends per-task virtual tokens; there is no weight to fold them into "
                     "(run it unmerged: peftc eval/generate --task-id N without --merge)",
    .virtual_tokens = mpt_virtual_tokens,
    .init_from_base = mpt_init,
};
