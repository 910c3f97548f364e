/* Entry functions of compiled graphs (backend/entry.h): LLVM IR generation, and the libffi call. */
#include "backend/entry.h"
#include "backend/kernel.h"
#include "ir/ir.h"

#include <ffi.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Linker.h>
#include <llvm-c/TargetMachine.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* in llvm_jit.c (every ORC call lives there) */
typedef struct pc_jit pc_jit;
int pc_jit_compile_entry(pc_jit *j, const char *name, int nin, int nout, void **fn, char *err, size_t errlen);
/* in llvm_kernel.c */
LLVMTargetMachineRef pc_llvm_host_tm(char *err, size_t errlen);
LLVMModuleRef pc_llvm_build_module(LLVMContextRef c, LLVMTargetMachineRef tm, const pc_kernel_desc *k,
                                   const char *const *names, int nk, char *err, size_t errlen);
int pc_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, char *err, size_t errlen);

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

char *pc_entry_ir(const pc_graph *g, char *err, size_t errlen) {
    char name[PC_ENTRY_NAME_MAX];
    if (pc_entry_name(g, name, err, errlen)) return NULL;
    LLVMContextRef c = LLVMContextCreate();
    LLVMModuleRef m = pc_llvm_entry_module(c, name, pc_entry_graph_ninputs(g), g->noutputs, err, errlen);
    char *out = NULL;
    if (m) {
        char *s = LLVMPrintModuleToString(m);
        if (!(out = strdup(s))) snprintf(err, errlen, "out of memory");
        LLVMDisposeMessage(s);
        LLVMDisposeModule(m);
    }
    LLVMContextDispose(c);
    return out;
}

/* ---- AOT: kernels and entry functions in one object file ---- */

int pc_llvm_emit_object_with_entries(const pc_kernel_desc *k, const char *const *knames, int nk,
                                     const char *const *names, const int *nin, const int *nout, int ne,
                                     const char *path, char *err, size_t errlen) {
    if (!path) {
        snprintf(err, errlen, "no output path");
        return -1;
    }
    LLVMTargetMachineRef tm = pc_llvm_host_tm(err, errlen);
    if (!tm) return -1;
    LLVMContextRef c = LLVMContextCreate();
    int rc = -1;
    LLVMModuleRef m = pc_llvm_build_module(c, tm, k, knames, nk, err, errlen);
    for (int i = 0; m && i < ne; i++) {
        /* the same function the JIT compiles, linked into the kernels' module */
        LLVMModuleRef em = pc_llvm_entry_module(c, names[i], nin[i], nout[i], err, errlen);
        if (!em) goto fail;
        LLVMSetTarget(em, LLVMGetTarget(m));
        LLVMSetDataLayout(em, LLVMGetDataLayoutStr(m));
        if (LLVMLinkModules2(m, em)) { /* consumes em */
            snprintf(err, errlen, "LLVM: cannot link the entry function %s into the object", names[i]);
            goto fail;
        }
    }
    if (m && !pc_llvm_optimize(m, tm, err, errlen)) {
        char *msg = NULL, *p = strdup(path);
        if (!p) snprintf(err, errlen, "out of memory");
        else if (LLVMTargetMachineEmitToFile(tm, m, p, LLVMObjectFile, &msg))
            snprintf(err, errlen, "cannot write %s: %s", path, msg ? msg : "");
        else rc = 0;
        free(p);
        LLVMDisposeMessage(msg);
    }
fail:
    if (m) LLVMDisposeModule(m);
    LLVMContextDispose(c);
    LLVMDisposeTargetMachine(tm);
    return rc;
}

/* ---- the runtime side: JIT + libffi ---- */

struct pc_entry {
    pc_entry_rt rt; /* first: the entry function's ctx */
    pc_jit *jit;
    void *fn;
    ffi_cif cif;
    ffi_type **types;
    void **vals, **ptrs; /* the call's argument slots */
};

pc_jit *pc_jit_new(char *err, size_t errlen);
void pc_jit_free(pc_jit *j);

pc_entry *pc_entry_new(pc_exec *e, const pc_graph *g, const char *name, char *err, size_t errlen) {
    char nbuf[PC_ENTRY_NAME_MAX];
    if (!name) {
        if (pc_entry_name(g, nbuf, err, errlen)) return NULL;
        name = nbuf;
    }
    pc_entry *en = calloc(1, sizeof *en);
    if (!en) { snprintf(err, errlen, "out of memory"); return NULL; }
    if (pc_entry_rt_init(&en->rt, e, g, err, errlen)) { free(en); return NULL; }
    int n = 1 + en->rt.nin + en->rt.nout;
    en->types = calloc((size_t)n, sizeof *en->types);
    en->vals = calloc((size_t)n, sizeof *en->vals);
    en->ptrs = calloc((size_t)n, sizeof *en->ptrs);
    if (!en->types || !en->vals || !en->ptrs) { snprintf(err, errlen, "out of memory"); goto fail; }
    if (!(en->jit = pc_jit_new(err, errlen))) goto fail;
    if (pc_jit_compile_entry(en->jit, name, en->rt.nin, en->rt.nout, &en->fn, err, errlen)) goto fail;
    /* the call interface from the graph signature: ctx, then one pointer per tensor */
    for (int i = 0; i < n; i++) en->types[i] = &ffi_type_pointer, en->vals[i] = &en->ptrs[i];
    if (ffi_prep_cif(&en->cif, FFI_DEFAULT_ABI, (unsigned)n, &ffi_type_sint, en->types) != FFI_OK) {
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
    pc_entry_rt_free(&en->rt);
    free(en->types);
    free(en->vals);
    free(en->ptrs);
    free(en);
}

int pc_entry_ninputs(const pc_entry *en) { return en ? en->rt.nin : 0; }
int pc_entry_noutputs(const pc_entry *en) { return en ? en->rt.nout : 0; }

int pc_entry_call(pc_entry *en, void *const *args, char *err, size_t errlen) {
    int n = 1 + en->rt.nin + en->rt.nout;
    en->ptrs[0] = en;
    for (int i = 1; i < n; i++) en->ptrs[i] = args[i - 1];
    en->rt.err = err, en->rt.errlen = errlen;
    if (err && errlen) err[0] = 0;
    ffi_sarg rc = 0;
    ffi_call(&en->cif, FFI_FN(en->fn), &rc, en->vals);
    en->rt.err = NULL, en->rt.errlen = 0;
    if (rc && err && errlen && !err[0]) snprintf(err, errlen, "the entry function returned %d", (int)rc);
    return (int)rc;
}

static void *jit_open(const pc_entry_provider *p, pc_exec *e, const pc_graph *g, char *err, size_t errlen) {
    (void)p;
    return pc_entry_new(e, g, NULL, err, errlen);
}
static int jit_call(void *h, void *const *args, char *err, size_t errlen) { return pc_entry_call(h, args, err, errlen); }
static void jit_close(void *h) { pc_entry_free(h); }

static const pc_entry_provider jit_entries = {jit_open, jit_call, jit_close, NULL};

const pc_entry_provider *pc_entry_provider_jit(void) { return &jit_entries; }
