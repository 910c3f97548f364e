/* Numerical faults, named (backend/finite.h): scanning, the rule, the message, and the check in
 * both backends — the interpreter (on by default) and the compiled backend (check_finite = 1),
 * including the compiled cases where results and operands are not simply separate buffers: a
 * fused kernel (its ops re-run one by one), a matmul accumulating into its addend, a result
 * computed over its operand's buffer. */
#include "backend/compiled_internal.h"
#include "backend/exec.h"
#include "backend/finite.h"
#include "cu_main.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_NAME "tests/unit/test_finite.c"

/* ---- scanning ---- */

static void t_scan(void) {
    float a[37];
    for (int i = 0; i < 37; i++) a[i] = (float)i - 18.5f;
    CU_ASSERT_EQUAL(pc_fin_scan(a, PC_SHAPE(37), NULL), 0);
    a[35] = NAN; /* past the vector part */
    CU_ASSERT_EQUAL(pc_fin_scan(a, PC_SHAPE(37), NULL), PC_FIN_NAN);
    a[3] = -INFINITY;
    CU_ASSERT_EQUAL(pc_fin_scan(a, PC_SHAPE(37), NULL), PC_FIN_NAN | PC_FIN_INF);
    a[35] = 3.4028235e38f; /* the largest float is finite */
    CU_ASSERT_EQUAL(pc_fin_scan(a, PC_SHAPE(37), NULL), PC_FIN_INF);
    CU_ASSERT_EQUAL(pc_fin_scan(a, PC_SHAPE(0, 4), NULL), 0);
    CU_ASSERT_EQUAL(pc_fin_scan(NULL, PC_SHAPE(4), NULL), 0);
    /* a strided view: the transpose of a [3,5] tensor, and every other element */
    float b[15];
    for (int i = 0; i < 15; i++) b[i] = 1;
    b[7] = INFINITY; /* row 1, column 2 of the [3,5] */
    CU_ASSERT_EQUAL(pc_fin_scan(b, PC_SHAPE(5, 3), (int64_t[]){1, 5}), PC_FIN_INF);
    CU_ASSERT_EQUAL(pc_fin_scan(b, PC_SHAPE(7), (int64_t[]){2}), 0); /* even elements only */
    CU_ASSERT_EQUAL(pc_fin_scan(b + 1, PC_SHAPE(7), (int64_t[]){2}), PC_FIN_INF);
}

/* ---- the rule ---- */

static void t_rule(void) {
    pc_graph *g = pc_graph_new("rule");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(2, 4, 4));
    pc_val m = pc_causal_mask(g, x, -INFINITY), m30 = pc_causal_mask(g, x, -1e30);
    pc_val s = pc_softmax(g, x, -1);
    const pc_value *vm = &g->vals[m], *v30 = &g->vals[m30], *vs = &g->vals[s];
    /* made from finite operands: a fault */
    CU_ASSERT_EQUAL(pc_fin_fault(vs, PC_FIN_NAN, 0), PC_FIN_NAN);
    CU_ASSERT_EQUAL(pc_fin_fault(vs, PC_FIN_INF, 0), PC_FIN_INF);
    CU_ASSERT_EQUAL(pc_fin_fault(vs, PC_FIN_NAN | PC_FIN_INF, 0), PC_FIN_NAN);
    /* carried along: not again */
    CU_ASSERT_EQUAL(pc_fin_fault(vs, PC_FIN_NAN, PC_FIN_NAN), 0);
    CU_ASSERT_EQUAL(pc_fin_fault(vs, PC_FIN_INF, PC_FIN_INF), 0);
    CU_ASSERT_EQUAL(pc_fin_fault(vs, PC_FIN_INF, PC_FIN_NAN), 0);
    /* a NaN out of infinities is made here */
    CU_ASSERT_EQUAL(pc_fin_fault(vs, PC_FIN_NAN, PC_FIN_INF), PC_FIN_NAN);
    /* an attribute that asks for infinity */
    CU_ASSERT_EQUAL(pc_fin_fault(vm, PC_FIN_INF, 0), 0);
    CU_ASSERT_EQUAL(pc_fin_fault(vm, PC_FIN_NAN, 0), PC_FIN_NAN);
    CU_ASSERT_EQUAL(pc_fin_fault(v30, PC_FIN_INF, 0), PC_FIN_INF);
    pc_graph_free(g);
}

/* ---- both backends ---- */

/* runs g with the bindings on the interpreter (its default: checking) and on the compiled
 * backend with check_finite; the messages go to eref / ejit ("" on success) */
static void run_both(const pc_graph *g, int nb, const pc_val *bv, void *const *bp, char *eref, char *ejit, size_t len) {
    for (int k = 0; k < 2; k++) {
        char *e = k ? ejit : eref;
        pc_exec_opts o = {.kind = k ? PC_BACKEND_JIT : PC_BACKEND_REF, .threads = 1, .check_finite = k};
        pc_exec *x = pc_exec_new(g, &o, e, len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(x);
        for (int i = 0; i < nb; i++) pc_exec_bind(x, bv[i], bp[i]);
        e[0] = 0;
        if (pc_exec_run(x, e, len) == 0) e[0] = 0;
        else CU_ASSERT(e[0] != 0);
        pc_exec_free(x);
    }
}

static void t_message(void) {
    pc_graph *g = pc_graph_new("msg");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(2, 3));
    int line = __LINE__ + 1;
    pc_val y = pc_log(g, x);
    pc_set_name(g, y, "y");
    pc_mark_output(g, pc_scale(g, y, 2, 0));
    float xd[6] = {1, 2, 3, 4, -1, 6};
    char want[512], eref[4096], ejit[4096];
    snprintf(want, sizeof want, "non-finite value (nan at [1,1]) in %%y = log %%x : f32[2,3] at %s:%d", FILE_NAME, line);
    run_both(g, 1, (pc_val[]){x}, (void *[]){xd}, eref, ejit, sizeof eref);
    CU_ASSERT_STRING_EQUAL(eref, want);
    CU_ASSERT_STRING_EQUAL(ejit, want); /* log and scale are one fused kernel */
    xd[4] = 0; /* log 0 = -inf */
    snprintf(want, sizeof want, "non-finite value (-inf at [1,1]) in %%y = log %%x : f32[2,3] at %s:%d", FILE_NAME, line);
    run_both(g, 1, (pc_val[]){x}, (void *[]){xd}, eref, ejit, sizeof eref);
    CU_ASSERT_STRING_EQUAL(eref, want);
    CU_ASSERT_STRING_EQUAL(ejit, want);
    xd[4] = INFINITY; /* an input's infinity is the caller's: carried, not reported */
    run_both(g, 1, (pc_val[]){x}, (void *[]){xd}, eref, ejit, sizeof eref);
    CU_ASSERT_STRING_EQUAL(eref, "");
    CU_ASSERT_STRING_EQUAL(ejit, "");

    /* off: the interpreter when asked, the compiled backend by default */
    xd[4] = -1;
    for (int k = 0; k < 2; k++) {
        pc_exec_opts o = {.kind = k ? PC_BACKEND_JIT : PC_BACKEND_REF, .threads = 1, .check_finite = k ? 0 : -1};
        pc_exec *e = pc_exec_new(g, &o, eref, sizeof eref);
        pc_exec_bind(e, x, xd);
        CU_ASSERT_EQUAL(pc_exec_run(e, eref, sizeof eref), 0);
        CU_ASSERT(isnan(((const float *)pc_exec_data(e, g->outputs[0]))[4]));
        pc_exec_free(e);
    }
    pc_ref *r = pc_ref_new(g, eref, sizeof eref);
    pc_ref_bind(r, x, xd);
    CU_ASSERT_EQUAL(pc_ref_run(r, eref, sizeof eref), -1);
    pc_ref_check_finite(r, 0);
    CU_ASSERT_EQUAL(pc_ref_run(r, eref, sizeof eref), 0);
    pc_ref_free(r);
    pc_graph_free(g);
}

/* params and states must be finite when the run starts; inputs may hold infinities */
static void t_leaves(void) {
    pc_graph *g = pc_graph_new("leaves");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(4));
    int line = __LINE__ + 1;
    pc_val w = pc_param(g, "w", "layer.w", PC_F32, PC_SHAPE(4), PC_FROZEN, (pc_init){PC_INIT_ZEROS, 0, 0});
    pc_mark_output(g, pc_exp(g, pc_add(g, x, w)));
    float xd[4] = {1, -INFINITY, 3, 4}, wd[4] = {0, 0, 0, 0};
    char eref[4096], ejit[4096], want[512];
    run_both(g, 2, (pc_val[]){x, w}, (void *[]){xd, wd}, eref, ejit, sizeof eref);
    CU_ASSERT_STRING_EQUAL(eref, "");
    CU_ASSERT_STRING_EQUAL(ejit, "");
    wd[2] = NAN;
    snprintf(want, sizeof want, "non-finite value (nan at [2]) in %%w = param frozen f32[4] \"layer.w\" init=zeros at %s:%d",
             FILE_NAME, line);
    run_both(g, 2, (pc_val[]){x, w}, (void *[]){xd, wd}, eref, ejit, sizeof eref);
    CU_ASSERT_STRING_EQUAL(eref, want);
    CU_ASSERT_STRING_EQUAL(ejit, want);
    pc_graph_free(g);
}

/* the lowered program of g (for asserting that a case takes the path it is meant to test) */
static const pc_linsn *insn_of(pc_compiled *c, pc_val v) {
    const pc_lowered *l = pc_compiled_lowered(c);
    for (int i = 0; i < l->ninsns; i++)
        if (l->insn[i].v == v) return &l->insn[i];
    return NULL;
}

/* add(X, matmul): the matmul accumulates into X's buffer, so X's contents are read from what
 * the check recorded when X was made: carried -inf passes, an overflow of the sum is named */
static void t_accumulate(void) {
    pc_graph *g = pc_graph_new("acc");
    pc_val in = pc_input(g, "in", PC_F32, PC_SHAPE(4, 8)), a = pc_input(g, "a", PC_F32, PC_SHAPE(4, 8));
    pc_val b = pc_input(g, "b", PC_F32, PC_SHAPE(8, 8));
    pc_val X = pc_scale(g, in, 1, 0);
    int line = __LINE__ + 1;
    pc_val y = pc_add(g, X, pc_matmul(g, a, b, 0, 0));
    pc_set_name(g, y, "y");
    pc_mark_output(g, y);
    float ind[32], ad[32], bd[64];
    for (int i = 0; i < 32; i++) ind[i] = 1, ad[i] = 0.5f;
    for (int i = 0; i < 64; i++) bd[i] = 0.25f;
    pc_exec_opts o = {.kind = PC_BACKEND_JIT, .threads = 1, .check_finite = 1};
    char err[4096], eref[4096], ejit[4096], want[512];
    pc_compiled *c = pc_compiled_new(g, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const pc_linsn *I = insn_of(c, y);
    CU_ASSERT(I && I->kind == PC_LI_MATMUL && I->mm.accumulate);
    pc_compiled_free(c);
    pc_val bv[3] = {in, a, b};
    void *bp[3] = {ind, ad, bd};
    ind[5] = -INFINITY; /* carried through the accumulation */
    run_both(g, 3, bv, bp, eref, ejit, sizeof eref);
    CU_ASSERT_STRING_EQUAL(eref, "");
    CU_ASSERT_STRING_EQUAL(ejit, "");
    /* the product stays finite (0.25 * 3e38 + ...), X + product overflows at [0,5] only */
    ind[5] = 3e38f, ad[0] = 3e38f;
    snprintf(want, sizeof want, "non-finite value (inf at [0,5]) in %%y = add %%%s, %%%s : f32[4,8] at %s:%d",
             pc_val_name(g, X), pc_val_name(g, g->vals[y].in[1]), FILE_NAME, line);
    run_both(g, 3, bv, bp, eref, ejit, sizeof eref);
    CU_ASSERT_STRING_EQUAL(eref, want);
    CU_ASSERT_PTR_NOT_NULL(strstr(ejit, want)); /* + "(one instruction with the ops it absorbs)" */
    CU_ASSERT_PTR_NOT_NULL(strstr(ejit, "absorbs"));
    pc_graph_free(g);
}

/* cross_entropy_grad writes over its logits (when nothing else reads them later: no loss here,
 * as in a graph that only needs the gradient), so the logits' kinds come from when they were
 * made: a NaN carried from the input passes, a NaN made of a fully masked row is named */
static void t_in_place(void) {
    pc_graph *g = pc_graph_new("inplace");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(2, 4)), mask = pc_input(g, "mask", PC_F32, PC_SHAPE(2, 4));
    pc_val t = pc_input(g, "t", PC_I32, PC_SHAPE(2)), w = pc_input(g, "w", PC_F32, PC_SHAPE(4, 3));
    pc_val logits = pc_add(g, x, mask);
    pc_val one = pc_scalar(g, 1);
    int line = __LINE__ + 1;
    pc_val d = pc_op(g, "cross_entropy_grad", 3, (pc_val[]){logits, t, one}, 0, NULL);
    pc_set_name(g, d, "d");
    pc_mark_output(g, pc_matmul(g, d, w, 0, 0));
    pc_exec_opts o = {.kind = PC_BACKEND_JIT, .threads = 1, .check_finite = 1};
    char err[4096], eref[4096], ejit[4096], want[512];
    pc_compiled *c = pc_compiled_new(g, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const pc_linsn *I = insn_of(c, d);
    CU_ASSERT(I && I->kind == PC_LI_CALL && I->out[0].view.buf == I->in[0].view.buf);
    pc_compiled_free(c);
    float xd[8] = {1, 2, 3, 4, 5, 6, 7, 8}, md[8] = {0, -INFINITY, 0, 0, 0, NAN, 0, 0}, wd[12];
    for (int i = 0; i < 12; i++) wd[i] = 0.5f;
    int32_t td[2] = {0, 3};
    pc_val bv[4] = {x, mask, t, w};
    void *bp[4] = {xd, md, td, wd};
    run_both(g, 4, bv, bp, eref, ejit, sizeof eref); /* the caller's NaN, carried */
    CU_ASSERT_STRING_EQUAL(eref, "");
    CU_ASSERT_STRING_EQUAL(ejit, "");
    for (int i = 4; i < 8; i++) md[i] = -INFINITY; /* row 1 masked entirely: 0/0 */
    run_both(g, 4, bv, bp, eref, ejit, sizeof eref);
    snprintf(want, sizeof want, "non-finite value (nan at [1,0]) in %%d = cross_entropy_grad %%%s, %%t, %%%s : f32[2,4] at %s:%d",
             pc_val_name(g, logits), pc_val_name(g, one), FILE_NAME, line);
    CU_ASSERT_STRING_EQUAL(eref, want);
    CU_ASSERT_STRING_EQUAL(ejit, want);
    pc_graph_free(g);
}

/* a fused kernel whose first op makes the NaN and whose later ops carry it: named alike */
static void t_fused(void) {
    pc_graph *g = pc_graph_new("fused");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(3, 5)), z = pc_input(g, "z", PC_F32, PC_SHAPE(5));
    pc_val a = pc_mul(g, x, z); /* z broadcast: a strided kernel input */
    int line = __LINE__ + 1;
    pc_val s = pc_sqrt(g, pc_sub(g, a, pc_scalar(g, 1)));
    pc_set_name(g, s, "s");
    pc_val y = pc_tanh(g, pc_scale(g, s, 3, 1));
    pc_mark_output(g, y);
    pc_mark_output(g, a); /* a second kernel output */
    float xd[15], zd[5] = {1, 2, 3, 4, 5};
    for (int i = 0; i < 15; i++) xd[i] = 2;
    xd[2 * 5 + 0] = 0.25f; /* 0.25 * 1 - 1 < 0 at [2,0] */
    char eref[4096], ejit[4096], want[512], err[4096];
    pc_exec_opts o = {.kind = PC_BACKEND_JIT, .threads = 1, .check_finite = 1};
    pc_compiled *c = pc_compiled_new(g, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const pc_linsn *I = insn_of(c, y);
    CU_ASSERT(I && I->kind == PC_LI_KERNEL && I->nmembers >= 5);
    pc_compiled_free(c);
    snprintf(want, sizeof want, "non-finite value (nan at [2,0]) in %%s = sqrt %%%s : f32[3,5] at %s:%d",
             pc_val_name(g, g->vals[s].in[0]), FILE_NAME, line);
    run_both(g, 2, (pc_val[]){x, z}, (void *[]){xd, zd}, eref, ejit, sizeof eref);
    CU_ASSERT_STRING_EQUAL(eref, want);
    CU_ASSERT_STRING_EQUAL(ejit, want);
    pc_graph_free(g);
}

static CU_TestInfo tests[] = {
    {"scan: dense, strided, empty", t_scan},
    {"the rule: made, carried, asked for", t_rule},
    {"message, and switching the check", t_message},
    {"params must be finite, inputs may not be", t_leaves},
    {"compiled: accumulating matmul", t_accumulate},
    {"compiled: result over its operand", t_in_place},
    {"compiled: fused kernel re-run op by op", t_fused},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("finite", tests)
