/* trainer_state.json (drivers/train_state.h). */
#include "drivers/train_state.h"
#include "drivers/train_distill.h"
#include "ir/ir.h"
#include "runtime/adapter_io.h"
#include "runtime/fileio.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define OPTIMIZER_FILE PC_TRAIN_OPTIMIZER_FILE
#define STATE_FILE PC_TRAIN_STATE_FILE

/* trainer_state.json: what --resume needs to continue the same run */
int pc_train_state_write(const char *dir, int step, const pc_train_opts *o, char *err, size_t errlen) {
    json_t *j = json_pack("{s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:I, s:s, s:b, s:i, s:f, s:s, s:s*, s:s, s:s}", "step", step,
                          "steps", o->steps, "batch", o->batch, "seq", o->seq, "warmup", o->warmup, "lr", o->lr,
                          "min_lr", o->min_lr, "weight_decay", o->weight_decay, "clip", o->clip,
                          "seed", (json_int_t)o->seed, "data", o->data, "hf_qk_rows", o->hf_qk_rows,
                          "grad_accum", o->grad_accum, "val_fraction", o->val_fraction,
                          "schedule", pc_schedule_name(o->schedule), "val_data", o->val_data,
                          "objective", pc_objective_name(o->objective), "base_dtype", pc_dtype_name(o->base_dtype));
    char *text = j && !pc_distill_state_put(j, o) ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (!text) return pc_errf(err, errlen, "out of memory");
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
    int rc = pc_write_file_atomic(path, text, strlen(text), err, errlen);
    free(text);
    return rc;
}

/* --resume names a directory --save-every wrote; anything else gets a message saying what it
 * lacks (jansson's "unable to open ...:-1:" said neither) */
static int check_resume_dir(const char *dir, char *err, size_t errlen) {
    struct stat st;
    if (stat(dir, &st)) return pc_errf(err, errlen, "--resume %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return pc_errf(err, errlen, "--resume %s: not a checkpoint directory (it is %s)", dir, pc_file_kind(st.st_mode));
    static const char *const need[] = {STATE_FILE, OPTIMIZER_FILE, PC_ADAPTER_CONFIG_NAME, PC_ADAPTER_WEIGHTS_NAME};
    char missing[512] = "", path[4096];
    int nmissing = 0;
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, need[i]);
        if (stat(path, &st) == 0) continue;
        size_t n = strlen(missing);
        snprintf(missing + n, sizeof missing - n, "%s%s", nmissing++ ? ", " : "", need[i]);
    }
    if (!nmissing) return 0;
    snprintf(path, sizeof path, "%s/%s", dir, PC_ADAPTER_WEIGHTS_NAME);
    bool adapter = stat(path, &st) == 0;
    return pc_errf(err, errlen, "--resume %s: not a checkpoint directory: it has no %s (a checkpoint-N directory "
                   "written by --save-every holds %s, %s, %s and %s)%s", dir, missing, STATE_FILE, OPTIMIZER_FILE,
                   PC_ADAPTER_CONFIG_NAME, PC_ADAPTER_WEIGHTS_NAME,
                   adapter ? "; a final adapter is not resumable: continue from it with --adapter" : "");
}

/* reads trainer_state.json; the run must continue with the same schedule and batches */
int pc_train_state_read(const char *dir, pc_train_opts *o, int *step, char *err, size_t errlen) {
    if (check_resume_dir(dir, err, errlen)) return -1;
    char path[4096], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
    /* pc_read_file_max: regular files only (json_load_file would block on a FIFO) */
    if (pc_read_file_max(path, (size_t)1 << 20, &text, &len, err, errlen)) return -1;
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    free(text);
    if (!j) return pc_errf(err, errlen, "%s:%d: %s", path, je.line, je.text);
    int st = 0, steps = 0, batch = 0, seq = 0, warmup = 0;
    double lr = 0, min_lr = 0, wd = 0, clip = 0;
    json_int_t seed = 0;
    if (json_unpack_ex(j, &je, 0, "{s:i, s:i, s:i, s:i, s:i, s:F, s:F, s:F, s:F, s:I}", "step", &st, "steps", &steps,
                       "batch", &batch, "seq", &seq, "warmup", &warmup, "lr", &lr, "min_lr", &min_lr,
                       "weight_decay", &wd, "clip", &clip, "seed", &seed)) {
        json_decref(j);
        return pc_errf(err, errlen, "%s: %s", path, je.text);
    }
    json_t *hf = json_object_get(j, "hf_qk_rows");
    o->hf_qk_rows = hf && json_is_true(hf);
    /* what decides which tokens each step sees must match, or the run would not continue */
    json_t *ga = json_object_get(j, "grad_accum"), *vf = json_object_get(j, "val_fraction"), *dp = json_object_get(j, "data");
    json_t *sc = json_object_get(j, "schedule"), *vd = json_object_get(j, "val_data"), *ob = json_object_get(j, "objective");
    json_t *bd = json_object_get(j, "base_dtype"); /* absent in checkpoints before bf16 bases: f32 */
    const char *ck_base = json_is_string(bd) ? json_string_value(bd) : "f32";
    int ck_sched = json_is_string(sc) ? pc_schedule_parse(json_string_value(sc)) : PC_SCHEDULE_COSINE;
    const char *ck_val_data = json_is_string(vd) ? json_string_value(vd) : NULL;
    int ck_accum = json_is_integer(ga) ? (int)json_integer_value(ga) : 1;
    double ck_val = json_is_number(vf) ? json_number_value(vf) : o->val_fraction;
    const char *ck_data = json_is_string(dp) ? json_string_value(dp) : NULL;
    int bad = 0;
    if (ck_accum != o->grad_accum)
        bad = pc_errf(err, errlen, "%s: the checkpoint was made with --grad-accum %d, not %d", path, ck_accum, o->grad_accum);
    else if (fabs(ck_val - o->val_fraction) > 1e-12)
        bad = pc_errf(err, errlen, "%s: the checkpoint was made with --val-fraction %g, not %g", path, ck_val, o->val_fraction);
    else if (ck_data && o->data && strcmp(ck_data, o->data) != 0)
        bad = pc_errf(err, errlen, "%s: the checkpoint was trained on --data %s, not %s", path, ck_data, o->data);
    else if (ck_sched < 0)
        bad = pc_errf(err, errlen, "%s: field \"schedule\": not cosine, linear or constant", path);
    else if ((ck_val_data == NULL) != (o->val_data == NULL) || (ck_val_data && strcmp(ck_val_data, o->val_data)))
        bad = pc_errf(err, errlen, "%s: the checkpoint was made with --val-data %s, not %s", path,
                      ck_val_data ? ck_val_data : "(none)", o->val_data ? o->val_data : "(none)");
    else if (json_is_string(ob) && pc_objective_parse(json_string_value(ob)) != (int)o->objective)
        bad = pc_errf(err, errlen, "%s: the checkpoint was made with --objective %s, not %s", path, json_string_value(ob),
                      pc_objective_name(o->objective));
    else if (strcmp(ck_base, pc_dtype_name(o->base_dtype)))
        bad = pc_errf(err, errlen, "%s: the checkpoint was made with --base-dtype %s, not %s", path, ck_base,
                      pc_dtype_name(o->base_dtype));
    if (!bad) bad = pc_distill_state_check(j, o, path, err, errlen);
    if (bad) { json_decref(j); return -1; }
    json_decref(j);
    if (st < 0 || st > steps || batch <= 0 || seq <= 0) return pc_errf(err, errlen, "%s: inconsistent step/steps/batch/seq", path);
    if (o->steps != steps) return pc_errf(err, errlen, "%s: the checkpoint was made for --steps %d (the schedule depends on it), not %d", path, steps, o->steps);
    o->batch = batch, o->seq = seq, o->warmup = warmup, o->lr = lr, o->min_lr = min_lr;
    o->weight_decay = wd, o->clip = clip, o->seed = (uint64_t)seed;
    o->schedule = (pc_lr_schedule_kind)ck_sched;
    *step = st;
    return 0;
}
