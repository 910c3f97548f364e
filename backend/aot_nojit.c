/* The default kernel provider of the AOT runtime library (libpeftc_aot.a, linked into
 * standalone executables built by `peftc compile`): there is no LLVM in it, so a graph whose
 * kernels are not given by the executable's table (pc_exec_opts.kernels) cannot be compiled. */
#include "backend/exec.h"

#include <stdio.h>

static void *nojit_provide(const pc_kernel_provider *p, const struct pc_kernel_desc *k, const char *const *names,
                           int nk, pc_kernel_fn *fns, char *err, size_t errlen) {
    (void)p, (void)k, (void)fns;
    if (err && errlen)
        snprintf(err, errlen, "kernel %s: this executable has no JIT compiler; its graphs must use the kernels "
                 "compiled into it (%d kernels asked for)", nk > 0 ? names[0] : "?", nk);
    return NULL;
}

static void nojit_release(const pc_kernel_provider *p, void *handle) { (void)p, (void)handle; }

static const pc_kernel_provider nojit_provider = {nojit_provide, nojit_release, NULL};

const pc_kernel_provider *pc_kernel_provider_default(void) { return &nojit_provider; }
