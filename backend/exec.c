/* pc_exec: one execution API over the reference interpreter and the compiled backend. */
#include "backend/exec.h"

#include "backend/compiled.h"
#include "backend/compiled_internal.h"
#include "backend/onednn.h"
#include "backend/ref.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pc_exec {
    pc_backend_kind kind;
    pc_ref *ref;
    pc_compiled *jit;
    char *profile; /* PEFTC_PROFILE: the graph's name, whose profile goes to stderr at free */
};

/* the backend used when none is named */
#define PC_BACKEND_DEFAULT PC_BACKEND_JIT

int pc_backend_parse(const char *name, pc_backend_kind *out) {
    if (!name) { *out = PC_BACKEND_DEFAULT; return 0; }
    if (strcmp(name, "ref") == 0) { *out = PC_BACKEND_REF; return 0; }
    if (strcmp(name, "jit") == 0) { *out = PC_BACKEND_JIT; return 0; }
    return -1;
}

const char *pc_backend_name(pc_backend_kind k) {
    switch (k) {
    case PC_BACKEND_REF: return "ref";
    case PC_BACKEND_JIT: return "jit";
    }
    return "?";
}

pc_exec *pc_exec_new(const pc_graph *g, const pc_exec_opts *o, char *err, size_t errlen) {
    pc_exec *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->kind = o ? o->kind : PC_BACKEND_DEFAULT;
    if (e->kind == PC_BACKEND_JIT) e->jit = pc_compiled_new(g, o, err, errlen);
    else if ((e->ref = pc_ref_new(g, err, errlen))) pc_ref_check_finite(e->ref, !o || o->check_finite >= 0);
    if (!e->jit && !e->ref) {
        free(e);
        return NULL;
    }
    /* PEFTC_PROFILE=1: every compiled executor times its instructions and prints where the
     * time went when it is freed (a user's view of backend/compiled.c's profile) */
    const char *p = getenv("PEFTC_PROFILE");
    if (e->jit && p && *p && strcmp(p, "0") != 0) {
        const char *name = g->name ? g->name : "graph";
        if ((e->profile = malloc(strlen(name) + 1))) strcpy(e->profile, name);
        pc_compiled_set_profile(e->jit, 1);
    }
    return e;
}

void pc_exec_free(pc_exec *e) {
    if (!e) return;
    if (e->profile) {
        fprintf(stderr, "peftc profile: graph %s\n", e->profile);
        pc_compiled_profile_report(e->jit, stderr);
        free(e->profile);
    }
    pc_ref_free(e->ref);
    pc_compiled_free(e->jit);
    free(e);
}

int pc_exec_bind(pc_exec *e, pc_val v, void *data) {
    if (!e) return -1;
    return e->jit ? pc_compiled_bind(e->jit, v, data) : pc_ref_bind(e->ref, v, data);
}

void pc_exec_set_seed(pc_exec *e, uint64_t seed) {
    if (!e) return;
    if (e->jit) pc_compiled_set_seed(e->jit, seed);
    else pc_ref_set_seed(e->ref, seed);
}

int pc_exec_run(pc_exec *e, char *err, size_t errlen) {
    if (!e) {
        snprintf(err, errlen, "no executor");
        return -1;
    }
    return e->jit ? pc_compiled_run(e->jit, err, errlen) : pc_ref_run(e->ref, err, errlen);
}

const void *pc_exec_data(const pc_exec *e, pc_val v) {
    if (!e) return NULL;
    return e->jit ? pc_compiled_data(e->jit, v) : pc_ref_data(e->ref, v);
}

int pc_exec_apply_updates(pc_exec *e) {
    if (!e) return -1;
    return e->jit ? pc_compiled_apply_updates(e->jit) : pc_ref_apply_updates(e->ref);
}

void pc_arena_free(pc_arena *a) {
    if (!a) return;
    pc_dnnl_wcache_free(a->weights);
    free(a->base);
    *a = (pc_arena){0};
}
