/* Classification datasets (runtime/cls_data.h) and the CSV reader under them (runtime/csv.h):
 * JSONL and CSV files written into a temporary directory, every error message with its file and
 * line, HF-style truncation with the committed BERT and RoBERTa tokenizer.json fixtures, and the
 * whole of data/banking77/train.csv. */
#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cu_main.h"
#include "runtime/atomic_dir.h"
#include "runtime/cls_data.h"
#include "runtime/csv.h"
#include "runtime/fileio.h"

#define TOKDIR PEFTC_SOURCE_DIR "/tests/data/tokenizer_json/"
#define BERT_TOK TOKDIR "wordpiece_bert.json"
#define ROBERTA_TOK TOKDIR "bpe_roberta.json"
#define BANKING PEFTC_SOURCE_DIR "/data/banking77/"

/* ---- a temporary directory, its files, the tokenizers ---- */

typedef struct {
    char dir[64];
    pc_text_tokenizer *tok;
    pc_cls_labels labels; /* dir/labels.json: ["neg", "pos", "neutral"] */
    int max_len, num_labels;
    bool need;
    const pc_cls_labels *use_labels; /* &labels or NULL */
} env;

static void write_file(const env *e, const char *name, const char *s, size_t n, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", e->dir, name);
    char err[512] = "";
    int rc = pc_write_file_atomic(path, s, n, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
}

static pc_text_tokenizer *open_tok(const char *path) {
    char err[512] = "";
    pc_text_tokenizer *t = pc_text_tokenizer_open(path, 0, err, sizeof err);
    if (!t) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(t != NULL);
    return t;
}

static void env_open(env *e, const char *tok) {
    *e = (env){.max_len = 64, .num_labels = 3, .need = true};
    strcpy(e->dir, "/tmp/peftc_cls_data_XXXXXX");
    CU_ASSERT_FATAL(mkdtemp(e->dir) != NULL);
    e->tok = open_tok(tok);
    char path[256], err[512] = "";
    const char *names = "[\"neg\", \"pos\", \"neutral\"]\n";
    write_file(e, "labels.json", names, strlen(names), path, sizeof path);
    int rc = pc_cls_labels_load(&e->labels, path, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
}

static void env_close(env *e) {
    pc_cls_labels_free(&e->labels);
    pc_text_tokenizer_free(e->tok);
    CU_ASSERT(pc_remove_tree(e->dir) == 0);
}

/* writes dir/name (content: n bytes, or strlen when n == 0) and loads it */
static int load(const env *e, const char *name, const char *content, size_t n, pc_cls_data *d, char *err,
                size_t errlen) {
    char path[256];
    write_file(e, name, content, n ? n : strlen(content), path, sizeof path);
    return pc_cls_data_load(d, path, e->tok, e->max_len, e->num_labels, e->use_labels, e->need, err, errlen);
}

static pc_cls_data load_ok(const env *e, const char *name, const char *content, size_t n) {
    pc_cls_data d;
    char err[1024] = "";
    int rc = load(e, name, content, n, &d, err, sizeof err);
    if (rc) printf("\n    %s: unexpected error: %s\n", name, err);
    CU_ASSERT_FATAL(rc == 0);
    return d;
}

/* the load fails with exactly "DIR/NAME" + want */
static void expect_err(const env *e, const char *name, const char *content, size_t n, const char *want) {
    pc_cls_data d;
    char err[1024] = "", full[1024];
    int rc = load(e, name, content, n, &d, err, sizeof err);
    snprintf(full, sizeof full, "%s/%s%s", e->dir, name, want);
    if (rc == 0) printf("\n    %s: loaded, expected \"%s\"\n", name, full);
    else if (strcmp(err, full) != 0) printf("\n    %s:\n      want %s\n      got  %s\n", name, full, err);
    CU_ASSERT(rc == -1 && strcmp(err, full) == 0);
    CU_ASSERT(d.ex == NULL && d.n == 0 && d.path == NULL); /* left zeroed */
    if (rc == 0) pc_cls_data_free(&d);
}

/* s followed by the labels file's path (a static buffer) */
static const char *in_labels(const env *e, const char *s) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s%s", s, e->labels.path);
    return buf;
}

static bool ids_are(const pc_cls_example *x, const int32_t *want, int n) {
    bool ok = x->n == n && memcmp(x->ids, want, (size_t)n * sizeof *want) == 0;
    if (!ok) {
        printf("\n    line %d: want", x->line);
        for (int i = 0; i < n; i++) printf(" %d", want[i]);
        printf("\n    %*s  got ", x->line > 9 ? 2 : 1, "");
        for (int i = 0; i < x->n; i++) printf(" %d", x->ids[i]);
        printf("\n");
    }
    return ok;
}

/* the example holds the ids of text encoded with special tokens (untruncated) */
static bool ids_of(const env *e, const pc_cls_example *x, const char *text) {
    int32_t *ids;
    size_t n;
    char err[512];
    if (pc_text_encode(e->tok, text, strlen(text), true, &ids, &n, err, sizeof err)) return false;
    bool ok = ids_are(x, ids, (int)n);
    free(ids);
    return ok;
}

/* Expected ids: Hugging Face tokenizers 0.23.3 (/work/venv-golden) on the same committed fixture,
 *   t = Tokenizer.from_file("tests/data/tokenizer_json/wordpiece_bert.json")
 *   t.no_padding(); t.no_truncation()          # then, for the cut ones:
 *   t.enable_truncation(max_length=8); t.encode(text).ids
 * and the same with bpe_roberta.json. Texts: the first two rows of data/banking77/train.csv. */
static const char *const TEXT1 = "I am still waiting on my card?";
static const char *const TEXT2 = "What can I do if my card still hasn't arrived after 2 weeks?";
static const int32_t BERT_TEXT1[] = {2, 38, 232, 413, 854, 112, 162, 107, 154, 29, 3};
static const int32_t BERT_TEXT2_MAX8[] = {2, 158, 156, 38, 140, 238, 107, 3};
static const int32_t ROBERTA_TEXT1[] = {0, 45, 471, 348, 338, 268, 69, 279, 303, 373, 311, 282, 410, 35, 2};
static const int32_t ROBERTA_TEXT2_MAX8[] = {0, 466, 510, 296, 388, 504, 311, 2};
#define LEN(a) ((int)(sizeof a / sizeof *a))

/* ---- the CSV reader ---- */

static void test_csv_reader(void) {
    /* BOM, CRLF, a quoted comma, "" escapes, a quoted CRLF and LF, an empty last field, blank
     * lines (skipped), a lone CR as a line end, no line end at the end */
    const char text[] = "\xEF\xBB\xBF"
                        "a,b\r\n"
                        "\"x, y\",\"say \"\"hi\"\"\"\r\n"
                        "\r\n"
                        "\"two\r\nlines\nhere\",\r\n"
                        "\n"
                        "p,q\rlast,\"\"";
    pc_csv c;
    char err[256] = "";
    pc_csv_init(&c, "t.csv", text, sizeof text - 1);
    struct {
        int line;
        const char *f0, *f1;
    } want[] = {{1, "a", "b"}, {2, "x, y", "say \"hi\""}, {4, "two\r\nlines\nhere", ""}, {8, "p", "q"},
                {9, "last", ""}};
    for (size_t r = 0; r < sizeof want / sizeof *want; r++) {
        CU_ASSERT_EQUAL_FATAL(pc_csv_next(&c, err, sizeof err), 1);
        size_t l0, l1;
        CU_ASSERT_EQUAL(c.nf, 2);
        CU_ASSERT_EQUAL(c.rec_line, want[r].line);
        CU_ASSERT_STRING_EQUAL(pc_csv_field(&c, 0, &l0), want[r].f0);
        CU_ASSERT_STRING_EQUAL(pc_csv_field(&c, 1, &l1), want[r].f1);
        CU_ASSERT(l0 == strlen(want[r].f0) && l1 == strlen(want[r].f1));
    }
    CU_ASSERT_EQUAL(pc_csv_next(&c, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pc_csv_next(&c, err, sizeof err), 0);
    pc_csv_free(&c);

    /* a NUL byte inside a field is kept (len counts it); a trailing comma is an empty field */
    const char nul[] = "a\0b,c,\n";
    pc_csv_init(&c, "n.csv", nul, sizeof nul - 1);
    CU_ASSERT_EQUAL(pc_csv_next(&c, err, sizeof err), 1);
    size_t l;
    CU_ASSERT(c.nf == 3 && memcmp(pc_csv_field(&c, 0, &l), "a\0b", 4) == 0 && l == 3);
    CU_ASSERT(pc_csv_field(&c, 2, &l)[0] == '\0' && l == 0);
    pc_csv_free(&c);

    const char bad[] = "a,b\n\"ok\",\"open\nstill open";
    pc_csv_init(&c, "u.csv", bad, sizeof bad - 1);
    CU_ASSERT_EQUAL(pc_csv_next(&c, err, sizeof err), 1);
    CU_ASSERT_EQUAL(pc_csv_next(&c, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "u.csv:2: unterminated quoted field (field 2)");
    pc_csv_free(&c);

    const char after[] = "\"a\"b,c\n";
    pc_csv_init(&c, "q.csv", after, sizeof after - 1);
    CU_ASSERT_EQUAL(pc_csv_next(&c, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "q.csv:1: field 1: text after its closing quote (a quote inside a quoted field is "
                                "written \"\")");
    pc_csv_free(&c);

    /* a quote inside an unquoted field is a plain byte (Python's csv, pandas) */
    const char plain[] = "5\" screen,x";
    pc_csv_init(&c, "p.csv", plain, sizeof plain - 1);
    CU_ASSERT_EQUAL(pc_csv_next(&c, err, sizeof err), 1);
    CU_ASSERT_STRING_EQUAL(pc_csv_field(&c, 0, NULL), "5\" screen");
    pc_csv_free(&c);
}

/* ---- labels files ---- */

static void labels_err(const env *e, const char *name, const char *content, const char *want) {
    char path[256], err[512] = "", full[512];
    write_file(e, name, content, strlen(content), path, sizeof path);
    pc_cls_labels l;
    int rc = pc_cls_labels_load(&l, path, err, sizeof err);
    snprintf(full, sizeof full, "%s%s", path, want);
    if (rc == 0 || strcmp(err, full) != 0) printf("\n    %s:\n      want %s\n      got  %s\n", name, full, err);
    CU_ASSERT(rc == -1 && strcmp(err, full) == 0);
    CU_ASSERT(l.names == NULL && l.n == 0 && l.path == NULL);
}

static void test_labels(void) {
    env e;
    env_open(&e, BERT_TOK);
    CU_ASSERT_EQUAL(e.labels.n, 3);
    CU_ASSERT_STRING_EQUAL(e.labels.names[2], "neutral");
    CU_ASSERT_EQUAL(pc_cls_labels_find(&e.labels, "neg", 3), 0);
    CU_ASSERT_EQUAL(pc_cls_labels_find(&e.labels, "pos", 3), 1);
    CU_ASSERT_EQUAL(pc_cls_labels_find(&e.labels, "neutral", 7), 2);
    CU_ASSERT_EQUAL(pc_cls_labels_find(&e.labels, "negative", 3), 0); /* len counts */
    CU_ASSERT_EQUAL(pc_cls_labels_find(&e.labels, "ne", 2), -1);
    CU_ASSERT_EQUAL(pc_cls_labels_find(&e.labels, "Neg", 3), -1);
    CU_ASSERT_EQUAL(pc_cls_labels_find(&e.labels, "neg\0", 4), -1);
    CU_ASSERT_EQUAL(pc_cls_labels_find(&e.labels, "", 0), -1);
    labels_err(&e, "l1.json", "{\"a\": 1}", ": not a JSON list of label names (got an object)");
    labels_err(&e, "l2.json", "[]", ": no labels (an empty list)");
    labels_err(&e, "l3.json", "[\"a\", 3]", ": label id 1: must be a non-empty string, got an integer");
    labels_err(&e, "l4.json", "[\"a\", \"\"]", ": label id 1: must be a non-empty string, got \"\"");
    labels_err(&e, "l5.json", "[\"a\", \"b\", \"c\", \"b\"]", ": \"b\" is listed twice (label ids 1 and 3)");
    labels_err(&e, "l6.json", "[\"a\",\n \"b\"", ":2: ']' expected near end of file");
    env_close(&e);
}

/* ---- JSONL ---- */

static void test_jsonl(void) {
    env e;
    env_open(&e, BERT_TOK);
    e.use_labels = &e.labels;
    char text[512];
    snprintf(text, sizeof text,
             "{\"text\": \"%s\", \"label\": 2, \"task\": \"x\", \"id\": 7}\n"
             "\n"
             "   \r\n"
             "{\"label\": \"pos\", \"adapter\": null, \"text\": \"%s\"}\r\n"
             "{\"text\": \"\", \"label\": 0}",
             TEXT1, TEXT2);
    pc_cls_data d = load_ok(&e, "a.jsonl", text, 0);
    CU_ASSERT_EQUAL_FATAL(d.n, 3);
    CU_ASSERT(d.path && strstr(d.path, "/a.jsonl"));
    CU_ASSERT(d.ex[0].label == 2 && d.ex[0].line == 1);
    CU_ASSERT(d.ex[1].label == 1 && d.ex[1].line == 4);
    CU_ASSERT(d.ex[2].label == 0 && d.ex[2].line == 5);
    CU_ASSERT(ids_are(&d.ex[0], BERT_TEXT1, LEN(BERT_TEXT1)));
    CU_ASSERT(ids_of(&e, &d.ex[1], TEXT2));
    CU_ASSERT(d.ex[2].n == 2 && d.ex[2].ids[0] == 2 && d.ex[2].ids[1] == 3); /* [CLS] [SEP] */
    CU_ASSERT_EQUAL(d.max_len, d.ex[1].n);
    pc_cls_data_free(&d);
    pc_cls_data_free(&d); /* freeing twice is fine */

    /* a BOM before the first object; blank lines before it keep the line numbers */
    d = load_ok(&e, "bom.jsonl", "\xEF\xBB\xBF\n\n{\"text\": \"a\", \"label\": 1}\n", 0);
    CU_ASSERT(d.n == 1 && d.ex[0].line == 3 && d.ex[0].label == 1);
    pc_cls_data_free(&d);

    /* errors */
    e.num_labels = 3;
    expect_err(&e, "r.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 3}\n",
               0, ":2: field \"label\": 3 is out of range for a model with 3 labels (num_labels in its config.json)");
    expect_err(&e, "n.jsonl", "{\"text\": \"a\", \"label\": -1}\n", 0,
               ":1: field \"label\": -1 is out of range for a model with 3 labels (num_labels in its config.json)");
    expect_err(&e, "f.jsonl", "{\"text\": \"a\", \"label\": 1.0}\n", 0,
               ":1: field \"label\": must be an integer label id or a label name, got a float 1.0");
    expect_err(&e, "b.jsonl", "{\"text\": \"a\", \"label\": true}\n", 0,
               ":1: field \"label\": must be an integer label id or a label name, got a boolean");
    expect_err(&e, "m.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\"}\n", 0,
               ":2: field \"label\": missing (training and evaluation need a label on every example)");
    expect_err(&e, "nl.jsonl", "{\"text\": \"a\", \"label\": null}\n", 0,
               ":1: field \"label\": missing (training and evaluation need a label on every example)");
    expect_err(&e, "u.jsonl", "{\"text\": \"a\", \"label\": \"joy\"}\n", 0,
               in_labels(&e, ":1: field \"label\": \"joy\" is not one of the 3 labels in "));
    expect_err(&e, "t.jsonl", "{\"label\": 1}\n", 0, ":1: field \"text\": missing");
    expect_err(&e, "t2.jsonl", "{\"text\": 5, \"label\": 1}\n", 0,
               ":1: field \"text\": must be a string, got an integer");
    expect_err(&e, "j.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 1\n", 0,
               ":2: not a JSON object: '}' expected near end of file");
    expect_err(&e, "j2.jsonl", "{\"text\": \"a\", \"label\": 1}\n[1, 2]\n", 0, ":2: not a JSON object: got a list");
    expect_err(&e, "j3.jsonl", "{\"text\": \"a\", \"label\": 1} x\n", 0,
               ":1: not a JSON object: end of file expected near 'x'");
    expect_err(&e, "list.json", "\n[{\"text\": \"a\", \"label\": 1}]\n", 0,
               ": a JSON list: give JSONL (one JSON object per line) or CSV");
    expect_err(&e, "ws.jsonl", " \n\t\r\n\n", 0, ": no examples");
    expect_err(&e, "utf.jsonl", "{\"text\": \"caf\xC3\", \"label\": 1}\n", 0,
               ":1: not a JSON object: unable to decode byte 0xc3 near '\"caf'");
    env_close(&e);
}

static void test_labels_fix_messages(void) {
    env e;
    env_open(&e, BERT_TOK);
    char want[512];
    /* the out-of-range message of the brief, and a name without a labels file */
    e.num_labels = 77;
    expect_err(&e, "x.jsonl", "{\"text\": \"a\", \"label\": 80}\n", 0,
               ":1: field \"label\": 80 is out of range for a model with 77 labels (num_labels in its config.json)");
    expect_err(&e, "y.jsonl", "{\"text\": \"a\", \"label\": \"pos\"}\n", 0,
               ":1: field \"label\": \"pos\" is a name: give --labels FILE (a JSON list of the names)");
    /* the labels file must name num_labels labels */
    e.use_labels = &e.labels;
    pc_cls_data d;
    char err[512] = "", path[300];
    const char *z = "{\"text\": \"a\", \"label\": 0}\n";
    write_file(&e, "z.jsonl", z, strlen(z), path, sizeof path);
    CU_ASSERT_EQUAL(pc_cls_data_load(&d, path, e.tok, 64, 77, &e.labels, true, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: 3 label names, but the model has 77 labels (num_labels in its config.json)",
             e.labels.path);
    CU_ASSERT_STRING_EQUAL(err, want);
    /* the exact "not one of" message, with the labels file's path */
    e.num_labels = 3;
    pc_cls_data dd;
    CU_ASSERT_EQUAL(load(&e, "w.csv", "text,category\na,pos\nb,foo\n", 0, &dd, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s/w.csv:3: column \"category\": \"foo\" is not one of the 3 labels in %s", e.dir,
             e.labels.path);
    CU_ASSERT_STRING_EQUAL(err, want);
    env_close(&e);
}

static void test_unlabelled(void) {
    env e;
    env_open(&e, BERT_TOK);
    e.need = false;
    /* predict: no labels file, no labels; a label that is there is still read and checked */
    const char *p = "{\"text\": \"a\"}\n{\"text\": \"b\", \"label\": 2}\n{\"text\": \"c\", \"label\": null}\n";
    pc_cls_data d = load_ok(&e, "p.jsonl", p, 0);
    CU_ASSERT(d.n == 3 && d.ex[0].label == -1 && d.ex[1].label == 2 && d.ex[2].label == -1);
    pc_cls_data_free(&d);
    expect_err(&e, "p2.jsonl", "{\"text\": \"b\", \"label\": 9}\n", 0,
               ":1: field \"label\": 9 is out of range for a model with 3 labels (num_labels in its config.json)");
    d = load_ok(&e, "p.csv", "text\nhello\n\"x,y\"\n", 0);
    CU_ASSERT(d.n == 2 && d.ex[0].label == -1 && d.ex[1].label == -1 && d.ex[1].line == 3);
    pc_cls_data_free(&d);
    d = load_ok(&e, "p2.csv", "id,text,label\n1,hello,\n2,bye, 1 \n", 0); /* empty cell: none; spaces trimmed */
    CU_ASSERT(d.n == 2 && d.ex[0].label == -1 && d.ex[1].label == 1);
    pc_cls_data_free(&d);
    e.need = true;
    expect_err(&e, "q.csv", "text\nhello\n", 0,
               ":1: no column \"label\" or \"category\" in the header (training and evaluation need labels)");
    expect_err(&e, "q2.csv", "id,text,label\n1,hello,\n", 0,
               ":2: column \"label\": missing (training and evaluation need a label on every example)");
    env_close(&e);
}

/* ---- CSV ---- */

static void test_csv(void) {
    env e;
    env_open(&e, BERT_TOK);
    e.use_labels = &e.labels;
    /* BOM, CRLF, quoted commas, "" escapes, an embedded newline, extra columns, int and name labels */
    const char *csv = "\xEF\xBB\xBF"
                      "id,text,label\r\n"
                      "1,I am still waiting on my card?,2\r\n"
                      "2,\"Hello, \"\"world\"\"\",pos\r\n"
                      "3,\"two\nlines, here\",0\r\n"
                      "4,last,neutral";
    pc_cls_data d = load_ok(&e, "a.csv", csv, 0);
    CU_ASSERT_EQUAL_FATAL(d.n, 4);
    CU_ASSERT(ids_are(&d.ex[0], BERT_TEXT1, LEN(BERT_TEXT1)));
    CU_ASSERT(ids_of(&e, &d.ex[1], "Hello, \"world\""));
    CU_ASSERT(ids_of(&e, &d.ex[2], "two\nlines, here"));
    CU_ASSERT(ids_of(&e, &d.ex[3], "last"));
    int labels[] = {2, 1, 0, 2}, lines[] = {2, 3, 4, 6};
    for (int i = 0; i < 4; i++) CU_ASSERT(d.ex[i].label == labels[i] && d.ex[i].line == lines[i]);
    pc_cls_data_free(&d);

    /* "category": names through the labels file; "label" wins over it */
    d = load_ok(&e, "c.csv", "text,category\nx,neutral\ny,neg\n", 0);
    CU_ASSERT(d.n == 2 && d.ex[0].label == 2 && d.ex[1].label == 0);
    pc_cls_data_free(&d);
    d = load_ok(&e, "c2.csv", "category,label,text\nneg,1,x\n", 0);
    CU_ASSERT(d.n == 1 && d.ex[0].label == 1);
    pc_cls_data_free(&d);

    /* errors */
    expect_err(&e, "f.csv", "text,label\na,1\nb,2,3\n", 0, ":3: 3 fields, the header has 2");
    expect_err(&e, "f1.csv", "text,label\na,1\nb\n", 0, ":3: 1 field, the header has 2");
    expect_err(&e, "u.csv", "text,label\na,1\n\"b,\nc,2\n", 0, ":3: unterminated quoted field (field 1)");
    expect_err(&e, "q.csv", "text,label\n\"a\" b,1\n", 0,
               ":2: field 1: text after its closing quote (a quote inside a quoted field is written \"\")");
    expect_err(&e, "t.csv", "sentence,label\na,1\n", 0,
               ":1: no column \"text\" in the header (its columns: \"sentence\", \"label\")");
    expect_err(&e, "t2.csv", "text,label,text\na,1,b\n", 0, ":1: column \"text\" appears twice in the header");
    expect_err(&e, "r.csv", "text,label\na,1\n\"b\nb\",3\n", 0,
               ":3: column \"label\": 3 is out of range for a model with 3 labels (num_labels in its config.json)");
    expect_err(&e, "n.csv", "text,label\na,-1\n", 0,
               ":2: column \"label\": -1 is out of range for a model with 3 labels (num_labels in its config.json)");
    expect_err(&e, "big.csv", "text,label\na,99999999999999999999\n", 0,
               ":2: column \"label\": 99999999999999999999 is out of range for a model with 3 labels (num_labels in "
               "its config.json)");
    expect_err(&e, "fl.csv", "text,label\na,1.0\n", 0,
               ":2: column \"label\": 1.0 is not an integer (label ids are written 0, 1, 2, ...)");
    expect_err(&e, "fl2.csv", "text,label\na,2e0\n", 0,
               ":2: column \"label\": 2e0 is not an integer (label ids are written 0, 1, 2, ...)");
    expect_err(&e, "nm.csv", "text,label\na,joy\n", 0,
               in_labels(&e, ":2: column \"label\": \"joy\" is not one of the 3 labels in "));
    expect_err(&e, "cat.csv", "text,category\na,1\n", 0,
               in_labels(&e, ":2: column \"category\": \"1\" is not one of the 3 labels in "));
    expect_err(&e, "m.csv", "text,label\na,\n", 0,
               ":2: column \"label\": missing (training and evaluation need a label on every example)");
    /* invalid UTF-8: the tokenizer's message after file:line */
    char want[512];
    snprintf(want, sizeof want, ":3: %s: text: invalid UTF-8 at byte 3 (0xff)", BERT_TOK);
    expect_err(&e, "utf.csv", "text,label\nok,1\nabc\xff,1\n", 0, want);
    expect_err(&e, "empty.csv", "", 0, ": no examples");
    expect_err(&e, "header.csv", "text,label\r\n", 0, ": no examples");
    expect_err(&e, "bom.csv", "\xEF\xBB\xBF", 0, ": no examples");
    env_close(&e);

    /* no labels file: "category" is refused at the header, a name in "label" at its row */
    env_open(&e, BERT_TOK);
    expect_err(&e, "c.csv", "text,category\na,pos\n", 0,
               ":1: column \"category\" holds names: give --labels FILE (a JSON list of the names)");
    expect_err(&e, "l.csv", "text,label\na,0\nb,pos\n", 0,
               ":3: column \"label\": \"pos\" is a name: give --labels FILE (a JSON list of the names)");
    env_close(&e);

    /* a FIFO is refused without blocking (pc_read_file_max) */
    env_open(&e, BERT_TOK);
    char fifo[256], err[512] = "";
    snprintf(fifo, sizeof fifo, "%s/fifo.csv", e.dir);
    CU_ASSERT_FATAL(mkfifo(fifo, 0600) == 0);
    CU_ASSERT_EQUAL(pc_cls_data_load(&d, fifo, e.tok, 64, 3, NULL, true, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "fifo.csv") != NULL);
    env_close(&e);
}

/* ---- truncation ---- */

static void test_truncation(void) {
    env e;
    char text[256], err[512] = "";
    snprintf(text, sizeof text, "{\"text\": \"%s\", \"label\": 0}\n{\"text\": \"%s\", \"label\": 1}\n", TEXT1, TEXT2);

    env_open(&e, BERT_TOK);
    e.max_len = 8;
    pc_cls_data d = load_ok(&e, "t.jsonl", text, 0);
    CU_ASSERT(ids_are(&d.ex[1], BERT_TEXT2_MAX8, LEN(BERT_TEXT2_MAX8)));
    CU_ASSERT(d.ex[0].n == 8 && d.ex[0].ids[0] == 2 && d.ex[0].ids[7] == 3);
    CU_ASSERT(memcmp(d.ex[0].ids, BERT_TEXT1, 7 * sizeof(int32_t)) == 0);
    CU_ASSERT_EQUAL(d.max_len, 8);
    pc_cls_data_free(&d);
    /* exactly max_len ids: unchanged */
    e.max_len = LEN(BERT_TEXT1);
    d = load_ok(&e, "t.jsonl", text, 0);
    CU_ASSERT(ids_are(&d.ex[0], BERT_TEXT1, LEN(BERT_TEXT1)));
    pc_cls_data_free(&d);
    /* the least: one id of text */
    e.max_len = 3;
    d = load_ok(&e, "t.jsonl", text, 0);
    CU_ASSERT(d.ex[0].n == 3 && d.ex[0].ids[0] == 2 && d.ex[0].ids[1] == 38 && d.ex[0].ids[2] == 3);
    CU_ASSERT_EQUAL(d.max_len, 3);
    pc_cls_data_free(&d);
    /* no room for text */
    char path[256], want[512];
    write_file(&e, "t.jsonl", text, strlen(text), path, sizeof path);
    CU_ASSERT_EQUAL(pc_cls_data_load(&d, path, e.tok, 2, 3, NULL, true, err, sizeof err), -1);
    snprintf(want, sizeof want, "max_len 2 leaves no room for text: the tokenizer (%s) adds 2 special tokens",
             BERT_TOK);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT_EQUAL(pc_cls_data_load(&d, path, e.tok, 0, 3, NULL, true, err, sizeof err), -1);
    env_close(&e);

    /* RoBERTa: <s> ... </s> */
    env_open(&e, ROBERTA_TOK);
    d = load_ok(&e, "t.jsonl", text, 0);
    CU_ASSERT(ids_are(&d.ex[0], ROBERTA_TEXT1, LEN(ROBERTA_TEXT1)));
    pc_cls_data_free(&d);
    e.max_len = 8;
    d = load_ok(&e, "t.jsonl", text, 0);
    CU_ASSERT(ids_are(&d.ex[1], ROBERTA_TEXT2_MAX8, LEN(ROBERTA_TEXT2_MAX8)));
    pc_cls_data_free(&d);
    env_close(&e);
}

/* ---- banking77 ---- */

static uint64_t fnv(uint64_t h, int32_t v) { return (h ^ (uint32_t)v) * 1099511628211ull; }

static void test_banking77(void) {
    pc_text_tokenizer *tok = open_tok(BERT_TOK);
    pc_cls_labels l;
    pc_cls_data d;
    char err[512] = "";
    int rc = pc_cls_labels_load(&l, BANKING "categories.json", err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_EQUAL(l.n, 77);
    CU_ASSERT_STRING_EQUAL(l.names[0], "card_arrival");
    rc = pc_cls_data_load(&d, BANKING "train.csv", tok, 64, 77, &l, true, err, sizeof err);
    if (rc) printf("\n    %s\n", err);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_EQUAL(d.n, 10003);
    bool in_range = true;
    int seen[77] = {0};
    for (size_t i = 0; i < d.n; i++) {
        in_range &= d.ex[i].label >= 0 && d.ex[i].label < 77 && d.ex[i].n <= 64;
        if (d.ex[i].label >= 0 && d.ex[i].label < 77) seen[d.ex[i].label]++;
    }
    CU_ASSERT(in_range);
    int kinds = 0;
    for (int k = 0; k < 77; k++) kinds += seen[k] >= 35; /* SOURCE.md: 35-187 per intent */
    CU_ASSERT_EQUAL(kinds, 77);
    CU_ASSERT(d.ex[0].label == 0 && d.ex[0].line == 2);
    CU_ASSERT(ids_are(&d.ex[0], BERT_TEXT1, LEN(BERT_TEXT1)));
    CU_ASSERT_EQUAL(d.max_len, 64);
    /* the longest text (record 3918, starting on line 3926 after quoted newlines above it) */
    CU_ASSERT_EQUAL(d.ex[3917].line, 3926);
    CU_ASSERT_STRING_EQUAL(l.names[d.ex[3917].label], "unable_to_verify_identity");
    /* every example: FNV-1a 64 over (n, ids..., label) of each, computed the same way with
     * tokenizers 0.23.3 (t.enable_truncation(max_length=64); ids of Python csv.reader's rows;
     * label = categories.index(category)) */
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < d.n; i++) {
        h = fnv(h, d.ex[i].n);
        for (int k = 0; k < d.ex[i].n; k++) h = fnv(h, d.ex[i].ids[k]);
        h = fnv(h, d.ex[i].label);
    }
    CU_ASSERT_EQUAL(h, 0x38d67391fa129fcaull);
    pc_cls_data_free(&d);

    /* the same record cut to 16 (tokenizers 0.23.3, enable_truncation(max_length=16)) */
    static const int32_t LONG16[] = {2, 580, 112, 575, 234, 266, 159, 857, 67, 112, 184, 630, 61, 353, 256, 3};
    rc = pc_cls_data_load(&d, BANKING "train.csv", tok, 16, 77, &l, true, err, sizeof err);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT(ids_are(&d.ex[3917], LONG16, LEN(LONG16)));
    CU_ASSERT_EQUAL(d.max_len, 16);
    pc_cls_data_free(&d);

    /* without categories.json: the message says what to give */
    rc = pc_cls_data_load(&d, BANKING "test.csv", tok, 64, 77, NULL, true, err, sizeof err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_STRING_EQUAL(err, BANKING "test.csv:1: column \"category\" holds names: give --labels FILE (a JSON "
                                        "list of the names)");
    rc = pc_cls_data_load(&d, BANKING "test.csv", tok, 64, 77, &l, true, err, sizeof err);
    CU_ASSERT(rc == 0 && d.n == 3080);
    pc_cls_data_free(&d);
    pc_cls_labels_free(&l);
    pc_text_tokenizer_free(tok);
}

static CU_TestInfo tests[] = {
    {"CSV reader (quotes, escapes, line ends, BOM, errors)", test_csv_reader},
    {"labels files", test_labels},
    {"JSONL", test_jsonl},
    {"label messages (range, names, labels file size)", test_labels_fix_messages},
    {"unlabelled data (need_labels false)", test_unlabelled},
    {"CSV", test_csv},
    {"truncation keeps the special tokens (BERT, RoBERTa)", test_truncation},
    {"banking77 train.csv + categories.json", test_banking77},
    CU_TEST_INFO_NULL,
};

PC_TEST_MAIN("cls_data", tests)
