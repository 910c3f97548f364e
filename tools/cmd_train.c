/* peftc train: fine-tune the frozen model with an adapter and write it in PEFT's format. */
#include "drivers/session.h"
#include "drivers/train.h"
#include "tools/cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void train_help(const pc_train_opts *d) {
    printf("usage: peftc train [options]\n\n"
           "Fine-tunes a frozen model with an adapter and writes the adapter as a PEFT directory\n"
           "(adapter_config.json + adapter_model.safetensors). A causal LM (Llama, GPT-2) trains on\n"
           "text; an encoder with a classification head (BERT, RoBERTa) on labelled examples.\n\n"
           "  --model F          llama2.c checkpoint, Hugging Face model directory or GGUF file\n"
           "                     (default: bundled stories260K)\n"
           "  --tokenizer F      tokenizer (default: the model's own: tok<vocab>.bin beside a llama2.c\n"
           "                     checkpoint, an HF directory's tokenizer.json, a GGUF's vocabulary)\n"
           "  --adapter CONFIG   PEFT adapter_config.json, or an adapter directory to continue from;\n"
           "                     its peft_type picks the method: LORA (DoRA with use_dora), IA3,\n"
           "                     PROMPT_TUNING or a registered method's own (default: LoRA r=8\n"
           "                     alpha=16 on q,k,v,o,gate,up,down)\n"
           "  --data F           training text (default: bundled tinyshakespeare); for a classifier,\n"
           "                     labelled examples: JSONL {\"text\": ..., \"label\": k} or CSV with a\n"
           "                     text column and a label (ids or names) or category (names) column\n"
           "  --labels F         the label names, a JSON list (id = index), for data that names them\n"
           "  --val-data F       held-out examples of a classifier or of task data (default:\n"
           "                     --val-fraction of --data)\n"
           "                     Task data (a causal LM): a .jsonl file, one example a line, all of one\n"
           "                     shape: {\"text\": T} (LM on the text), {\"input\": I, \"target\": Y} (loss on\n"
           "                     Y's tokens only) or {\"input\": I, \"answer_choices\": [..], \"label\": k}\n"
           "                     (multiple choice; held-out accuracy by rank classification), each\n"
           "                     with an optional \"task\": N; rows are as long as the longest example\n"
           "                     (--seq caps them; default the model's context)\n"
           "  --objective K      on multiple-choice data: lm (default; the correct choice's\n"
           "                     cross-entropy) or tfew (T-Few's L_LM + L_UL + L_LN: unlikelihood of\n"
           "                     the wrong choices, length-normalized cross-entropy over the choices)\n"
           "  --task-id N        the task id of examples that name none (default 0), for an adapter\n"
           "                     with per-task parameters\n"
           "  --distill-teachers 0=DIR,1=DIR,...\n"
           "                     multitask prompt tuning's prompt distillation: each task's teacher, a\n"
           "                     prompt-tuning adapter trained on that task with the student's\n"
           "                     num_virtual_tokens; the loss adds W*(KL(teacher||student) at\n"
           "                     temperature T + MSE of the final hidden states) at the target tokens\n"
           "  --distill-weight W --distill-temperature T   (default 1, 1)\n"
           "  --out DIR          where the adapter is written (default: out/adapter)\n"
           "  --steps N          optimizer steps (default %d)\n"
           "  --epochs X         instead of --steps: X passes over the training part (a classifier's\n"
           "                     examples are shuffled each epoch)\n"
           "  --batch B --seq S  rows per micro-batch and tokens per row (default %d, %d for text;\n"
           "                     a classifier's examples are cut to S tokens, default 128)\n"
           "  --grad-accum K     average the gradients of K micro-batches per step (default 1)\n"
           "  --lr X --min-lr X  peak and final learning rate (default %g, %g)\n"
           "  --warmup N         linear warmup steps (default %d)\n"
           "  --schedule K       after warmup: cosine (default) or linear decay to --min-lr, or constant\n"
           "  --weight-decay X   AdamW weight decay (default %g)\n"
           "  --clip X           clip the global gradient norm to X, 0 = off (default %g)\n"
           "  --eval-every N     evaluate on the held-out split every N steps (default %d)\n"
           "  --eval-batches N   held-out batches per evaluation, 0 = all (default 8 for text, all\n"
           "                     for a classifier)\n"
           "  --val-fraction X   fraction of the text (or examples) held out (default %g)\n"
           "  --save-every N     write DIR/checkpoint-STEP every N steps (resumable)\n"
           "  --resume DIR       continue from a checkpoint directory, bit-identically\n"
           "  --seed N           data sampling, init and dropout seed (default %llu)\n"
           "  --backend ref|jit  reference interpreter or compiled backend (default jit)\n"
           "  --threads N        threads for the compiled backend's matmuls (default 1)\n"
           PC_CLI_CHECK_FINITE_HELP PC_CLI_BASE_DTYPE_HELP
           "  --json             one JSON object per evaluation on stdout, the first before training\n"
           "                     (with eval_accuracy for a classifier)\n"
           "  --quiet            no progress output\n"
           "  --dump-after=PASS  print the step's IR to stderr after adapt, autograd, adamw or all\n"
           "  --hf-qk-rows       the adapter's q/k rows are in Hugging Face order (an adapter made by\n"
           "                     PEFT for an HF-converted Llama); they are written back that way\n",
           d->steps, d->batch, d->seq, d->lr, d->min_lr, d->warmup, d->weight_decay, d->clip, d->eval_every,
           d->val_fraction, (unsigned long long)d->seed);
}

int pc_cmd_train(const pc_registry *reg, int argc, char **argv) { return pc_train_main(reg, argc, argv, NULL); }

/* the checkpoint-N directories of --out this run writes (again): N a multiple of --save-every
 * after the step it starts from. A resumed run starts from its checkpoint's step, read here
 * from the directory's name (0, i.e. every multiple, when it is not named checkpoint-N). */
typedef struct {
    int save_every, steps, start;
} saved_checkpoints;

static bool checkpoint_n(const char *name, int *n) {
    char *end;
    if (strncmp(name, "checkpoint-", 11) || !name[11]) return false;
    long v = strtol(name + 11, &end, 10);
    if (*end || v < 0 || v > 1000000000) return false;
    *n = (int)v;
    return true;
}

static bool rewrites_checkpoint(const char *name, void *ctx) {
    const saved_checkpoints *c = ctx;
    int n;
    return c->save_every > 0 && checkpoint_n(name, &n) && n % c->save_every == 0 && n > c->start && n <= c->steps;
}

/* the inputs a run reads and the directory it writes, checked before the work */
static int check_paths(const char *prog, const pc_train_opts *o) {
    static const char *const names[] = {PC_ADAPTER_CONFIG_NAME, PC_ADAPTER_WEIGHTS_NAME, PC_TRAIN_OPTIMIZER_FILE,
                                        PC_TRAIN_STATE_FILE, PC_TRAIN_CONFIG_FILE, NULL};
    pc_in ins[14] = {{"--model", o->model}, {"--tokenizer", o->tokenizer}, {"--data", o->data},
                     {"--val-data", o->val_data}, {"--labels", o->labels}};
    int nin = 5;
    pc_cli_adapter_paths ap, rp;
    char ropt[4200], rstate[4200], rcfg[4200];
    saved_checkpoints sc = {o->save_every, o->steps, 0};
    if (o->resume) {
        char base[4096];
        snprintf(base, sizeof base, "%s", o->resume);
        for (size_t n = strlen(base); n > 1 && base[n - 1] == '/';) base[--n] = 0; /* "dir/" */
        const char *name = strrchr(base, '/') ? strrchr(base, '/') + 1 : base;
        if (!checkpoint_n(name, &sc.start)) sc.start = 0;
        nin += pc_cli_adapter_inputs("--resume", o->resume, ins + nin, &rp);
        snprintf(ropt, sizeof ropt, "%s/%s", o->resume, PC_TRAIN_OPTIMIZER_FILE);
        snprintf(rstate, sizeof rstate, "%s/%s", o->resume, PC_TRAIN_STATE_FILE);
        ins[nin++] = (pc_in){"--resume", ropt};
        ins[nin++] = (pc_in){"--resume", rstate};
        snprintf(rcfg, sizeof rcfg, "%s/%s", o->resume, PC_TRAIN_CONFIG_FILE);
        ins[nin++] = (pc_in){"--resume", rcfg};
    } else {
        nin += pc_cli_adapter_inputs("--adapter", o->adapter, ins + nin, &ap);
    }
    pc_out out = {.flag = "--out", .path = o->out, .kind = PC_OUT_DIR, .names = names,
                  .replaces_subdir = rewrites_checkpoint, .ctx = &sc};
    return pc_cli_check_outputs(prog, &out, 1, ins, nin);
}

/* an AOT executable (fx): model, tokenizer, adapter, batch and seq were compiled in */
static int fixed_check(const pc_cli_fixed *fx, const pc_train_opts *o, const char *batch, const char *seq,
                       const char *backend) {
    const char *what = o->model ? "--model" : o->tokenizer ? "--tokenizer" : o->adapter ? "--adapter"
                     : o->resume ? "--resume" : backend ? "--backend" : NULL;
    if (what) {
        fprintf(stderr, "%s: %s is fixed when the executable is compiled (peftc compile)\n", fx->prog, what);
        return -1;
    }
    if ((batch && o->batch != fx->batch) || (seq && o->seq != fx->seq)) {
        fprintf(stderr, "%s: this executable was compiled for --batch %d --seq %d (got --batch %d --seq %d); "
                "compile another one with peftc compile --batch B --seq S\n", fx->prog, fx->batch, fx->seq,
                batch ? o->batch : fx->batch, seq ? o->seq : fx->seq);
        return -1;
    }
    if (o->grad_accum != 1) {
        fprintf(stderr, "%s: --grad-accum: this executable was compiled without gradient accumulation\n", fx->prog);
        return -1;
    }
    if (!o->data) {
        fprintf(stderr, "%s: --data is required (the training text)\n", fx->prog);
        return -1;
    }
    return 0;
}

int pc_train_main(const pc_registry *reg, int argc, char **argv, const pc_cli_fixed *fx) {
    pc_train_opts o = pc_train_defaults();
    o.registry = reg;
    if (fx) o.batch = fx->batch, o.seq = fx->seq;
    const char *steps = 0, *batch = 0, *seq = 0, *lr = 0, *min_lr = 0, *warmup = 0, *wd = 0, *clip = 0,
               *eval_every = 0, *eval_batches = 0, *val = 0, *save_every = 0, *seed = 0, *threads = 0, *backend = 0,
               *accum = 0, *dump_after = 0, *epochs = 0, *schedule = 0, *objective = 0, *task_id = 0,
               *dweight = 0, *dtemp = 0, *base_dtype = 0;
    bool json = false, quiet = false, hf = false, check_finite = false;
    pc_cli_opt opts[] = {
        {"model", true, &o.model, 0},          {"tokenizer", true, &o.tokenizer, 0}, {"adapter", true, &o.adapter, 0},
        {"data", true, &o.data, 0},            {"out", true, &o.out, 0},             {"resume", true, &o.resume, 0},
        {"steps", true, &steps, 0},            {"batch", true, &batch, 0},           {"seq", true, &seq, 0},
        {"lr", true, &lr, 0},                  {"min-lr", true, &min_lr, 0},         {"warmup", true, &warmup, 0},
        {"weight-decay", true, &wd, 0},        {"clip", true, &clip, 0},             {"eval-every", true, &eval_every, 0},
        {"eval-batches", true, &eval_batches, 0}, {"val-fraction", true, &val, 0},   {"save-every", true, &save_every, 0},
        {"seed", true, &seed, 0},              {"threads", true, &threads, 0},       {"json", false, 0, &json},
        {"quiet", false, 0, &quiet},           {"hf-qk-rows", false, 0, &hf},
        {"backend", true, &backend, 0},        {"grad-accum", true, &accum, 0},   {"dump-after", true, &dump_after, 0},
        {"check-finite", false, 0, &check_finite}, {"epochs", true, &epochs, 0}, {"schedule", true, &schedule, 0},
        {"labels", true, &o.labels, 0},        {"val-data", true, &o.val_data, 0},
        {"objective", true, &objective, 0},    {"task-id", true, &task_id, 0},
        {"distill-teachers", true, &o.distill_teachers, 0}, {"distill-weight", true, &dweight, 0},
        {"distill-temperature", true, &dtemp, 0}, {"base-dtype", true, &base_dtype, 0},
    };
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("train", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (rc == 1) {
        if (fx)
            printf("%s: a standalone trainer compiled by peftc compile --mode train (%s).\n"
                   "Model, tokenizer, adapter config, --batch %d and --seq %d are compiled in; --data is\n"
                   "required. The other options are those of peftc train:\n\n", fx->prog, fx->about, fx->batch, fx->seq);
        train_help(&o);
        return 0;
    }
    if (rc) return 1;
    if (pc_cli_base_dtype("train", base_dtype, &o.base_dtype) || pc_cli_fixed_base_dtype(fx, base_dtype, &o.base_dtype))
        return 1;
    long long v;
    double d;
#define INT_OPT(s, f, lo, hi, dst) if (s) { if (pc_cli_int("train", f, s, lo, hi, &v)) return 1; dst = (int)v; }
#define DBL_OPT(s, f, lo, hi, dst) if (s) { if (pc_cli_double("train", f, s, lo, hi, &d)) return 1; dst = d; }
    INT_OPT(steps, "steps", 1, 100000000, o.steps);
    INT_OPT(batch, "batch", 1, 65536, o.batch);
    INT_OPT(seq, "seq", 1, 1 << 20, o.seq);
    INT_OPT(warmup, "warmup", 0, 100000000, o.warmup);
    INT_OPT(eval_every, "eval-every", 0, 100000000, o.eval_every);
    INT_OPT(eval_batches, "eval-batches", 0, 100000000, o.eval_batches);
    INT_OPT(save_every, "save-every", 0, 100000000, o.save_every);
    INT_OPT(accum, "grad-accum", 1, 65536, o.grad_accum);
    INT_OPT(task_id, "task-id", 0, 1 << 30, o.task_id);
    if (objective) {
        int k = pc_objective_parse(objective);
        if (k < 0) {
            fprintf(stderr, "peftc train: --objective: expected lm or tfew, got '%s'\n", objective);
            return 1;
        }
        o.objective = (pc_objective)k;
    }
    DBL_OPT(lr, "lr", 0, 10, o.lr);
    DBL_OPT(min_lr, "min-lr", 0, 10, o.min_lr);
    DBL_OPT(wd, "weight-decay", 0, 10, o.weight_decay);
    DBL_OPT(clip, "clip", 0, 1e9, o.clip);
    DBL_OPT(val, "val-fraction", 0, 0.9, o.val_fraction);
    DBL_OPT(epochs, "epochs", 1e-6, 1e6, o.epochs);
    DBL_OPT(dweight, "distill-weight", 1e-9, 1e6, o.distill_weight);
    DBL_OPT(dtemp, "distill-temperature", 1e-3, 1e3, o.distill_temperature);
    if ((dweight || dtemp) && !o.distill_teachers) {
        fprintf(stderr, "peftc train: --distill-weight and --distill-temperature need --distill-teachers\n");
        return 1;
    }
    if (epochs && steps) {
        fprintf(stderr, "peftc train: --epochs and --steps both fix the length of the run: give one\n");
        return 1;
    }
    if (schedule) {
        int k = pc_schedule_parse(schedule);
        if (k < 0) {
            fprintf(stderr, "peftc train: --schedule: expected cosine, linear or constant, got '%s'\n", schedule);
            return 1;
        }
        o.schedule = (pc_lr_schedule_kind)k;
    }
    if (!seq && !fx) o.seq = 0; /* the task's default */
    INT_OPT(threads, "threads", 1, 1024, o.exec.threads);
    if (backend && pc_backend_parse(backend, &o.exec.kind)) {
        fprintf(stderr, "peftc train: --backend: expected ref or jit, got '%s'\n", backend);
        return 1;
    }
    if (seed) { if (pc_cli_int("train", "seed", seed, 0, (1ll << 62), &v)) return 1; o.seed = (uint64_t)v; }
    o.exec.check_finite = check_finite;
    if (fx) {
        if (fixed_check(fx, &o, batch, seq, backend)) return 1;
        o.model = fx->model, o.tokenizer = fx->tokenizer, o.adapter = fx->adapter;
        o.exec.kind = PC_BACKEND_JIT;
        o.exec.kernels = fx->kernels;
        o.entries = fx->entries;
    }
    if (o.min_lr > o.lr) o.min_lr = o.lr;
    char mbuf[4096], dbuf[4096];
    if (!o.model) o.model = pc_default_path("stories260K/stories260K.bin", mbuf, sizeof mbuf);
    if (!o.data) o.data = pc_default_path("tinyshakespeare/input.txt", dbuf, sizeof dbuf);
    if (!o.out) o.out = "out/adapter";
    o.json = json;
    o.quiet = quiet;
    o.hf_qk_rows = hf;
    o.dump_after = dump_after;
    o.progress = !json && !quiet && isatty(2);
    if (check_paths(fx ? fx->prog : "peftc train", &o)) return 1;
    pc_train_result res;
    char err[4096];
    if (pc_train(&o, &res, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", fx ? fx->prog : "peftc train", err);
        return 1;
    }
    if (!json && !quiet)
    {
        if (!isnan(res.final_eval_accuracy))
            fprintf(stderr, "%s: held-out loss %.4f -> %.4f, accuracy %.2f%% -> %.2f%%; adapter written to %s\n",
                    fx ? fx->prog : "peftc train", res.base_eval_loss, res.final_eval_loss,
                    100 * res.base_eval_accuracy, 100 * res.final_eval_accuracy, o.out);
        else
            fprintf(stderr, "%s: held-out loss %.4f -> %.4f; adapter written to %s\n", fx ? fx->prog : "peftc train",
                    res.base_eval_loss, res.final_eval_loss, o.out);
    }
    pc_train_result_free(&res);
    return 0;
}
