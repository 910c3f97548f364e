/* `peftc generate --prompts FILE`: many requests against one compiled decode graph. Each line
 * of FILE is a request ({"prompt": TEXT, "adapter": NAME|null|"__base__", "tokens": N}, or a
 * plain-text line: a prompt for the active adapter) or a hot swap ({"load": NAME, "from": DIR}:
 * adapter NAME's weights replaced between requests, without recompiling). Requests run B at a
 * time (one decode graph of B rows, each row with its adapter through %adapter_ids in a mixed
 * session); a hot swap ends the batch before it, so every request after it sees the new
 * weights. */
#ifndef PEFTC_DRIVERS_GENERATE_LINES_H
#define PEFTC_DRIVERS_GENERATE_LINES_H

#include "drivers/session.h"

#include <stdbool.h>

typedef enum { PC_GEN_PROMPT = 0, PC_GEN_LOAD } pc_gen_line_kind;

typedef struct {
    pc_gen_line_kind kind;
    int line;        /* 1-based, in the file */
    int32_t *prompt; /* BOS + the prompt's ids (PROMPT) */
    int nprompt;
    int adapter;     /* index in s->named (nnamed = the base model); the active one when not named */
    int tokens;      /* new tokens */
    char *name, *from; /* LOAD: the adapter replaced and the directory of its new weights */
} pc_gen_line;

/* Reads and checks every line of path before anything runs: "PATH:LINE: field \"F\": reason" for
 * a bad field, an unknown adapter name, a prompt longer than the context, a load of an adapter
 * that is not loaded. A session that is not mixed serves only its active adapter: a line naming
 * another is an error saying why (not_mixed: the reason, e.g. the method cannot mix). tokens: the
 * default of a line without "tokens". */
int pc_gen_lines_load(const pc_session *s, const char *path, int tokens, const char *not_mixed, pc_gen_line **out,
                      int *n, char *err, size_t errlen);
void pc_gen_lines_free(pc_gen_line *v, int n);

typedef struct {
    int batch; /* rows decoded together (>= 1; no more than the requests unless entries are given) */
    float temperature, topp;
    uint64_t seed; /* every request's sampler starts from it (as if generated alone) */
    const pc_exec_opts *exec;
    const int *cache_sizes; /* as pc_decode_opts */
    int ncache_sizes;
    const struct pc_entry_provider *entries;
} pc_gen_lines_opts;

typedef struct {
    int32_t *ids; /* PROMPT: BOS, the prompt, the generated ids */
    int nids;
    char *text;   /* decoded ids after BOS */
    double ms;    /* LOAD: the time the swap took (replace + refresh), milliseconds */
} pc_gen_result;

/* Runs lines[0..n) in order into res[0..n) (zeroed first; free with pc_gen_results_free). One
 * decoder serves every line: its KV capacity holds the longest request. A failed hot swap names
 * the line ("PATH:LINE: load 'a' from DIR: ..."). */
int pc_generate_lines(pc_session *s, const char *path, const pc_gen_line *lines, int n, const pc_gen_lines_opts *o,
                      pc_gen_result *res, char *err, size_t errlen);
void pc_gen_results_free(pc_gen_result *r, int n);

#endif
