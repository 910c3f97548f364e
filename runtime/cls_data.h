/* Labelled (or unlabelled) texts for sequence classification (PEFT's SEQ_CLS): training,
 * evaluation and prediction read a dataset file into tokenized examples.
 *
 * Formats, told apart by content (after an optional UTF-8 BOM, first non-blank byte '{' =
 * JSONL, '[' = a JSON list, refused, else CSV):
 *   JSONL  one JSON object per non-blank line: "text" (a string, required), "label" (an integer
 *          id, or a name from the labels file; null or missing = no label); other fields ignored.
 *   CSV    RFC 4180 (runtime/csv.h) with a header row: column "text" (required), labels from
 *          column "label" (an integer id, or a name from the labels file) or else "category"
 *          (names, through the labels file). An empty label cell = no label. Label cells are
 *          read with surrounding spaces and tabs trimmed; text is taken as is.
 * An integer label must be written as one (no "1.0") and lie in [0, num_labels). A label that
 * is present is always checked, also when need_labels is false.
 *
 * Texts are tokenized as Hugging Face's tokenizer(text, truncation=True, max_length=max_len):
 * the tokenizer's special tokens ([CLS] ... [SEP], <s> ... </s>, a BOS) are kept and the text's
 * own ids are cut to fit.
 *
 * Functions returning int give 0 on success, -1 with a message in err naming the file and the
 * line (and the field or column). */
#ifndef PEFTC_RUNTIME_CLS_DATA_H
#define PEFTC_RUNTIME_CLS_DATA_H

#include "runtime/text_tokenizer.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t *ids; /* token ids with the tokenizer's special tokens, truncated (owned) */
    int n;        /* ids */
    int label;    /* 0..num_labels-1, or -1 when the example has none */
    int line;     /* 1-based line (JSONL) or record start line (CSV) in the file, for messages */
} pc_cls_example;

typedef struct {
    pc_cls_example *ex; /* in file order (owned) */
    size_t n;
    int max_len; /* longest ids after truncation */
    char *path;  /* owned */
} pc_cls_data;

typedef struct {
    char **names; /* label names, index = label id (owned) */
    int n;
    char *path;   /* the file, for messages (owned) */
    struct pc_cls_name_id *by_name; /* (name, id) sorted by name, for lookups (owned) */
} pc_cls_labels;

/* Reads a labels file: a JSON list of distinct non-empty strings (banking77's categories.json,
 * or a model config's id2label values in id order). */
int pc_cls_labels_load(pc_cls_labels *l, const char *path, char *err, size_t errlen);
/* the id of a name (name[0..len) exactly), -1 when it is not one */
int pc_cls_labels_find(const pc_cls_labels *l, const char *name, size_t len);
void pc_cls_labels_free(pc_cls_labels *l); /* safe on a zeroed or freed one */

/* Reads and tokenizes a dataset. max_len: the most ids an example keeps, more than the special
 * tokens the tokenizer adds. labels (may be NULL) maps label names; when given it must hold
 * num_labels names. need_labels: every example must have a label (training, evaluation); else
 * examples without one get -1 (prediction). A file without examples is an error. */
int pc_cls_data_load(pc_cls_data *d, const char *path, const pc_text_tokenizer *tok, int max_len, int num_labels,
                     const pc_cls_labels *labels, bool need_labels, char *err, size_t errlen);
void pc_cls_data_free(pc_cls_data *d); /* safe on a zeroed or freed one */

#endif
