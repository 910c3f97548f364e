/* Entry functions of compiled graphs (backend/entry.h): LLVM IR generation, and the libffi call. */
#include "backend/entry.h"
#include "backend/kernel.h"
#include "ir/ir.h"

#include <ffi.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* in llvm_jit.c (every ORC call lives there) */
typedef struct pc_jit pc_jit;
int pc_jit_compile_entry(pc_jit *j, const char *name, int nin, int nout, void **fn, char *err, size_t errlen);

/* int name(ptr ctx, ptr in0.., ptr out0..): r = bind(ctx, i, in_i) for each input; if all 0,
 * r = run(ctx); if 0, r = copy_out(ctx, i, out_i) for each output; return the first nonzero */
LLVMModuleRef pc_llvm_entry_module(LLVMContextRef c, const char *name, int nin, int nout, char *err, size_t errlen) {
    LLVMModuleRef m = LLVMModuleCreateWithNameInContext("peftc_entry", c);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(c, 0), i32 = LLVMInt32TypeInContext(c);
    int np = 1 + nin + nout;
    LLVMTypeRef *pt = malloc((size_t)np * sizeof *pt);
    if (!pt) { LLVMDisposeModule(m); snprintf(err, errlen, "out of memory"); return NULL; }
    for (int i = 0; i < np; i++) pt[i] = ptr;
    LLVMTypeRef fty = LLVMFunctionType(i32, pt, (unsigned)np, 0);
    free(pt);
    LLVMValueRef f = LLVMAddFunction(m, name, fty);
    LLVMTypeRef ty3[3] = {ptr, i32, ptr};
    LLVMTypeRef bind_ty = LLVMFunctionType(i32, ty3, 3, 0), run_ty = LLVMFunctionType(i32, ty3, 1, 0);
    LLVMBuilderRef b = LLVMCreateBuilderInContext(c);
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(c, f, "entry");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c, f, "done");
    LLVMPositionBuilderAtEnd(b, done);
    LLVMValueRef phi = LLVMBuildPhi(b, i32, "status");
    LLVMBuildRet(b, phi);
    LLVMValueRef ctx = LLVMGetParam(f, 0);
    LLVMPositionBuilderAtEnd(b, bb);
    /* the helpers: fields 0, 1, 2 of the pc_rt_ctx */
    LLVMValueRef fns[3];
    for (int k = 0; k < 3; k++) {
        LLVMValueRef idx = LLVMConstInt(LLVMInt64TypeInContext(c), (unsigned long long)k, 0);
        LLVMValueRef at = LLVMBuildGEP2(b, ptr, ctx, &idx, 1, "");
        fns[k] = LLVMBuildLoad2(b, ptr, at, "");
    }
    /* each call: on nonzero go to done with its status */
    for (int s = 0; s < nin + 1 + nout; s++) {
        LLVMValueRef r;
        if (s == nin) {
            LLVMValueRef a[1] = {ctx};
            r = LLVMBuildCall2(b, run_ty, fns[1], a, 1, "");
        } else {
            int out = s > nin, i = out ? s - nin - 1 : s;
            LLVMValueRef a[3] = {ctx, LLVMConstInt(i32, (unsigned long long)i, 0), LLVMGetParam(f, (unsigned)(1 + s - out))};
            r = LLVMBuildCall2(b, bind_ty, fns[out ? 2 : 0], a, 3, "");
        }
        LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(c, f, "next");
        LLVMValueRef bad = LLVMBuildICmp(b, LLVMIntNE, r, LLVMConstInt(i32, 0, 0), "");
        LLVMBasicBlockRef cur = LLVMGetInsertBlock(b);
        LLVMBuildCondBr(b, bad, done, next);
        LLVMAddIncoming(phi, &r, &cur, 1);
        LLVMPositionBuilderAtEnd(b, next);
    }
    LLVMValueRef zero = LLVMConstInt(i32, 0, 0);
    LLVMBasicBlockRef cur = LLVMGetInsertBlock(b);
    LLVMBuildBr(b, done);
    LLVMAddIncoming(phi, &zero, &cur, 1);
    LLVMDisposeBuilder(b);
    char *msg = NULL;
    if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
        snprintf(err, errlen, "LLVM: the entry function does not verify: %s", msg ? msg : "");
        LLVMDisposeMessage(msg);
        LLVMDisposeModule(m);
        return NULL;
    }
    LLVMDisposeMessage(msg);
    return m;
}

/* ---- the runtime side ---- */

struct pc_entry {
    pc_rt_ctx rt; /* first: the entry function's ctx */
    pc_exec *e;
    const pc_graph *g;
    pc_val *in, *out;
    int nin, nout;
    pc_jit *jit;
    void *fn;
    ffi_cif cif;
    ffi_type **types;
    char *err;
    size_t errlen;
};

static int rt_bind(void *ctx, int i, void *data) {
    pc_entry *en = ctx;
    return i >= 0 && i < en->nin ? pc_exec_bind(en->e, en->in[i], data) : -1;
}

static int rt_run(void *ctx) {
    pc_entry *en = ctx;
    return pc_exec_run(en->e, en->err, en->errlen) ? 1 : 0;
}

static int rt_copy_out(void *ctx, int i, void *data) {
    pc_entry *en = ctx;
    if (i < 0 || i >= en->nout) return -1;
    const pc_value *x = &en->g->vals[en->out[i]];
    const void *src = pc_exec_data(en->e, en->out[i]);
    if (!src) return 2;
    memcpy(data, src, (size_t)pc_shape_numel(x->shape) * pc_dtype_size(x->dtype));
    return 0;
}

pc_jit *pc_jit_new(char *err, size_t errlen);
void pc_jit_free(pc_jit *j);

pc_entry *pc_entry_new(pc_exec *e, const pc_graph *g, const char *name, char *err, size_t errlen) {
    pc_entry *en = calloc(1, sizeof *en);
    if (!en) { snprintf(err, errlen, "out of memory"); return NULL; }
    en->rt = (pc_rt_ctx){rt_bind, rt_run, rt_copy_out};
    en->e = e;
    en->g = g;
    for (pc_val v = 0; v < g->nvals; v++) en->nin += g->vals[v].op == PC_OP_input;
    en->nout = g->noutputs;
    en->in = calloc((size_t)en->nin + 1, sizeof *en->in);
    en->out = calloc((size_t)en->nout + 1, sizeof *en->out);
    en->types = calloc((size_t)(1 + en->nin + en->nout), sizeof *en->types);
    if (!en->in || !en->out || !en->types) { snprintf(err, errlen, "out of memory"); goto fail; }
    int k = 0;
    for (pc_val v = 0; v < g->nvals; v++)
        if (g->vals[v].op == PC_OP_input) en->in[k++] = v;
    for (int i = 0; i < en->nout; i++) en->out[i] = g->outputs[i];
    if (!(en->jit = pc_jit_new(err, errlen))) goto fail;
    if (pc_jit_compile_entry(en->jit, name, en->nin, en->nout, &en->fn, err, errlen)) goto fail;
    /* the call interface from the graph signature: ctx, then one pointer per tensor */
    for (int i = 0; i < 1 + en->nin + en->nout; i++) en->types[i] = &ffi_type_pointer;
    if (ffi_prep_cif(&en->cif, FFI_DEFAULT_ABI, (unsigned)(1 + en->nin + en->nout), &ffi_type_sint, en->types) != FFI_OK) {
        snprintf(err, errlen, "libffi: cannot prepare the call interface of %s", name);
        goto fail;
    }
    return en;
fail:
    pc_entry_free(en);
    return NULL;
}

void pc_entry_free(pc_entry *en) {
    if (!en) return;
    pc_jit_free(en->jit);
    free(en->in);
    free(en->out);
    free(en->types);
    free(en);
}

int pc_entry_ninputs(const pc_entry *en) { return en ? en->nin : 0; }
int pc_entry_noutputs(const pc_entry *en) { return en ? en->nout : 0; }

int pc_entry_call(pc_entry *en, void *const *args, char *err, size_t errlen) {
    int n = 1 + en->nin + en->nout;
    void **vals = calloc((size_t)n, sizeof *vals);
    void **ptrs = calloc((size_t)n, sizeof *ptrs);
    if (!vals || !ptrs) { free(vals); free(ptrs); snprintf(err, errlen, "out of memory"); return -1; }
    ptrs[0] = en;
    for (int i = 1; i < n; i++) ptrs[i] = args[i - 1];
    for (int i = 0; i < n; i++) vals[i] = &ptrs[i];
    en->err = err, en->errlen = errlen;
    if (err && errlen) err[0] = 0;
    ffi_sarg rc = 0;
    ffi_call(&en->cif, FFI_FN(en->fn), &rc, vals);
    free(vals);
    free(ptrs);
    if (rc && err && errlen && !err[0]) snprintf(err, errlen, "the entry function returned %d", (int)rc);
    return (int)rc;
}
