/* The runtime side of an AOT executable (see tools/aot.h). */
#include "tools/aot.h"
#include "backend/entry.h"
#include "runtime/fileio.h"
#include "tools/cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* the kernel provider over the executable's table */
static void *table_provide(const pc_kernel_provider *p, const struct pc_kernel_desc *k, const char *const *names,
                           int nk, pc_kernel_fn *fns, char *err, size_t errlen) {
    (void)k;
    const pc_aot_image *img = p->ctx;
    for (int i = 0; i < nk; i++) {
        int j = 0;
        while (j < img->nkernels && strcmp(img->kernels[j].name, names[i]) != 0) j++;
        if (j == img->nkernels) {
            pc_errf(err, errlen, "this executable was compiled for a different graph: its graph needs kernel %s, "
                    "which is not in it (%d kernels compiled in)", names[i], img->nkernels);
            return NULL;
        }
        fns[i] = img->kernels[j].fn;
    }
    return (void *)p; /* the kernels live as long as the executable */
}

static void table_release(const pc_kernel_provider *p, void *handle) { (void)p, (void)handle; }

/* the entry provider over the executable's table: each graph's function is found by its name
 * (a fingerprint of the graph) and called directly through main.c's wrapper */
typedef struct {
    pc_entry_rt rt; /* first: the entry function's ctx */
    const pc_aot_entry *en;
} aot_entry;

static void *entry_open(const pc_entry_provider *p, pc_exec *e, const pc_graph *g, char *err, size_t errlen) {
    const pc_aot_image *img = p->ctx;
    char name[PC_ENTRY_NAME_MAX];
    if (pc_entry_name(g, name, err, errlen)) return NULL;
    int j = 0;
    while (j < img->nentries && strcmp(img->entries[j].name, name) != 0) j++;
    if (j == img->nentries) {
        pc_errf(err, errlen, "this executable was compiled for a different graph: it has no entry function %s "
                "(%d compiled in)", name, img->nentries);
        return NULL;
    }
    aot_entry *h = calloc(1, sizeof *h);
    if (!h) { pc_errf(err, errlen, "out of memory"); return NULL; }
    h->en = &img->entries[j];
    if (pc_entry_rt_init(&h->rt, e, g, err, errlen)) { free(h); return NULL; }
    if (h->rt.nin != h->en->nin || h->rt.nout != h->en->nout) {
        pc_errf(err, errlen, "entry function %s: compiled for %d inputs and %d outputs, the graph has %d and %d", name,
                h->en->nin, h->en->nout, h->rt.nin, h->rt.nout);
        pc_entry_rt_free(&h->rt);
        free(h);
        return NULL;
    }
    return h;
}

static int entry_call(void *handle, void *const *args, char *err, size_t errlen) {
    aot_entry *h = handle;
    h->rt.err = err, h->rt.errlen = errlen;
    if (err && errlen) err[0] = 0;
    int rc = h->en->call(&h->rt, args);
    h->rt.err = NULL, h->rt.errlen = 0;
    if (rc && err && errlen && !err[0]) pc_errf(err, errlen, "the entry function %s returned %d", h->en->name, rc);
    return rc;
}

static void entry_close(void *handle) {
    aot_entry *h = handle;
    if (!h) return;
    pc_entry_rt_free(&h->rt);
    free(h);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int pc_aot_main(int argc, char **argv, const pc_aot_image *img) {
    const char *prog = argc > 0 && argv[0] ? argv[0] : "peftc-aot";
    char exe[PATH_MAX], dir[PATH_MAX + 16], model[PATH_MAX + 64], tok[PATH_MAX + 64], ad[PATH_MAX + 64],
        idp[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        fprintf(stderr, "%s: cannot find the executable's own path (/proc/self/exe)\n", prog);
        return 1;
    }
    exe[n] = 0;
    snprintf(dir, sizeof dir, "%s.weights", exe);
    if (!is_dir(dir)) {
        fprintf(stderr, "%s: %s: the data directory of this executable is missing (peftc compile writes it "
                "beside the executable; copy or move the two together)\n", prog, dir);
        return 1;
    }
    snprintf(idp, sizeof idp, "%s/%s", dir, PC_AOT_BUILD_ID);
    char *id = NULL, err[512];
    size_t idlen = 0;
    if (pc_read_file(idp, &id, &idlen, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 1;
    }
    while (idlen && (id[idlen - 1] == '\n' || id[idlen - 1] == ' ')) id[--idlen] = 0;
    int same = strlen(img->build_id) == idlen && memcmp(id, img->build_id, idlen) == 0;
    free(id);
    if (!same) {
        fprintf(stderr, "%s: %s: build-id: this data directory belongs to another executable (compiled "
                "separately); use the one peftc compile wrote with it\n", prog, dir);
        return 1;
    }
    snprintf(model, sizeof model, "%s/%s", dir, PC_AOT_MODEL);
    snprintf(tok, sizeof tok, "%s/%s", dir, PC_AOT_TOKENIZER);
    const char *tokenizer = is_file(tok) ? tok : NULL; /* else the model's own */
    const char *adapter = NULL;
    snprintf(ad, sizeof ad, "%s/%s", dir, PC_AOT_ADAPTER_DIR);
    if (is_dir(ad)) adapter = ad;
    else {
        snprintf(ad, sizeof ad, "%s/%s", dir, PC_AOT_ADAPTER_CONFIG);
        if (is_file(ad)) adapter = ad;
    }
    pc_kernel_provider kp = {table_provide, table_release, img};
    pc_entry_provider ep = {entry_open, entry_call, entry_close, img};
    pc_cli_fixed fx = {.prog = prog, .about = img->about, .model = model, .tokenizer = tokenizer, .adapter = adapter,
                       .batch = img->batch, .seq = img->seq, .cache_sizes = img->cache_sizes,
                       .ncache_sizes = img->ncache_sizes, .mixed = img->mixed != 0, .kernels = &kp,
                       .base_dtype = img->base_dtype == PC_BF16 ? PC_BF16 : PC_F32,
                       .entries = &ep};
    argc = argc > 0 ? argc - 1 : 0;
    argv = argv + 1;
    if (img->mode == PC_AOT_TRAIN) return pc_train_main(NULL, argc, argv, &fx);
    if (img->mode == PC_AOT_INFER) return pc_generate_main(NULL, argc, argv, &fx);
    fprintf(stderr, "%s: unknown mode %d\n", prog, (int)img->mode);
    return 1;
}
