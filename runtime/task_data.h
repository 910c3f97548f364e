/* Task data: the JSONL examples every adapter method trains and evaluates a causal LM on (one
 * loader; drivers/task_batch.h batches them). One JSON object a line, every line of a file the
 * same shape:
 *   {"text": T}                               causal LM on the whole text: ids = BOS + encode(T),
 *                                             every id after the BOS a target
 *   {"input": I, "target": Y}                 ids = BOS + encode(I) + encode(Y), targets only
 *                                             the ids of Y
 *   {"input": I, "answer_choices": [C0, ...], "label": k}
 *                                             multiple choice: the context BOS + encode(I), each
 *                                             continuation encode(Ck); scored per choice
 * each optionally with "task": N (an integer task id >= 0, for multitask prompt tuning and
 * mixed-task batches; absent: the run's --task-id). Other fields are refused (a misspelt "label" would otherwise
 * pass silently). "BOS + encode(x)" is the tokenizer's encoding with its special tokens, as
 * plain-text data (runtime/data.h) has it.
 *
 * Functions returning int give 0, or -1 with a message naming the file, the line and the field. */
#ifndef PEFTC_RUNTIME_TASK_DATA_H
#define PEFTC_RUNTIME_TASK_DATA_H

#include "runtime/text_tokenizer.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { PC_TD_TEXT = 0, PC_TD_TARGET, PC_TD_CHOICE } pc_td_shape;

typedef struct {
    /* TEXT, TARGET: the whole sequence; CHOICE: the context, then every choice's ids in order */
    int32_t *ids;
    int n;         /* ids in all */
    int n_context; /* TEXT: 1 (the BOS); TARGET: BOS + input; CHOICE: BOS + input. The first
                      id that is a target (TEXT, TARGET) or that starts the choices (CHOICE) */
    int nchoices;  /* CHOICE: >= 1; else 0 */
    int *choice_off; /* CHOICE: nchoices + 1 offsets into ids; choice c = ids[off[c], off[c+1]) */
    int label;     /* CHOICE: 0..nchoices-1; else -1 */
    int task;      /* the "task" field; -1 when absent (the run's default task id applies) */
    int line;      /* 1-based line in the file, for messages */
} pc_td_example;

typedef struct {
    pc_td_shape shape;
    pc_td_example *ex; /* file order (owned) */
    size_t n;
    int max_choices;   /* CHOICE: the most choices of an example */
    int max_row;       /* the longest row's ids (CHOICE: context + the longest choice) */
    int max_task;      /* the largest task id given (-1: none) */
    bool has_task;     /* some line has "task" */
    char *path;        /* owned */
} pc_task_data;

/* the name of a shape, for messages: "text", "input/target", "multiple-choice" */
const char *pc_td_shape_name(pc_td_shape s);

/* Whether `path` is task data: its name ends in ".jsonl" (then it must be JSONL), or its first
 * non-blank line is a JSON object with a field of task data ("text", "input", "target",
 * "answer_choices", "label", "task"). A plain text file (runtime/data.h) otherwise, and so is
 * anything that is not a regular file (its loader says what is wrong). -1 with a message when it
 * cannot be read. */
int pc_task_data_detect(const char *path, bool *jsonl, char *err, size_t errlen);

/* Reads and tokenizes a task data file (no examples is an error). */
int pc_task_data_load(pc_task_data *d, const char *path, const pc_text_tokenizer *tok, char *err, size_t errlen);
void pc_task_data_free(pc_task_data *d); /* safe on a zeroed or freed one */

/* the ids of row `c` of example e: TEXT, TARGET: the whole sequence (c = 0); CHOICE: the
 * context followed by choice c, written into buf (room for d->max_row ids). Returns the count;
 * *first_target: the index of the first id that is a target. */
int pc_td_row(const pc_td_example *e, int c, int32_t *buf, int *first_target);

#endif
