/* peftc compile: a standalone train or infer executable (AOT).
 *
 * It builds the graphs the executable will run with the same builders (train: pc_train_graphs
 * for --batch/--seq, with and without clipping; infer: the decode graph over the model's whole
 * context, the adapter merged into the weights), creates them on the compiled backend with a
 * provider that records every fused kernel (and JIT-compiles it, as always), emits those kernels
 * into an object file (LLVM) together with each graph's entry function (backend/entry.h: the same
 * LLVM code the JIT compiles, named after a fingerprint of the graph), writes a main() holding the
 * kernel table, each entry's C prototype (from the graph signature) with a wrapper that calls it
 * directly, and what was compiled in, and links it with the system C compiler against
 * libpeftc_aot.a (no LLVM). The data directory
 * OUT.weights (model, tokenizer, adapter) goes beside OUT. Intermediate files live in a temporary
 * directory; OUT and OUT.weights are staged under temporary names and renamed into place. */
#include "backend/entry.h"
#include "backend/kernel.h"
#include "drivers/adapter_layout.h"
#include "drivers/fold_weights.h"
#include "drivers/merge.h"
#include "drivers/session.h"
#include "drivers/train.h"
#include "runtime/bf16.h"
#include "runtime/fileio.h"
#include "tools/aot.h"
#include "tools/cli.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PEFTC_CC
#define PEFTC_CC "cc"
#endif
/* an installed peftc's libraries and headers, relative to its bin directory (CMakeLists.txt) */
#ifndef PEFTC_INSTALL_LIB_REL
#define PEFTC_INSTALL_LIB_REL "../lib"
#endif
#ifndef PEFTC_INSTALL_INCLUDE_REL
#define PEFTC_INSTALL_INCLUDE_REL "../include"
#endif

/* ---- the recording kernel provider ---- */

typedef struct {
    pc_kernel_provider self; /* first: the provider's ctx points back here */
    pc_kernel_desc *k;
    char (*names)[PC_KERNEL_NAME_MAX];
    int n, cap;
    /* the graphs' entry functions: name, signature, C prototype */
    struct centry {
        char name[PC_ENTRY_NAME_MAX];
        int nin, nout;
        char *proto;
    } *e;
    int ne, ecap;
} collector;

static void *collect_provide(const pc_kernel_provider *p, const struct pc_kernel_desc *k, const char *const *names,
                             int nk, pc_kernel_fn *fns, char *err, size_t errlen) {
    collector *c = (collector *)p->ctx;
    for (int i = 0; i < nk; i++) {
        int j = 0;
        while (j < c->n && strcmp(c->names[j], names[i]) != 0) j++;
        if (j < c->n) continue;
        if (c->n == c->cap) {
            int cap = c->cap ? 2 * c->cap : 32;
            pc_kernel_desc *nk2 = realloc(c->k, (size_t)cap * sizeof *nk2);
            if (nk2) c->k = nk2;
            char (*nn)[PC_KERNEL_NAME_MAX] = nk2 ? realloc(c->names, (size_t)cap * sizeof *nn) : NULL;
            if (!nk2 || !nn) { pc_errf(err, errlen, "out of memory"); return NULL; }
            c->names = nn;
            c->cap = cap;
        }
        c->k[c->n] = k[i];
        snprintf(c->names[c->n], PC_KERNEL_NAME_MAX, "%s", names[i]);
        c->n++;
    }
    const pc_kernel_provider *jit = pc_kernel_provider_jit();
    return jit->compile(jit, k, names, nk, fns, err, errlen);
}

static void collect_release(const pc_kernel_provider *p, void *handle) {
    (void)p;
    const pc_kernel_provider *jit = pc_kernel_provider_jit();
    jit->release(jit, handle);
}

/* records g's entry function (once per distinct graph) */
static int collect_entry(collector *c, const pc_graph *g, char *err, size_t errlen) {
    char name[PC_ENTRY_NAME_MAX];
    if (pc_entry_name(g, name, err, errlen)) return -1;
    for (int i = 0; i < c->ne; i++)
        if (strcmp(c->e[i].name, name) == 0) return 0;
    if (c->ne == c->ecap) {
        int cap = c->ecap ? 2 * c->ecap : 4;
        struct centry *ne = realloc(c->e, (size_t)cap * sizeof *ne);
        if (!ne) return pc_errf(err, errlen, "out of memory");
        c->e = ne, c->ecap = cap;
    }
    struct centry *en = &c->e[c->ne];
    *en = (struct centry){.nin = pc_entry_graph_ninputs(g), .nout = g->noutputs};
    snprintf(en->name, sizeof en->name, "%s", name);
    size_t len = 0;
    FILE *f = open_memstream(&en->proto, &len);
    if (!f) return pc_errf(err, errlen, "out of memory");
    pc_entry_write_prototype(f, g, name);
    if (fclose(f)) { free(en->proto); return pc_errf(err, errlen, "out of memory"); }
    c->ne++;
    return 0;
}

/* creates g on the compiled backend (recording its kernels and its entry function) and frees it */
static int collect_graph(collector *c, pc_graph *g, char *err, size_t errlen) {
    pc_exec_opts eo = {.kind = PC_BACKEND_JIT, .threads = 1, .kernels = &c->self};
    pc_exec *e = g ? pc_exec_new(g, &eo, err, errlen) : NULL;
    int rc = e && !collect_entry(c, g, err, errlen) ? 0 : -1;
    pc_exec_free(e);
    pc_graph_free(g);
    return rc;
}

/* ---- files ---- */

static int copy_file(const char *from, const char *to, char *err, size_t errlen) {
    char *data;
    size_t len;
    if (pc_read_file(from, &data, &len, err, errlen)) return -1;
    int rc = pc_write_file_atomic(to, data, len, err, errlen);
    free(data);
    return rc;
}

/* a model as its family reads it: a file, or a Hugging Face directory (its regular files: config,
 * weights, tokenizer). Files are hard-linked where the file system allows (the sources are never
 * written in place: every peftc output is renamed into place), else copied. */
static int copy_model(const char *from, const char *to, char *err, size_t errlen) {
    struct stat st;
    if (stat(from, &st)) return pc_errf(err, errlen, "%s: %s", from, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return link(from, to) == 0 ? 0 : copy_file(from, to, err, errlen);
    if (pc_mkdirs(to, err, errlen)) return -1;
    DIR *d = opendir(from);
    if (!d) return pc_errf(err, errlen, "%s: %s", from, strerror(errno));
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        char src[8192], dst[8192];
        if (e->d_name[0] == '.') continue;
        snprintf(src, sizeof src, "%s/%s", from, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", to, e->d_name);
        if (stat(src, &st) || !S_ISREG(st.st_mode)) continue;
        if (link(src, dst) != 0) rc = copy_file(src, dst, err, errlen);
    }
    closedir(d);
    return rc;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) == 0) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* a C string literal */
static void put_cstr(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f) fprintf(f, "\\%03o", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static int write_main(const char *path, const collector *c, pc_aot_mode mode, int batch, int seq, const int *cache_sizes, int ncache, int mixed,
                      pc_dtype base_dtype, const char *about, const char *build_id, char *err, size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) return pc_errf(err, errlen, "%s: %s", path, strerror(errno));
    fprintf(f, "/* generated by peftc compile */\n#include \"tools/aot.h\"\n#include \"tools/omp_wait_default.h\"\n\n#include <stdint.h>\n\n");
    for (int i = 0; i < c->n; i++) fprintf(f, "void %s(void *const *args);\n", c->names[i]);
    /* the entry functions, with the graphs' signatures, each called directly by a wrapper */
    for (int i = 0; i < c->ne; i++) {
        const struct centry *en = &c->e[i];
        fprintf(f, "\n%s;\nstatic int call_entry_%d(void *ctx, void *const *a) {\n    return %s(ctx", en->proto, i, en->name);
        for (int k = 0; k < en->nin + en->nout; k++) fprintf(f, ", a[%d]", k);
        fprintf(f, ");\n}\n");
    }
    fprintf(f, "\nstatic const pc_aot_entry entries[] = {\n");
    for (int i = 0; i < c->ne; i++)
        fprintf(f, "    {\"%s\", %d, %d, call_entry_%d},\n", c->e[i].name, c->e[i].nin, c->e[i].nout, i);
    if (!c->ne) fprintf(f, "    {0, 0, 0, 0},\n");
    fprintf(f, "};\n");
    fprintf(f, "\nstatic const pc_aot_kernel kernels[] = {\n");
    for (int i = 0; i < c->n; i++) fprintf(f, "    {\"%s\", %s},\n", c->names[i], c->names[i]);
    if (!c->n) fprintf(f, "    {0, 0},\n");
    fprintf(f, "};\n\nstatic const int cache_sizes[] = {");
    for (int i = 0; i < ncache; i++) fprintf(f, "%s%d", i ? ", " : "", cache_sizes[i]);
    fprintf(f, "%s};\n", ncache ? "" : "0");
    fprintf(f, "\nstatic const pc_aot_image image = {\n    .mode = %s, .batch = %d, .seq = %d,\n"
            "    .cache_sizes = cache_sizes, .ncache_sizes = %d, .mixed = %d, .base_dtype = %d,\n",
            mode == PC_AOT_TRAIN ? "PC_AOT_TRAIN" : "PC_AOT_INFER", batch, seq, ncache, mixed, (int)base_dtype);
    fprintf(f, "    .about = ");
    put_cstr(f, about);
    fprintf(f, ",\n    .build_id = \"%s\",\n    .kernels = kernels, .nkernels = %d,\n    .entries = entries, .nentries = %d,\n};\n\n",
            build_id, c->n, c->ne);
    fprintf(f, "int main(int argc, char **argv) { return pc_aot_main(argc, argv, &image); }\n");
    if (fclose(f)) return pc_errf(err, errlen, "%s: write failed", path);
    return 0;
}

/* what the executable is compiled and linked against: libpeftc_aot.a, libpeftc_runtime.a and the
 * include directories of the generated main.c (tools/aot.h, backend/exec.h, include/peftc/) */
typedef struct {
    char aot[4096], runtime[4096], inc[2][4096 + 2]; /* inc: "-I" DIR */
} aot_paths;

/* dir/rel + file (rel itself when absolute); 0, or -1 when it does not fit */
static int join(char *buf, size_t len, const char *dir, const char *rel, const char *file) {
    int n = rel[0] == '/' ? snprintf(buf, len, "%s%s", rel, file) : snprintf(buf, len, "%s/%s%s", dir, rel, file);
    return n >= 0 && (size_t)n < len ? 0 : -1;
}

/* beside an installed peftc (<bin>/../lib, <bin>/../lib/peftc/include, <bin>/../include), else in
 * the build tree this peftc was built in */
static int find_aot(aot_paths *p, char *err, size_t errlen) {
    char dir[4096], installed[4200] = "beside the executable";
    memcpy(p->inc[0], "-I", 2);
    memcpy(p->inc[1], "-I", 2);
    if (pc_exe_dir(dir, sizeof dir) && !join(p->aot, sizeof p->aot, dir, PEFTC_INSTALL_LIB_REL, "/libpeftc_aot.a")) {
        snprintf(installed, sizeof installed, "%s", p->aot);
        if (access(p->aot, R_OK) == 0 &&
            !join(p->runtime, sizeof p->runtime, dir, PEFTC_INSTALL_LIB_REL, "/libpeftc_runtime.a") &&
            !join(p->inc[0] + 2, sizeof p->inc[0] - 2, dir, PEFTC_INSTALL_LIB_REL, "/peftc/include") &&
            !join(p->inc[1] + 2, sizeof p->inc[1] - 2, dir, PEFTC_INSTALL_INCLUDE_REL, ""))
            return 0;
    }
    snprintf(p->aot, sizeof p->aot, "%s", PEFTC_AOT_LIB);
    snprintf(p->runtime, sizeof p->runtime, "%s", PEFTC_RUNTIME_LIB);
    snprintf(p->inc[0], sizeof p->inc[0], "-I%s", PEFTC_AOT_INCLUDE);
    snprintf(p->inc[1], sizeof p->inc[1], "-I%s/include", PEFTC_AOT_INCLUDE);
    if (access(p->aot, R_OK) == 0) return 0;
    return pc_errf(err, errlen, "cannot find libpeftc_aot.a: neither %s (an installed peftc) nor %s (the build tree) is readable",
                   installed, p->aot);
}

/* splits a space-separated list into argv (modifies s) */
static int split_args(char *s, const char **av, int n, int max) {
    for (char *t = strtok(s, " "); t && n < max; t = strtok(NULL, " ")) av[n++] = t;
    return n;
}

static int run_cc(const aot_paths *ap, const char *main_c, const char *obj, const char *out, char *err, size_t errlen) {
    char cflags[] = PEFTC_AOT_CFLAGS, ldlibs[] = PEFTC_AOT_LDLIBS;
    const char *av[96];
    int n = 0;
    av[n++] = PEFTC_CC;
    n = split_args(cflags, av, n, 40);
    av[n++] = "-O2";
    av[n++] = "-std=c17";
    av[n++] = "-D_GNU_SOURCE";
    av[n++] = ap->inc[0];
    av[n++] = ap->inc[1];
    av[n++] = "-o";
    av[n++] = out;
    av[n++] = main_c;
    av[n++] = obj;
    av[n++] = ap->aot;
    av[n++] = ap->runtime;
    n = split_args(ldlibs, av, n, 94);
    av[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return pc_errf(err, errlen, "cannot start %s: %s", PEFTC_CC, strerror(errno));
    if (pid == 0) {
        execvp(av[0], (char *const *)av);
        fprintf(stderr, "peftc compile: cannot run %s: %s\n", av[0], strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return pc_errf(err, errlen, "waiting for %s: %s", PEFTC_CC, strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return pc_errf(err, errlen, "linking %s with %s failed (exit status %d)", out, PEFTC_CC,
                       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}

static const char *base(const char *p) {
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

/* ---- the verb ---- */

typedef struct {
    const char *model, *tokenizer, *adapter, *out, *object, *dump_after;
    const char *const *named; /* --adapter NAME=DIR, repeated (infer): one generator serving them all */
    int nnamed;
    pc_aot_mode mode;
    int batch, seq;
    bool hf;
    pc_dtype base_dtype;
} copts;

/* copies a trained adapter directory into wdir/adapter (config rewritten by peftc, weights as is) */
static int copy_adapter(const pc_session *s, const char *from, const char *wdir, char *err, size_t errlen) {
    char path[8300], src[8192];
    snprintf(path, sizeof path, "%s/%s", wdir, PC_AOT_ADAPTER_DIR);
    if (pc_mkdirs(path, err, errlen)) return -1;
    snprintf(path, sizeof path, "%s/%s/%s", wdir, PC_AOT_ADAPTER_DIR, PC_ADAPTER_WEIGHTS_NAME);
    snprintf(src, sizeof src, "%s/%s", from, PC_ADAPTER_WEIGHTS_NAME);
    if (copy_file(src, path, err, errlen)) return -1;
    snprintf(path, sizeof path, "%s/%s/%s", wdir, PC_AOT_ADAPTER_DIR, PC_ADAPTER_CONFIG_NAME);
    return pc_adapter_config_write(s->adapter.cfg, path, err, errlen);
}

/* standalone executables carry the built-in methods only (tools/aot_main.c) */
static int builtin(const pc_adapter_method *m) {
    for (const pc_adapter_method *const *b = pc_builtin_methods(); *b; b++)
        if (*b == m) return 1;
    return 0;
}

static const char *builtin_names(char *buf, size_t len) {
    buf[0] = 0;
    for (const pc_adapter_method *const *b = pc_builtin_methods(); *b; b++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", b == pc_builtin_methods() ? "" : ", ", (*b)->name);
    return buf;
}

/* several named adapters (infer): written to wdir/adapter in PEFT's layout, and the session opened
 * from there with every one of them in one mixed graph, exactly as the executable will open it
 * (the graph, hence its kernels, depends on the adapters' order, which the layout fixes) */
static int open_named(pc_session *s, const copts *o, const pc_registry *reg, const char *wdir, char *err,
                      size_t errlen) {
    const char **names = calloc((size_t)o->nnamed, sizeof *names), **dirs = calloc((size_t)o->nnamed, sizeof *dirs);
    char path[8300];
    snprintf(path, sizeof path, "%s/%s", wdir, PC_AOT_ADAPTER_DIR);
    int rc = names && dirs ? 0 : pc_errf(err, errlen, "out of memory");
    for (int i = 0; !rc && i < o->nnamed; i++) {
        const char *eq = strchr(o->named[i], '=');
        if (!eq || eq == o->named[i])
            rc = pc_errf(err, errlen, "--adapter %s: with several adapters each is NAME=DIR", o->named[i]);
        else if (!(names[i] = strndup(o->named[i], (size_t)(eq - o->named[i]))))
            rc = pc_errf(err, errlen, "out of memory");
        else
            dirs[i] = eq + 1;
    }
    if (!rc) rc = pc_mkdirs(wdir, err, errlen);
    if (!rc) rc = pc_adapters_write_layout(path, names, dirs, o->nnamed, err, errlen);
    for (int i = 0; names && i < o->nnamed; i++) free((char *)names[i]);
    free(names);
    free(dirs);
    if (rc) return -1;
    const char *spec[1] = {path};
    if (pc_session_open_named(s, reg, o->model, o->tokenizer, spec, 1, NULL, true, 0, err, errlen)) return -1;
    s->mixed = true;
    return 0;
}

/* writes the data directory `wdir` and records the graphs' kernels */
static int prepare(const copts *o, const pc_registry *reg, const char *wdir, collector *c, int *cache_sizes, int *ncache,
                   char *about,
                   size_t aboutlen, char *err, size_t errlen) {
    pc_session s;
    if (o->nnamed ? open_named(&s, o, reg, wdir, err, errlen)
                  : pc_session_open(&s, reg, o->model, o->tokenizer, o->adapter, err, errlen))
        return -1;
    s.hf_qk_rows = o->hf;
    if (pc_session_set_base_dtype(&s, o->base_dtype, err, errlen)) {
        pc_session_close(&s);
        return -1;
    }
    s.dump_after = o->mode == PC_AOT_INFER ? o->dump_after : NULL;
    if (s.method && !builtin(s.method)) {
        char names[256];
        pc_errf(err, errlen, "%s: the %s method is registered by this program, not built into peftc: a standalone "
                "executable could not run it (compile supports %s)", o->adapter, s.method->name,
                builtin_names(names, sizeof names));
        pc_session_close(&s);
        return -1;
    }
    char path[8300];
    int rc = -1;
    if (s.model.info.encoder) {
        pc_errf(err, errlen, "%s: an encoder (%s); standalone executables are built for causal language models so far "
                "(train, eval and predict run on this model)", o->model, s.model.family->name);
        goto done;
    }
    if (pc_mkdirs(wdir, err, errlen)) goto done;
    /* the tokenizer file given (a llama2.c model's always is); else the model's own, inside it */
    snprintf(path, sizeof path, "%s/%s", wdir, PC_AOT_TOKENIZER);
    if (o->tokenizer && copy_file(o->tokenizer, path, err, errlen)) goto done;
    snprintf(path, sizeof path, "%s/%s", wdir, PC_AOT_MODEL);
    const char *tok_name = o->tokenizer ? base(o->tokenizer) : "the model's own";
    const char *adesc = s.adapter.cfg && o->adapter ? base(o->adapter) : "the default LoRA (r=8, alpha=16, q,k,v,o,gate,up,down)";
    if (o->mode == PC_AOT_TRAIN) {
        if (copy_model(o->model, path, err, errlen)) goto done;
        if (s.adapter.weights) { /* a trained adapter to continue from */
            if (copy_adapter(&s, o->adapter, wdir, err, errlen)) goto done;
        } else if (s.adapter.cfg) {
            snprintf(path, sizeof path, "%s/%s", wdir, PC_AOT_ADAPTER_CONFIG);
            if (pc_adapter_config_write(s.adapter.cfg, path, err, errlen)) goto done;
        } else if (pc_session_default_adapter(&s, err, errlen)) {
            goto done;
        }
        int room = s.model.info.context - pc_session_virtual_tokens(&s);
        if (o->seq > room) {
            pc_errf(err, errlen, "--seq %d exceeds the model's context of %d tokens", o->seq, room);
            goto done;
        }
        pc_train_opts to = pc_train_defaults();
        to.batch = o->batch, to.seq = o->seq, to.dump_after = o->dump_after;
        for (int clip = 1; clip >= 0; clip--) { /* --clip 0 builds another step graph */
            pc_graph *g = NULL, *eg = NULL;
            to.clip = clip;
            int r = pc_train_graphs(&s, &to, true, &g, &eg, err, errlen);
            if (r) { pc_graph_free(g); pc_graph_free(eg); goto done; }
            if (collect_graph(c, g, err, errlen) || collect_graph(c, eg, err, errlen)) goto done;
        }
        snprintf(about, aboutlen, "model %s, tokenizer %s, adapter %s, batch %d, seq %d", base(o->model), tok_name,
                 adesc, o->batch, o->seq);
    } else {
        bool unmerged = false;
        if (o->nnamed) { /* several adapters, unmerged, in one mixed graph (open_named) */
            unmerged = true;
            if (copy_model(o->model, path, err, errlen)) goto done;
        } else if (s.adapter.cfg) {
            if (!s.adapter.weights) {
                pc_errf(err, errlen, "%s: --mode infer needs a trained adapter directory (with %s), not a config",
                        o->adapter, PC_ADAPTER_WEIGHTS_NAME);
                goto done;
            }
            /* a mergeable adapter is folded into the weights; another (prompt tuning) runs
             * unmerged, its tensors shipped beside the model */
            unmerged = !s.method->merge_linear;
            if (unmerged ? copy_model(o->model, path, err, errlen) || copy_adapter(&s, o->adapter, wdir, err, errlen)
                         : pc_session_merge(&s, NULL, err, errlen) || pc_session_write_model(&s, path, err, errlen))
                goto done;
        } else if (copy_model(o->model, path, err, errlen)) {
            goto done;
        }
        /* the graphs the generator will run (the same build, store and weight folding as
         * pc_decode), one per KV capacity: 128, 512, 2048, ... and the whole context; a request
         * runs on the smallest that holds it, since attention spans the whole capacity */
        *ncache = 0;
        for (int64_t cap = 128; cap < s.model.info.context && *ncache < PC_AOT_MAX_CACHES - 1; cap *= 4)
            cache_sizes[(*ncache)++] = (int)cap;
        cache_sizes[(*ncache)++] = s.model.info.context;
        /* batch 1 (--prompt), and --batch B's rows for generate --prompts --batch B */
        for (int k = 0; k < *ncache * (o->batch > 1 ? 2 : 1); k++) {
            pc_build_req req = {.task = PC_TASK_DECODE, .batch = k < *ncache ? 1 : o->batch,
                                .seq = cache_sizes[k % *ncache], .mode = PC_ADAPT_DECODE};
            pc_store st = {0};
            pc_folded f = {0};
            pc_graph *dg = pc_session_inference_graph(&s, &req, &st, &f, err, errlen);
            pc_store_free(&st);
            pc_folded_free(&f);
            if (collect_graph(c, dg, err, errlen)) goto done;
        }
        if (o->nnamed) {
            char names[1024];
            pc_session_adapter_names(&s, names, sizeof names);
            snprintf(about, aboutlen, "model %s, tokenizer %s, adapters %s (unmerged, one graph: --active picks one), KV "
                     "capacities", base(o->model), tok_name, names);
        } else {
            snprintf(about, aboutlen, "model %s, tokenizer %s, adapter %s%s, KV capacities", base(o->model), tok_name,
                     s.adapter.cfg ? base(o->adapter) : "none", !s.adapter.cfg ? "" : unmerged ? " (unmerged)" : " (merged)");
        }
        for (int k = 0; k < *ncache; k++)
            snprintf(about + strlen(about), aboutlen - strlen(about), "%s%d", k ? "/" : " ", cache_sizes[k]);
        if (o->batch > 1)
            snprintf(about + strlen(about), aboutlen - strlen(about), ", batch 1 and %d (--prompts --batch %d)", o->batch,
                     o->batch);
    }
    if (o->base_dtype == PC_BF16) snprintf(about + strlen(about), aboutlen - strlen(about), ", bf16 base");
    rc = 0;
done:
    pc_session_close(&s);
    return rc;
}

static void help(void) {
    printf("usage: peftc compile [--model F] [--tokenizer F] [--adapter DIR|CONFIG] --mode train|infer\n"
           "                     [--batch B --seq S] [--hf-qk-rows] [--emit-object F] -o OUT\n\n"
           "Writes a standalone executable OUT and its data directory OUT.weights beside it (the model,\n"
           "tokenizer and adapter). Neither needs LLVM, the peftc CLI or the build tree at run time;\n"
           "move or copy them together. What is compiled in is fixed.\n\n"
           "  --mode train   OUT trains the adapter (default: LoRA r=8 alpha=16 on all projections;\n"
           "                 --adapter CONFIG or a trained DIR to continue from) and writes it in\n"
           "                 PEFT's format; it takes the flags of peftc train, --data required.\n"
           "  --batch B --seq S  the shapes OUT trains with (default 8, 64); OUT rejects others\n"
           "                 (infer: --batch B also compiles the decode graph of B rows that\n"
           "                 OUT --prompts FILE --batch B runs; batch 1 is always there)\n"
           "  --mode infer   OUT generates text with the adapter merged into the weights (a prompt\n"
           "                 method runs unmerged, its prompt compiled in); it takes\n"
           "                 the flags of peftc generate (--prompt --tokens --temperature --top-p\n"
           "                 --seed --json; --task-id picks a multitask prompt's task at run time)\n"
           "  --hf-qk-rows   (infer) the adapter's q/k rows are in Hugging Face order\n"
           "  --base-dtype bf16  the executable holds the frozen base weights in bf16 (see peftc train)\n"
           "  -o OUT         the executable to write\n"
           "  --dump-after=PASS  print the compiled graphs' IR to stderr after adapt, autograd,\n"
           "                 adamw or all\n"
           "  --emit-object F  also write the object file linked into OUT (the fused kernels and each\n"
           "                 graph's entry function pc_entry_<graph>_<fingerprint>) to F\n\n"
           "Kernels are compiled for this machine's CPU. Linking uses %s.\n", PEFTC_CC);
}

int pc_cmd_compile(const pc_registry *reg, int argc, char **argv) {
    copts o = {.batch = 8, .seq = 64};
    const char *mode = 0, *batch = 0, *seq = 0, *base_dtype = 0;
    bool hf = false;
    pc_cli_opt opts[] = {
        {"model", true, &o.model, 0}, {"tokenizer", true, &o.tokenizer, 0}, {"adapter", true, &o.adapter, 0},
        {"mode", true, &mode, 0},     {"batch", true, &batch, 0},           {"seq", true, &seq, 0},
        {"o", true, &o.out, 0},       {"hf-qk-rows", false, 0, &hf},     {"emit-object", true, &o.object, 0},
        {"dump-after", true, &o.dump_after, 0}, {"base-dtype", true, &base_dtype, 0},
    };
    const char *adapters[64]; /* --adapter DIR, or NAME=DIR repeated (infer) */
    int nad = 0;
    if ((argc = pc_cli_take_repeated("compile", argc, argv, "adapter", adapters, 64, &nad)) < 0) return 1;
    if (nad == 1 && !strchr(adapters[0], '=')) o.adapter = adapters[0];
    else if (nad) o.named = adapters, o.nnamed = nad;
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("compile", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, 0, &npos);
    if (rc == 1) { help(); return 0; }
    if (rc) return 1;
    if (!mode) { fprintf(stderr, "peftc compile: --mode is required (train or infer)\n"); return 1; }
    if (pc_cli_base_dtype("compile", base_dtype, &o.base_dtype)) return 1;
    if (o.base_dtype == PC_BF16 && !pc_cpu_has_bf16()) {
        fprintf(stderr, "peftc compile: --base-dtype bf16: this CPU has no bf16 instructions (AVX512_BF16 or AMX-BF16) "
                "to compile and check the executable on\n");
        return 1;
    }
    if (o.dump_after && strcmp(o.dump_after, "autograd") && strcmp(o.dump_after, "adamw") &&
        pc_cli_dump_stage("compile", o.dump_after))
        return 1;
    if (strcmp(mode, "train") == 0) o.mode = PC_AOT_TRAIN;
    else if (strcmp(mode, "infer") == 0) o.mode = PC_AOT_INFER;
    else { fprintf(stderr, "peftc compile: --mode: expected train or infer, got '%s'\n", mode); return 1; }
    if (!o.out || !*o.out) { fprintf(stderr, "peftc compile: -o OUT is required (the executable to write)\n"); return 1; }
    long long v;
    if (batch) { if (pc_cli_int("compile", "batch", batch, 1, 65536, &v)) return 1; o.batch = (int)v; }
    if (seq) { if (pc_cli_int("compile", "seq", seq, 1, 1 << 20, &v)) return 1; o.seq = (int)v; }
    if (o.mode == PC_AOT_TRAIN && o.nnamed) {
        fprintf(stderr, "peftc compile: --adapter NAME=DIR: several adapters make a generator (--mode infer); a trainer "
                "trains one\n");
        return 1;
    }
    if (o.mode == PC_AOT_INFER && seq) {
        fprintf(stderr, "peftc compile: --seq applies to --mode train (infer runs over the model's context)\n");
        return 1;
    }
    if (o.mode == PC_AOT_INFER && !batch) o.batch = 1; /* infer: the rows of generate --prompts --batch */
    o.hf = hf;
    char mbuf[4096], tbuf[4096];
    if (!o.model) o.model = pc_default_path("stories260K/stories260K.bin", mbuf, sizeof mbuf);
    const pc_model_family *fam = pc_model_family_of(o.model);
    /* a llama2.c checkpoint has no tokenizer inside; Hugging Face directories and GGUF files do */
    if (!o.tokenizer && (!fam || strcmp(fam->name, "llama2c") == 0))
        o.tokenizer = pc_default_path("stories260K/tok512.bin", tbuf, sizeof tbuf);
    {
        /* OUT, and OUT.weights, which replaces the previous one as a whole */
        char wdir[8192];
        snprintf(wdir, sizeof wdir, "%s.weights", o.out);
        pc_in ins[2 + 3 * 64] = {{"--model", o.model}, {"--tokenizer", o.tokenizer}};
        pc_cli_adapter_paths *ap = calloc(64, sizeof *ap); /* the joined paths of every adapter */
        if (!ap) { fprintf(stderr, "peftc compile: out of memory\n"); return 1; }
        int nin = 2 + pc_cli_adapter_inputs("--adapter", o.adapter, ins + 2, &ap[0]);
        for (int i = 0; i < o.nnamed; i++) {
            const char *eq = strchr(o.named[i], '=');
            nin += pc_cli_adapter_inputs("--adapter", eq ? eq + 1 : o.named[i], ins + nin, &ap[i]);
        }
        pc_out outs[] = {{.flag = "-o", .path = o.out, .kind = PC_OUT_FILE},
                         {.flag = "-o (its data directory)", .path = wdir, .kind = PC_OUT_DIR, .replaced = true},
                         {.flag = "--emit-object", .path = o.object, .kind = PC_OUT_FILE}};
        int bad = pc_cli_check_outputs("peftc compile", outs, 3, ins, nin);
        free(ap);
        if (bad) return 1;
    }

    char err[4096] = "", tmp[] = "/tmp/peftc-compile-XXXXXX", wstage[8192], wfinal[8192], wold[8192], xstage[8192],
         main_c[512], obj[512], about[16384], build_id[40];
    size_t ol = strlen(o.out);
    if (ol > 4000) { fprintf(stderr, "peftc compile: -o: path too long\n"); return 1; }
    aot_paths ap;
    if (find_aot(&ap, err, sizeof err)) { fprintf(stderr, "peftc compile: %s\n", err); return 1; }
    snprintf(wfinal, sizeof wfinal, "%s.weights", o.out);
    snprintf(wstage, sizeof wstage, "%s.weights.tmp.%ld", o.out, (long)getpid());
    snprintf(wold, sizeof wold, "%s.weights.old.%ld", o.out, (long)getpid());
    snprintf(xstage, sizeof xstage, "%s.tmp.%ld", o.out, (long)getpid());
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(build_id, sizeof build_id, "%016llx%08lx", (unsigned long long)ts.tv_sec * 1000000007ull ^ (unsigned long long)ts.tv_nsec,
             (unsigned long)getpid());
    if (!mkdtemp(tmp)) { fprintf(stderr, "peftc compile: cannot create a temporary directory: %s\n", strerror(errno)); return 1; }
    snprintf(main_c, sizeof main_c, "%s/main.c", tmp);
    snprintf(obj, sizeof obj, "%s/kernels.o", tmp);
    collector c = {.self = {collect_provide, collect_release, NULL}};
    c.self.ctx = &c;
    int cache_sizes[PC_AOT_MAX_CACHES], ncache = 0;
    rc = -1;
    char idpath[8300];
    snprintf(idpath, sizeof idpath, "%s/%s", wstage, PC_AOT_BUILD_ID);
    if (prepare(&o, reg, wstage, &c, cache_sizes, &ncache, about, sizeof about, err, sizeof err)) goto done;
    if (pc_write_file_atomic(idpath, build_id, strlen(build_id), err, sizeof err)) goto done;
    {
        const char **names = calloc((size_t)c.n + 1, sizeof *names), **enames = calloc((size_t)c.ne + 1, sizeof *enames);
        int *nin = calloc((size_t)c.ne + 1, sizeof *nin), *nout = calloc((size_t)c.ne + 1, sizeof *nout);
        int r = -1;
        if (!names || !enames || !nin || !nout) {
            pc_errf(err, sizeof err, "out of memory");
        } else {
            for (int i = 0; i < c.n; i++) names[i] = c.names[i];
            for (int i = 0; i < c.ne; i++) enames[i] = c.e[i].name, nin[i] = c.e[i].nin, nout[i] = c.e[i].nout;
            r = pc_llvm_emit_object_with_entries(c.k, names, c.n, enames, nin, nout, c.ne, obj, err, sizeof err);
        }
        free(names);
        free(enames);
        free(nin);
        free(nout);
        if (r) goto done;
        if (o.object && copy_file(obj, o.object, err, sizeof err)) goto done;
    }
    if (write_main(main_c, &c, o.mode, o.batch, o.seq, cache_sizes, ncache, o.nnamed > 0, o.base_dtype, about, build_id, err, sizeof err)) goto done;
    if (run_cc(&ap, main_c, obj, xstage, err, sizeof err)) goto done;
    /* into place: the data directory first, then the executable */
    struct stat st;
    if (lstat(wfinal, &st) == 0 && rename(wfinal, wold)) {
        pc_errf(err, sizeof err, "%s: cannot replace it: %s", wfinal, strerror(errno));
        goto done;
    }
    if (rename(wstage, wfinal)) { pc_errf(err, sizeof err, "%s: %s", wfinal, strerror(errno)); goto done; }
    rm_tree(wold);
    if (rename(xstage, o.out)) { pc_errf(err, sizeof err, "%s: %s", o.out, strerror(errno)); goto done; }
    fprintf(stderr, "peftc compile: wrote %s and %s (%d kernels, %d entry function%s; %s)\n", o.out, wfinal, c.n, c.ne,
            c.ne == 1 ? "" : "s", about);
    rc = 0;
done:
    rm_tree(tmp);
    if (rc) {
        rm_tree(wstage);
        remove(xstage);
        fprintf(stderr, "peftc compile: %s\n", err[0] ? err : "failed");
    }
    free(c.k);
    free(c.names);
    for (int i = 0; i < c.ne; i++) free(c.e[i].proto);
    free(c.e);
    return rc ? 1 : 0;
}
