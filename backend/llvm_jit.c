/* The LLVM JIT for fused kernels: every ORC/LLJIT call of the project lives here.
 *
 * A pc_jit owns one LLJIT whose codegen uses a host target machine at
 * LLVMCodeGenLevelAggressive (AVX-512 on this machine) and a second target machine that the
 * O3 pipeline uses (the vectorizer needs it to know the vector width). Each pc_jit_compile
 * builds one module holding its kernels (llvm_kernel.c), verifies and optimises it, adds it
 * to the main JITDylib under its own resource tracker (removed again if anything fails, so a
 * failed compile leaves no half-defined symbols), and looks every kernel up, which compiles
 * the module. Kernel pointers stay valid until pc_jit_free. Process symbols (libm's pow, used
 * by adamw_p) are resolved through LLJIT's default process-symbols JITDylib.
 *
 * A pc_jit is not thread-safe: one thread at a time may call pc_jit_compile on it (and create
 * jits from one thread: LLVM's target initialisation is idempotent but not documented as
 * thread-safe). Compiled kernels are pure functions and may run concurrently. */
#include "backend/kernel.h"

#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/TargetMachine.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* defined in llvm_kernel.c (keep the prototypes in sync) */
LLVMTargetMachineRef pc_llvm_host_tm(char *err, size_t errlen);
LLVMModuleRef pc_llvm_build_module(LLVMContextRef c, LLVMTargetMachineRef tm, const pc_kernel_desc *k,
                                   const char *const *names, int nk, char *err, size_t errlen);
int pc_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, char *err, size_t errlen);
/* defined in llvm_entry.c */
LLVMModuleRef pc_llvm_entry_module(LLVMContextRef c, const char *name, int nin, int nout, char *err, size_t errlen);

struct pc_jit {
    LLVMOrcLLJITRef lljit;
    LLVMTargetMachineRef tm; /* for the optimisation pipeline */
};

static void jerr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void jerr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* consumes e; writes "what: message" */
static void take_error(LLVMErrorRef e, const char *what, char *err, size_t errlen) {
    char *msg = LLVMGetErrorMessage(e);
    jerr(err, errlen, "%s: %s", what, msg ? msg : "unknown error");
    LLVMDisposeErrorMessage(msg);
}

void pc_llvm_version(char *buf, size_t len) {
    unsigned major = 0, minor = 0, patch = 0;
    LLVMGetVersion(&major, &minor, &patch);
    snprintf(buf, len, "%u.%u.%u", major, minor, patch);
}

pc_jit *pc_jit_new(char *err, size_t errlen) {
    pc_jit *j = calloc(1, sizeof *j);
    if (!j) {
        jerr(err, errlen, "out of memory");
        return NULL;
    }
    j->tm = pc_llvm_host_tm(err, errlen);
    LLVMTargetMachineRef jtm = j->tm ? pc_llvm_host_tm(err, errlen) : NULL;
    if (!jtm) {
        if (j->tm) LLVMDisposeTargetMachine(j->tm);
        free(j);
        return NULL;
    }
    LLVMOrcLLJITBuilderRef b = LLVMOrcCreateLLJITBuilder();
    /* consumes jtm; the builder takes the JTMB, LLVMOrcCreateLLJIT consumes the builder */
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(b, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&j->lljit, b);
    if (e) {
        take_error(e, "LLVM: cannot create the JIT", err, errlen);
        LLVMDisposeTargetMachine(j->tm);
        free(j);
        return NULL;
    }
    return j;
}

void pc_jit_free(pc_jit *j) {
    if (!j) return;
    if (j->lljit) {
        LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->lljit);
        if (e) LLVMConsumeError(e);
    }
    if (j->tm) LLVMDisposeTargetMachine(j->tm);
    free(j);
}

int pc_jit_compile(pc_jit *j, const pc_kernel_desc *k, const char *const *names, int nk, pc_kernel_fn *fns,
                   char *err, size_t errlen) {
    if (!j || nk < 0 || (nk > 0 && !fns)) {
        jerr(err, errlen, "pc_jit_compile: invalid arguments");
        return -1;
    }
    if (nk == 0) return 0;
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMModuleRef m = pc_llvm_build_module(LLVMOrcThreadSafeContextGetContext(tsc), j->tm, k, names, nk, err, errlen);
    if (!m || pc_llvm_optimize(m, j->tm, err, errlen)) {
        if (m) LLVMDisposeModule(m);
        LLVMOrcDisposeThreadSafeContext(tsc);
        return -1;
    }
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m, tsc); /* takes m */
    LLVMOrcDisposeThreadSafeContext(tsc); /* the module keeps the context alive */
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->lljit);
    LLVMOrcResourceTrackerRef rt = LLVMOrcJITDylibCreateResourceTracker(jd);
    LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModuleWithRT(j->lljit, rt, tsm); /* takes tsm */
    int rc = 0;
    if (e) {
        take_error(e, "LLVM: cannot add the kernel module", err, errlen);
        rc = -1;
    }
    for (int i = 0; i < nk && !rc; i++) {
        LLVMOrcExecutorAddress addr = 0;
        e = LLVMOrcLLJITLookup(j->lljit, &addr, names[i]);
        if (e) {
            char what[160];
            snprintf(what, sizeof what, "LLVM: cannot compile kernel %s", names[i]);
            take_error(e, what, err, errlen);
            rc = -1;
        } else {
            fns[i] = (pc_kernel_fn)(uintptr_t)addr;
        }
    }
    if (rc) {
        e = LLVMOrcResourceTrackerRemove(rt);
        if (e) LLVMConsumeError(e);
        for (int i = 0; i < nk; i++) fns[i] = NULL;
    }
    LLVMOrcReleaseResourceTracker(rt);
    return rc;
}

/* a graph entry function (backend/entry.h) */
int pc_jit_compile_entry(pc_jit *j, const char *name, int nin, int nout, void **fn, char *err, size_t errlen) {
    *fn = NULL;
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMModuleRef m = pc_llvm_entry_module(LLVMOrcThreadSafeContextGetContext(tsc), name, nin, nout, err, errlen);
    if (!m) {
        LLVMOrcDisposeThreadSafeContext(tsc);
        return -1;
    }
    char *triple = LLVMGetTargetMachineTriple(j->tm);
    LLVMSetTarget(m, triple);
    LLVMDisposeMessage(triple);
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m, tsc);
    LLVMOrcDisposeThreadSafeContext(tsc);
    LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(j->lljit, LLVMOrcLLJITGetMainJITDylib(j->lljit), tsm);
    if (e) {
        take_error(e, "LLVM: cannot add the entry module", err, errlen);
        return -1;
    }
    LLVMOrcExecutorAddress addr = 0;
    if ((e = LLVMOrcLLJITLookup(j->lljit, &addr, name))) {
        take_error(e, "LLVM: cannot compile the entry function", err, errlen);
        return -1;
    }
    *fn = (void *)(uintptr_t)addr;
    return 0;
}

/* ---- the JIT kernel provider (backend/exec.h): one pc_jit per compiled graph ---- */

#include "backend/exec.h"

static void *jit_provide(const pc_kernel_provider *p, const pc_kernel_desc *k, const char *const *names, int nk,
                         pc_kernel_fn *fns, char *err, size_t errlen) {
    (void)p;
    pc_jit *j = pc_jit_new(err, errlen);
    if (j && pc_jit_compile(j, k, names, nk, fns, err, errlen)) {
        pc_jit_free(j);
        j = NULL;
    }
    return j;
}

static void jit_release(const pc_kernel_provider *p, void *handle) {
    (void)p;
    pc_jit_free(handle);
}

static const pc_kernel_provider jit_provider = {jit_provide, jit_release, NULL};

const pc_kernel_provider *pc_kernel_provider_jit(void) { return &jit_provider; }
const pc_kernel_provider *pc_kernel_provider_default(void) { return &jit_provider; }
