/* Task data (runtime/task_data.h) and its batches (drivers/task_batch.h) with the stories260K
 * tokenizer: each shape's ids and first target, task ids (given, absent -> the default), the
 * layout of a padded batch (right padding, IGNORE targets, padding choice rows and padding
 * examples, labels, task ids), text windows, detection by extension and content, and every bad
 * input with its file, line and field. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cu_main.h"
#include "drivers/task_batch.h"
#include "runtime/atomic_dir.h"
#include "runtime/fileio.h"
#include "runtime/task_data.h"
#include "temp_dir.h"

#define TOK PEFTC_SOURCE_DIR "/data/stories260K/tok512.bin"

typedef struct {
    char *dir;
    pc_text_tokenizer *tok;
} env;

static void env_open(env *e) {
    char err[512] = "";
    e->dir = pc_test_temp_dir("task_data");
    e->tok = pc_text_tokenizer_open(TOK, 512, err, sizeof err);
    if (!e->tok) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(e->tok != NULL);
}

static void env_close(env *e) {
    pc_text_tokenizer_free(e->tok);
    CU_ASSERT(pc_remove_tree(e->dir) == 0);
    free(e->dir);
}

static void write_file(const env *e, const char *name, const char *s, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", e->dir, name);
    char err[512] = "";
    CU_ASSERT_FATAL(pc_write_file_atomic(path, s, strlen(s), err, sizeof err) == 0);
}

static int load(const env *e, const char *content, pc_task_data *d, char *err, size_t errlen) {
    char path[512];
    write_file(e, "d.jsonl", content, path, sizeof path);
    return pc_task_data_load(d, path, e->tok, err, errlen);
}

static pc_task_data load_ok(const env *e, const char *content) {
    pc_task_data d;
    char err[1024] = "";
    int rc = load(e, content, &d, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    return d;
}

/* the ids of text (with BOS when bos) */
static size_t encode(const env *e, const char *text, bool bos, int32_t *out) {
    int32_t *ids;
    size_t n;
    char err[256];
    CU_ASSERT_FATAL(pc_text_encode(e->tok, text, strlen(text), bos, &ids, &n, err, sizeof err) == 0);
    memcpy(out, ids, n * sizeof *ids);
    free(ids);
    return n;
}

static void test_shapes(void) {
    env e;
    env_open(&e);
    int32_t a[256], b[256];
    /* text */
    pc_task_data d = load_ok(&e, "{\"text\": \"Once upon a time\"}\n\n  \n{\"text\": \"The end.\", \"task\": 4}\n");
    CU_ASSERT_EQUAL(d.shape, PC_TD_TEXT);
    CU_ASSERT_EQUAL(d.n, 2);
    size_t n = encode(&e, "Once upon a time", true, a);
    CU_ASSERT_EQUAL(d.ex[0].n, (int)n);
    CU_ASSERT(memcmp(d.ex[0].ids, a, n * sizeof *a) == 0);
    CU_ASSERT_EQUAL(d.ex[0].n_context, 1);
    CU_ASSERT_EQUAL(d.ex[0].task, -1);
    CU_ASSERT_EQUAL(d.ex[1].task, 4);
    CU_ASSERT_EQUAL(d.ex[1].line, 4);
    CU_ASSERT(d.has_task);
    CU_ASSERT_EQUAL(d.max_task, 4);
    pc_task_data_free(&d);
    /* input/target: BOS + encode(input) + encode(target) */
    d = load_ok(&e, "{\"input\": \"Lily saw\", \"target\": \"a cat\", \"task\": 0}\n");
    CU_ASSERT_EQUAL(d.shape, PC_TD_TARGET);
    size_t ni = encode(&e, "Lily saw", true, a), nt = encode(&e, "a cat", false, b);
    CU_ASSERT_EQUAL(d.ex[0].n_context, (int)ni);
    CU_ASSERT_EQUAL(d.ex[0].n, (int)(ni + nt));
    CU_ASSERT(memcmp(d.ex[0].ids, a, ni * sizeof *a) == 0);
    CU_ASSERT(memcmp(d.ex[0].ids + ni, b, nt * sizeof *b) == 0);
    CU_ASSERT_EQUAL(d.ex[0].task, 0);
    pc_task_data_free(&d);
    /* multiple choice */
    d = load_ok(&e, "{\"input\": \"Is it\", \"answer_choices\": [\"yes\", \"no way\"], \"label\": 1}\n"
                    "{\"input\": \"Pick\", \"answer_choices\": [\"a\", \"b\", \"c\"], \"label\": 0, \"task\": 2}\n");
    CU_ASSERT_EQUAL(d.shape, PC_TD_CHOICE);
    CU_ASSERT_EQUAL(d.max_choices, 3);
    CU_ASSERT_EQUAL(d.ex[0].nchoices, 2);
    CU_ASSERT_EQUAL(d.ex[0].label, 1);
    ni = encode(&e, "Is it", true, a);
    nt = encode(&e, "no way", false, b);
    int32_t row[256];
    int first, len = pc_td_row(&d.ex[0], 1, row, &first);
    CU_ASSERT_EQUAL(first, (int)ni);
    CU_ASSERT_EQUAL(len, (int)(ni + nt));
    CU_ASSERT(memcmp(row, a, ni * sizeof *a) == 0 && memcmp(row + ni, b, nt * sizeof *b) == 0);
    CU_ASSERT_EQUAL(d.max_row, (int)(ni + nt) > d.ex[1].n_context + 1 ? (int)(ni + nt) : d.max_row);
    pc_task_data_free(&d);
    env_close(&e);
}

/* a padded multiple-choice batch: E = 3 items of which 2 are real, C = 3 */
static void test_batch_layout(void) {
    env e;
    env_open(&e);
    pc_task_data d = load_ok(&e, "{\"input\": \"Is it\", \"answer_choices\": [\"yes\", \"no way\"], \"label\": 1, \"task\": 5}\n"
                                 "{\"input\": \"Pick\", \"answer_choices\": [\"a\", \"b\", \"c\"], \"label\": 2}\n");
    pc_td_item *items = NULL;
    size_t nitems = 0;
    char err[512] = "";
    CU_ASSERT_FATAL(pc_td_items(&d, NULL, d.n, 32, &items, &nitems, err, sizeof err) == 0);
    CU_ASSERT_EQUAL_FATAL(nitems, 2);
    pc_task_batch b;
    const size_t S = 16, C = 3, E = 3;
    CU_ASSERT_FATAL(pc_task_batch_init(&b, E, C, S, d.max_row, 7, err, sizeof err) == 0);
    size_t targets = pc_task_batch_fill(&b, &d, items, nitems);
    size_t want_targets = 0;
    for (size_t i = 0; i < d.n; i++)
        for (int c = 0; c < d.ex[i].nchoices; c++) want_targets += (size_t)(d.ex[i].choice_off[c + 1] - d.ex[i].choice_off[c]);
    CU_ASSERT_EQUAL(targets, want_targets);
    CU_ASSERT_EQUAL(b.labels[0], 1);
    CU_ASSERT_EQUAL(b.labels[1], 2);
    CU_ASSERT_EQUAL(b.labels[2], PC_TASK_IGNORE); /* a padding example */
    for (size_t r = 0; r < 3; r++) CU_ASSERT_EQUAL(b.task_ids[r], 5);
    for (size_t r = 3; r < 9; r++) CU_ASSERT_EQUAL(b.task_ids[r], 7); /* no "task": the default */
    for (size_t i = 0; i < E; i++)
        for (size_t c = 0; c < C; c++) {
            const pc_td_example *ex = i < d.n ? &d.ex[i] : NULL;
            const int32_t *tok = b.tokens + (i * C + c) * S, *tgt = b.targets + (i * C + c) * S;
            if (!ex || (int)c >= ex->nchoices) { /* a padding row: nothing to learn */
                for (size_t t = 0; t < S; t++) CU_ASSERT(tok[t] == 0 && tgt[t] == PC_TASK_IGNORE);
                continue;
            }
            int32_t row[64];
            int first, len = pc_td_row(ex, (int)c, row, &first);
            for (size_t t = 0; t < S; t++) {
                bool real = (int)t < len - 1;
                CU_ASSERT_EQUAL(tok[t], real ? row[t] : 0); /* right padding */
                CU_ASSERT_EQUAL(tgt[t], real && (int)t + 1 >= first ? row[t + 1] : PC_TASK_IGNORE);
            }
        }
    const char *names[4];
    void *ptrs[4];
    CU_ASSERT_EQUAL(pc_task_batch_inputs(&b, &d, names, ptrs), 4);
    CU_ASSERT_STRING_EQUAL(names[3], "labels");
    pc_task_batch_free(&b);
    free(items);
    pc_task_data_free(&d);
    env_close(&e);
}

/* a text longer than a row: windows of S+1 ids, S apart, each id after the BOS a target once */
static void test_text_windows(void) {
    env e;
    env_open(&e);
    pc_task_data d = load_ok(&e, "{\"text\": \"Once upon a time there was a little girl named Lily who liked to play.\"}\n"
                                 "{\"text\": \"Hi\"}\n");
    pc_td_item *items = NULL;
    size_t nitems = 0;
    char err[512] = "";
    const size_t S = 8;
    CU_ASSERT_FATAL(pc_td_items(&d, NULL, d.n, S, &items, &nitems, err, sizeof err) == 0);
    int n0 = d.ex[0].n;
    CU_ASSERT_EQUAL(nitems, (size_t)((n0 - 1 + (int)S - 1) / (int)S) + 1);
    pc_task_batch b;
    CU_ASSERT_FATAL(pc_task_batch_init(&b, nitems, 1, S, d.max_row, 0, err, sizeof err) == 0);
    size_t targets = pc_task_batch_fill(&b, &d, items, nitems);
    CU_ASSERT_EQUAL(targets, (size_t)(n0 - 1 + d.ex[1].n - 1));
    CU_ASSERT_EQUAL(b.targets[0], d.ex[0].ids[1]);
    CU_ASSERT_EQUAL(b.tokens[S], d.ex[0].ids[S]); /* window 1 starts where window 0's targets end */
    CU_ASSERT_EQUAL(b.targets[S], d.ex[0].ids[S + 1]);
    CU_ASSERT_EQUAL(pc_task_batch_inputs(&b, &d, (const char *[4]){0}, (void *[4]){0}), 3);
    pc_task_batch_free(&b);
    free(items);
    /* an input/target example longer than a row is an error naming its line */
    pc_task_data_free(&d);
    d = load_ok(&e, "{\"input\": \"a\", \"target\": \"b\"}\n{\"input\": \"Once upon a time there was\", \"target\": \"a girl\"}\n");
    items = NULL, nitems = 0;
    CU_ASSERT(pc_td_items(&d, NULL, d.n, 4, &items, &nitems, err, sizeof err) != 0);
    printf("\n    %s", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "d.jsonl:2: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--seq"));
    free(items);
    pc_task_data_free(&d);
    env_close(&e);
}

static void test_detect(void) {
    env e;
    env_open(&e);
    char path[512], err[512] = "";
    bool jsonl;
    write_file(&e, "a.txt", "\n  {\"text\": \"x\"}\n", path, sizeof path);
    CU_ASSERT(pc_task_data_detect(path, &jsonl, err, sizeof err) == 0 && jsonl);
    write_file(&e, "b.txt", "Once upon a time {\n", path, sizeof path);
    CU_ASSERT(pc_task_data_detect(path, &jsonl, err, sizeof err) == 0 && !jsonl);
    /* a pretty-printed JSON file, or a JSON object of other fields, is not task data */
    write_file(&e, "d.json", "{\n  \"text\": \"x\"\n}\n", path, sizeof path);
    CU_ASSERT(pc_task_data_detect(path, &jsonl, err, sizeof err) == 0 && !jsonl);
    write_file(&e, "e.json", "{\"peft_type\": \"LORA\"}\n", path, sizeof path);
    CU_ASSERT(pc_task_data_detect(path, &jsonl, err, sizeof err) == 0 && !jsonl);
    /* not a regular file: left to the text loader (detection must not block on a FIFO) */
    snprintf(path, sizeof path, "%s/fifo", e.dir);
    CU_ASSERT_FATAL(mkfifo(path, 0600) == 0);
    CU_ASSERT(pc_task_data_detect(path, &jsonl, err, sizeof err) == 0 && !jsonl);
    write_file(&e, "c.jsonl", "not json\n", path, sizeof path);
    CU_ASSERT(pc_task_data_detect(path, &jsonl, err, sizeof err) == 0 && jsonl);
    snprintf(path, sizeof path, "%s/missing", e.dir);
    CU_ASSERT(pc_task_data_detect(path, &jsonl, err, sizeof err) != 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing"));
    env_close(&e);
}

/* every bad input: the message holds the file and line ("d.jsonl:L: ") and the field */
static void test_errors(void) {
    env e;
    env_open(&e);
    static const struct {
        const char *content, *where, *what;
    } cases[] = {
        {"{\"text\": \"a\"}\n{\"input\": \"b\", \"target\": \"c\"}\n", "d.jsonl:2: ", "line 1 is text"},
        {"{\"input\": \"b\", \"target\": \"c\"}\n{\"input\": \"q\", \"answer_choices\": [\"x\"], \"label\": 0}\n",
         "d.jsonl:2: ", "one shape"},
        {"{\"input\": \"q\", \"answer_choices\": [\"x\", \"y\"]}\n", "d.jsonl:1: ", "field \"label\": missing"},
        {"{\"input\": \"q\", \"answer_choices\": [\"x\", \"y\"], \"label\": 2}\n", "d.jsonl:1: ",
         "field \"label\": 2 is out of range"},
        {"{\"input\": \"q\", \"answer_choices\": [\"x\", \"y\"], \"label\": -1}\n", "d.jsonl:1: ", "field \"label\""},
        {"{\"input\": \"q\", \"answer_choices\": [\"x\", \"y\"], \"label\": 1.0}\n", "d.jsonl:1: ",
         "field \"label\": must be"},
        {"{\"text\": \"a\", \"task\": 1.5}\n", "d.jsonl:1: ", "field \"task\": must be an integer task id"},
        {"{\"text\": \"a\", \"task\": \"0\"}\n", "d.jsonl:1: ", "field \"task\": must be an integer"},
        {"{\"text\": \"a\", \"task\": -2}\n", "d.jsonl:1: ", "field \"task\": -2 is out of range"},
        {"{\"input\": \"q\", \"answer_choices\": [], \"label\": 0}\n", "d.jsonl:1: ", "field \"answer_choices\": empty"},
        {"{\"input\": \"q\", \"answer_choices\": \"x\", \"label\": 0}\n", "d.jsonl:1: ", "field \"answer_choices\": must be a list"},
        {"{\"input\": \"q\", \"answer_choices\": [\"x\", 3], \"label\": 0}\n", "d.jsonl:1: ", "field \"answer_choices[1]\": must be a string"},
        {"{\"input\": \"q\", \"answer_choices\": [\"x\", \"\"], \"label\": 0}\n", "d.jsonl:1: ", "field \"answer_choices[1]\": encodes to no tokens"},
        {"{\"answer_choices\": [\"x\"], \"label\": 0}\n", "d.jsonl:1: ", "field \"input\": missing"},
        {"{\"text\": \"a\"}\nnot json\n", "d.jsonl:2: ", "not a JSON object"},
        {"{\"text\": \"a\"}\n[1, 2]\n", "d.jsonl:2: ", "not a JSON object: got"},
        {"{\"text\": 3}\n", "d.jsonl:1: ", "field \"text\": must be a string"},
        {"{\"text\": \"a\", \"lable\": 1}\n", "d.jsonl:1: ", "field \"lable\": unknown"},
        {"{\"text\": \"a\", \"input\": \"b\"}\n", "d.jsonl:1: ", "field \"input\": not a field of a text example"},
        {"{\"input\": \"b\"}\n", "d.jsonl:1: ", "field \"target\": missing"},
        {"{\"input\": \"b\", \"target\": \"\"}\n", "d.jsonl:1: ", "field \"target\": encodes to no tokens"},
        {"\n\n", "d.jsonl: ", "no examples"},
        {"[{\"text\": \"a\"}]\n", "d.jsonl: ", "a JSON list"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pc_task_data d;
        char err[1024] = "";
        int rc = load(&e, cases[i].content, &d, err, sizeof err);
        bool ok = rc != 0 && strstr(err, cases[i].where) && strstr(err, cases[i].what);
        if (!ok) printf("\n    case %zu: rc %d, message: %s", i, rc, err);
        CU_ASSERT(ok);
        CU_ASSERT(d.ex == NULL && d.n == 0 && d.path == NULL); /* nothing left allocated */
    }
    env_close(&e);
}

static CU_TestInfo tests[] = {
    {"each shape's ids, targets, task ids", test_shapes},
    {"a padded multiple-choice batch", test_batch_layout},
    {"text windows; a too-long example", test_text_windows},
    {"JSONL detected by extension and content", test_detect},
    {"bad inputs name file, line, field", test_errors},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("task_data", tests)
