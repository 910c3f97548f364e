/* --check-finite in the compiled backend: after each instruction, its results are scanned and
 * judged by the rule of backend/finite.h, as the reference interpreter judges each op.
 *
 * The rule needs the operands' kinds only when a result is not finite, so they are found then:
 * an operand in leaf memory or in an arena buffer other than the instruction's results is still
 * intact (the memory plan never overlaps buffers that are live at the same instruction) and is
 * scanned; one the instruction overwrote (a result computed in place, a matmul accumulating into
 * its addend) takes the kinds recorded when its producer was checked (bufkinds, per buffer).
 *
 * A fused kernel computes several ops without storing the ones in between, so its result alone
 * cannot say which op made the NaN. The kernel's ops are then run again one by one on the
 * reference kernels over copies of its (intact) inputs, and the first op that breaks the rule is
 * named: the same op the interpreter names. */
#include "backend/compiled_internal.h"
#include "backend/finite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const void *lref_data(void *const *base, const pc_lref *r) {
    return (const uint8_t *)base[r->view.buf] + r->view.off * (int64_t)pc_dtype_size(r->dt);
}

/* whether buffer b is one of I's results (an operand there was overwritten by the run) */
static bool is_result_buf(const pc_linsn *I, int b) {
    for (int k = 0; k < I->nout; k++)
        if (I->out[k].view.buf == b) return true;
    return false;
}

static int operand_kinds(void *const *base, const pc_linsn *I, const uint8_t *bufkinds) {
    int kinds = 0;
    for (int k = 0; k < I->nin; k++) {
        const pc_lref *r = &I->in[k];
        if (r->dt == PC_I32 || r->view.buf < 0) continue;
        if (is_result_buf(I, r->view.buf)) kinds |= bufkinds[r->view.buf];
        else kinds |= pc_fin_scan_dt(lref_data(base, r), r->dt, r->shape, r->view.st);
    }
    /* c += a @ b: the addend's old contents are an operand too */
    if (I->kind == PC_LI_MATMUL && I->mm.accumulate) kinds |= bufkinds[I->out[0].view.buf];
    return kinds;
}

/* Re-runs fused kernel I, whose result `result` is not finite, op by op on the reference
 * kernels. -1 with the message when an op breaks the rule; 0 when none does and the reference
 * reproduces the non-finite result (it was carried along, or an op's attribute asks for it: no
 * fault); 1 when it cannot tell (an input was overwritten, memory ran out, or the reference
 * computes that result finite: the caller then names the kernel's result). */
static int locate_in_kernel(const pc_graph *g, void *const *base, const pc_linsn *I, pc_val result, char *err,
                            size_t errlen) {
    int n = I->nmembers, found = 1;
    void **tmp = calloc((size_t)n, sizeof *tmp), **ext = calloc((size_t)I->nin + 1, sizeof *ext);
    int *kinds = calloc((size_t)n, sizeof *kinds), *ext_kinds = calloc((size_t)I->nin + 1, sizeof *ext_kinds);
    const void *opnd[PC_K_MAX_IN + 4];
    if (!tmp || !ext || !kinds || !ext_kinds) goto done;
    for (int k = 0; k < I->nin; k++) { /* dense copies of the inputs, in their own shapes */
        const pc_lref *r = &I->in[k];
        if (r->view.buf < 0 || is_result_buf(I, r->view.buf) || r->v == PC_NONE) goto done;
        int64_t numel = pc_shape_numel(r->shape);
        if (!(ext[k] = malloc((size_t)(numel ? numel : 1) * pc_dtype_size(r->dt)))) goto done;
        if (numel) pc_ck_copy(ext[k], lref_data(base, r), r->shape.rank, r->shape.dim, r->view.st);
        if (r->dt == PC_F32) ext_kinds[k] = pc_fin_scan(ext[k], r->shape, NULL);
    }
    for (int m = 0; m < n && found > 0; m++) {
        pc_val v = I->members[m];
        const pc_value *x = &g->vals[v];
        int64_t numel = pc_shape_numel(x->shape);
        if (x->nin > (int)(sizeof opnd / sizeof opnd[0]) || !(tmp[m] = malloc((size_t)(numel ? numel : 1) * pc_dtype_size(x->dtype))))
            goto done;
        int okinds = 0;
        for (int t = 0; t < x->nin; t++) {
            pc_val o = x->in[t];
            int j = 0, k = 0;
            while (j < m && I->members[j] != o) j++;
            while (k < I->nin && I->in[k].v != o) k++;
            if (j < m) opnd[t] = tmp[j], okinds |= kinds[j];
            else if (k < I->nin) opnd[t] = ext[k], okinds |= ext_kinds[k];
            else goto done;
        }
        char kerr[256];
        ref_kctx kc = {g, v, x, tmp[m], opnd, kerr, sizeof kerr};
        if (ref_run_kernel(&kc)) goto done;
        if (x->dtype != PC_F32) continue;
        kinds[m] = pc_fin_scan(tmp[m], x->shape, NULL);
        int kind = kinds[m] ? pc_fin_fault(x, kinds[m], okinds) : 0;
        if (kind) found = pc_fin_error(g, v, tmp[m], NULL, kind, NULL, err, errlen);
        else if (v == result && kinds[m]) found = 0;
    }
done:
    for (int m = 0; tmp && m < n; m++) free(tmp[m]);
    for (int k = 0; ext && k < I->nin; k++) free(ext[k]);
    free(tmp);
    free(ext);
    free(kinds);
    free(ext_kinds);
    return found;
}

int pc_cfin_check_leaves(const pc_graph *g, void *const *bound, void *const *init, char *err, size_t errlen) {
    for (pc_val v = 0; v < g->nvals; v++)
        if (pc_fin_check_leaf(g, v, bound[v] ? bound[v] : init[v], err, errlen)) return -1;
    return 0;
}

/* rmsnorm's backward as one kernel (CALL_RMSNORM_GRAD) absorbs x^2, whose overflow leaves d x
 * finite (r is 0): the square is judged here from x, as the interpreter judges it, and named */
static int check_absorbed_square(const pc_graph *g, void *const *base, const pc_linsn *I, char *err, size_t errlen) {
    const pc_lref *x = &I->in[0];
    const float *xp = lref_data(base, x);
    int64_t n = pc_shape_numel(x->shape), i = 0;
    while (i < n && !(isinf(xp[i] * xp[i]) && isfinite(xp[i]))) i++;
    if (i == n) return 0;
    float *sq = malloc((size_t)n * sizeof *sq);
    if (!sq) return snprintf(err, errlen, "check-finite: out of memory"), -1;
    for (i = 0; i < n; i++) sq[i] = xp[i] * xp[i];
    int kind = pc_fin_fault(&g->vals[I->aux], pc_fin_scan(sq, x->shape, NULL), pc_fin_scan(xp, x->shape, NULL));
    int rc = kind ? pc_fin_error(g, I->aux, sq, NULL, kind, NULL, err, errlen) : 0;
    free(sq);
    return rc;
}

int pc_cfin_check(const pc_graph *g, void *const *base, const pc_linsn *I, uint8_t *bufkinds, char *err,
                  size_t errlen) {
    int found[PC_K_MAX_OUT + 4] = {0}, any = 0;
    if (I->kind == PC_LI_CALL && I->call == PC_CALL_RMSNORM_GRAD && I->aux != PC_NONE &&
        check_absorbed_square(g, base, I, err, errlen))
        return -1;
    if (I->nout > (int)(sizeof found / sizeof found[0])) return 0;
    for (int k = 0; k < I->nout; k++) {
        const pc_lref *r = &I->out[k];
        if (r->dt != PC_I32 && r->view.buf >= 0) any |= found[k] = pc_fin_scan_dt(lref_data(base, r), r->dt, r->shape, r->view.st);
    }
    if (any) {
        int operands = operand_kinds(base, I, bufkinds);
        for (int k = 0; k < I->nout; k++) {
            const pc_lref *r = &I->out[k];
            pc_val v = r->v != PC_NONE ? r->v : I->v;
            int kind = found[k] ? pc_fin_fault(&g->vals[v], found[k], operands) : 0;
            if (!kind) continue;
            int located = I->kind == PC_LI_KERNEL ? locate_in_kernel(g, base, I, v, err, errlen) : 1;
            if (located < 0) return -1;
            if (located == 0) continue;
            char note[160] = "";
            if (I->kind == PC_LI_KERNEL && I->nmembers > 1)
                snprintf(note, sizeof note, "(the result of a fused kernel of %d ops)", I->nmembers);
            else if ((I->kind == PC_LI_MATMUL && g->vals[I->v].op != PC_OP_matmul) ||
                     (I->kind == PC_LI_CALL && I->call != PC_CALL_OP))
                snprintf(note, sizeof note, "(one instruction with the ops it absorbs)");
            return pc_fin_error_dt(g, v, lref_data(base, r), r->dt, r->view.st, kind, note[0] ? note : NULL, err, errlen);
        }
    }
    for (int k = 0; k < I->nout; k++)
        if (I->out[k].view.buf >= 0) bufkinds[I->out[k].view.buf] = (uint8_t)found[k];
    return 0;
}
