/* Several adapters on one base model: loading them by name (PEFT's multi-adapter directory
 * layout), the active one, deleting, and the mixed application that serves all of them at once,
 * one adapter per row of a batch (%adapter_ids). */
#include "drivers/session.h"
#include "drivers/store.h"
#include "ir/ir.h"
#include "runtime/fileio.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* mirrors named[k] (or nothing, k = -1) in the session's single-adapter fields */
static void mirror(pc_session *s, int k) {
    s->active = k;
    if (k < 0) {
        s->adapter = (pc_adapter_files){0};
        s->adapter_source = NULL, s->method = NULL;
        return;
    }
    s->adapter = s->named[k].files;
    s->adapter_source = s->named[k].source, s->method = s->named[k].method;
}

int pc_session_adapter_index(const pc_session *s, const char *name) {
    if (strcmp(name, PC_BASE_ADAPTER_NAME) == 0) return s->nnamed;
    for (int i = 0; i < s->nnamed; i++)
        if (strcmp(s->named[i].name, name) == 0) return i;
    return -1;
}

void pc_session_adapter_names(const pc_session *s, char *buf, size_t len) {
    size_t n = 0;
    if (len) buf[0] = 0;
    for (int i = 0; i < s->nnamed && n < len; i++) {
        int w = snprintf(buf + n, len - n, "%s%s", i ? ", " : "", s->named[i].name);
        if (w < 0) break;
        n += (size_t)w;
    }
}

static void named_close(pc_named_adapter *a) {
    free(a->name);
    free(a->source);
    pc_adapter_close(&a->files);
    *a = (pc_named_adapter){0};
}

void pc_session_named_free(pc_session *s) {
    if (!s->named) return;
    mirror(s, -1); /* the mirrored files are the named entry's */
    for (int i = 0; i < s->nnamed; i++) named_close(&s->named[i]);
    free(s->named);
    s->named = NULL, s->nnamed = 0;
}

/* every tensor of adapter k against the base model: an evaluation graph with it, filled */
int pc_session_check_adapter(pc_session *s, int k, char *err, size_t errlen) {
    if (!s->named[k].files.weights) return 0; /* a config: the verbs that need tensors say so */
    int was = s->active;
    bool mixed = s->mixed;
    s->mixed = false;
    mirror(s, k);
    const pc_model_info *mi = &s->model.info;
    pc_build_req req = {.task = mi->encoder ? PC_TASK_SEQ_CLASSIFY : PC_TASK_LM, .batch = 1, .seq = 1,
                        .mode = PC_ADAPT_EVAL};
    char msg[4096] = "";
    pc_store st = {0};
    pc_graph *g = pc_session_build(s, &req, false, msg, sizeof msg);
    int rc = g && !pc_session_store(s, g, &st, NULL, 0, msg, sizeof msg) ? 0 : -1;
    pc_store_free(&st);
    pc_graph_free(g);
    mirror(s, was);
    s->mixed = mixed;
    if (rc) return pc_errf(err, errlen, "adapter '%s' does not fit %s: %s", s->named[k].name, s->model.path, msg);
    return 0;
}

int pc_session_add_adapter(pc_session *s, const char *name, const char *path, char *err, size_t errlen) {
    if (!name[0] || strchr(name, '/') || strcmp(name, PC_BASE_ADAPTER_NAME) == 0)
        return pc_errf(err, errlen, "--adapter %s=%s: an adapter name must be non-empty, without '/', and not %s", name,
                       path, PC_BASE_ADAPTER_NAME);
    if (pc_session_adapter_index(s, name) >= 0)
        return pc_errf(err, errlen, "two adapters are named '%s' (%s and %s): give each its own name (--adapter "
                       "NAME=DIR)", name, s->named[pc_session_adapter_index(s, name)].source, path);
    pc_named_adapter *grown = realloc(s->named, (size_t)(s->nnamed + 1) * sizeof *grown);
    if (!grown) return pc_errf(err, errlen, "out of memory");
    const bool first = !s->named; /* nothing was mirrored yet: the first becomes active */
    int was = s->active;
    s->named = grown;
    pc_named_adapter *a = &s->named[s->nnamed];
    *a = (pc_named_adapter){.name = strdup(name), .source = strdup(path)};
    if (!a->name || !a->source) { named_close(a); return pc_errf(err, errlen, "out of memory"); }
    const char *custom[64];
    size_t nc = pc_registry_custom_types(s->reg, custom, 64);
    if (pc_adapter_load_ex(path, &a->files, custom, nc, err, errlen)) { named_close(a); return -1; }
    for (size_t i = 0; i < a->files.cfg->n_warnings; i++)
        fprintf(stderr, "warning: %s: %s\n", path, a->files.cfg->warnings[i]);
    s->nnamed++;
    /* the session's config checks (method, PEFT's defaults) on this adapter */
    mirror(s, s->nnamed - 1);
    int rc = pc_session_find_method(s, err, errlen);
    a->method = s->method;
    mirror(s, first ? 0 : was);
    if (!rc) rc = pc_session_check_adapter(s, s->nnamed - 1, err, errlen);
    if (rc) {
        s->nnamed--;
        named_close(&s->named[s->nnamed]);
        mirror(s, first ? -1 : was);
        return -1;
    }
    return 0;
}

static bool has_config(const char *dir) {
    char p[4400];
    struct stat st;
    if ((size_t)snprintf(p, sizeof p, "%.4200s/%s", dir, PC_ADAPTER_CONFIG_NAME) >= sizeof p) return false;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int pc_session_add_adapters(pc_session *s, const char *spec, char *err, size_t errlen) {
    const char *eq = strchr(spec, '=');
    if (eq && !memchr(spec, '/', (size_t)(eq - spec))) { /* NAME=PATH */
        char name[256];
        if ((size_t)(eq - spec) >= sizeof name) return pc_errf(err, errlen, "--adapter %s: the name is too long", spec);
        snprintf(name, sizeof name, "%.*s", (int)(eq - spec), spec);
        return pc_session_add_adapter(s, name, eq + 1, err, errlen);
    }
    struct stat st;
    if (stat(spec, &st) || !S_ISDIR(st.st_mode) || has_config(spec)) {
        /* a config file, or a directory with an adapter at its root: "default", then its subfolders */
        if (pc_session_add_adapter(s, "default", spec, err, errlen)) return -1;
        if (stat(spec, &st) || !S_ISDIR(st.st_mode)) return 0;
    }
    /* PEFT's save_pretrained: every adapter but "default" in a subdirectory named after it */
    DIR *d = opendir(spec);
    if (!d) return pc_errf(err, errlen, "%s: cannot read the directory", spec);
    char **subs = NULL;
    int n = 0, rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        char p[4200];
        if (e->d_name[0] == '.' || strncmp(e->d_name, "checkpoint-", 11) == 0) continue;
        snprintf(p, sizeof p, "%s/%s", spec, e->d_name);
        if (stat(p, &st) || !S_ISDIR(st.st_mode) || !has_config(p)) continue;
        char **grown = realloc(subs, (size_t)(n + 1) * sizeof *grown);
        if (!grown || !(grown[n] = strdup(e->d_name))) { subs = grown ? grown : subs; rc = -1; break; }
        subs = grown, n++;
    }
    closedir(d);
    if (rc) pc_errf(err, errlen, "out of memory");
    if (!rc && n == 0 && s->nnamed == 0)
        rc = pc_errf(err, errlen, "%s: no %s there nor in a subdirectory (an adapter directory, or PEFT's "
                     "multi-adapter layout)", spec, PC_ADAPTER_CONFIG_NAME);
    if (!rc && n > 1) qsort(subs, (size_t)n, sizeof *subs, cmp_str); /* a fixed order: the directory's is not */
    for (int i = 0; i < n && !rc; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", spec, subs[i]);
        rc = pc_session_add_adapter(s, subs[i], p, err, errlen);
    }
    for (int i = 0; i < n; i++) free(subs[i]);
    free(subs);
    return rc;
}

int pc_session_set_active(pc_session *s, const char *name, char *err, size_t errlen) {
    int k = pc_session_adapter_index(s, name);
    if (k < 0) {
        char names[2048];
        pc_session_adapter_names(s, names, sizeof names);
        return pc_errf(err, errlen, "no adapter is named '%s' (loaded: %s%s%s)", name, names, s->nnamed ? ", " : "",
                       PC_BASE_ADAPTER_NAME);
    }
    mirror(s, k == s->nnamed ? -1 : k);
    return 0;
}

int pc_session_delete_adapter(pc_session *s, const char *name, char *err, size_t errlen) {
    int k = pc_session_adapter_index(s, name);
    if (k < 0 || k == s->nnamed) return pc_errf(err, errlen, "no adapter is named '%s' to delete", name);
    int act = s->active;
    mirror(s, -1);
    named_close(&s->named[k]);
    memmove(&s->named[k], &s->named[k + 1], (size_t)(s->nnamed - k - 1) * sizeof *s->named);
    s->nnamed--;
    if (act == k) act = s->nnamed ? 0 : -1;
    else if (act > k) act--;
    mirror(s, act);
    return 0;
}

int pc_session_bind_adapter_ids(const pc_session *s, const pc_graph *g, pc_exec *r, const int32_t *ids,
                                int32_t **rows, char *err, size_t errlen) {
    *rows = NULL;
    pc_val v = pc_lookup(g, "adapter_ids");
    if (v == PC_NONE) return 0;
    const pc_value *x = pc_v(g, v);
    if (x->op != PC_OP_input || x->dtype != PC_I32 || x->shape.rank != 1)
        return pc_errf(err, errlen, "%%adapter_ids is not an i32 [B] input");
    int64_t B = x->shape.dim[0];
    if (!(*rows = malloc((size_t)(B > 0 ? B : 1) * sizeof **rows))) return pc_errf(err, errlen, "out of memory");
    for (int64_t i = 0; i < B; i++) {
        int32_t id = ids ? ids[i] : s->active < 0 ? s->nnamed : s->active;
        if (id < 0 || id > s->nnamed)
            return pc_errf(err, errlen, "row %lld: adapter id %d is out of range (0..%d; %d = %s)", (long long)i, id,
                           s->nnamed, s->nnamed, PC_BASE_ADAPTER_NAME);
        (*rows)[i] = id;
    }
    if (pc_exec_bind(r, v, *rows)) return pc_errf(err, errlen, "binding %%adapter_ids failed");
    return 0;
}

pc_adapt_ctx *pc_session_mixed_adapter(const pc_session *s, pc_adapt_mode mode, char *err, size_t errlen) {
    if (s->nnamed == 0) return pc_errf(err, errlen, "a mixed-adapter batch needs named adapters (--adapter)"), NULL;
    if (mode == PC_ADAPT_TRAIN)
        return pc_errf(err, errlen, "a mixed-adapter batch is for inference, not training"), NULL;
    pc_adapt_ctx **m = calloc((size_t)s->nnamed, sizeof *m);
    const char **names = calloc((size_t)s->nnamed, sizeof *names);
    if (!m || !names) { free(m); free(names); return pc_errf(err, errlen, "out of memory"), NULL; }
    for (int i = 0; i < s->nnamed; i++) {
        const pc_named_adapter *a = &s->named[i];
        names[i] = a->name;
        if (a->files.cfg->modules_to_save.n > 0) {
            pc_errf(err, errlen, "adapter '%s' (%s) cannot be mixed in one batch: its modules_to_save copies whole "
                    "modules; select it with --active", a->name, a->source);
            goto fail;
        }
        if (!a->files.weights) {
            pc_errf(err, errlen, "adapter '%s': %s is a config file, which holds no trained tensors", a->name, a->source);
            goto fail;
        }
        if (!(m[i] = pc_adapt_new(a->method, a->files.cfg, a->source, mode, false, &s->model.info, err, errlen)))
            goto fail;
        pc_adapt_set_task(m[i], s->task_id);
    }
    /* the names stay with the session; the context borrows them */
    pc_adapt_ctx *cx = pc_adapt_new_mixed(m, s->nnamed, names, err, errlen);
    free(names);
    return cx;
fail:
    for (int i = 0; i < s->nnamed; i++) pc_adapt_free(m[i]);
    free(m);
    free(names);
    return NULL;
}

/* "<name>/<key>": the key in that adapter's file */
typedef struct {
    const pc_session *s;
} mixed_files;

static const pc_st_tensor *mixed_find(void *ctx, const char *key, const pc_st_file **from) {
    const pc_session *s = ((mixed_files *)ctx)->s;
    *from = NULL;
    const char *slash = strchr(key, '/');
    if (!slash) return NULL;
    for (int i = 0; i < s->nnamed; i++) {
        const pc_named_adapter *a = &s->named[i];
        if (strlen(a->name) != (size_t)(slash - key) || strncmp(a->name, key, (size_t)(slash - key))) continue;
        *from = a->files.weights;
        return a->files.weights ? pc_st_find(a->files.weights, slash + 1) : NULL;
    }
    return NULL;
}

int pc_session_store_mixed(const pc_session *s, const pc_graph *g, pc_store *st, char *err, size_t errlen) {
    mixed_files mf = {s};
    return pc_store_init_find(st, g, pc_session_is_base, (void *)s, mixed_find, &mf, 0, err, errlen);
}

/* a spec that needs the named path: NAME=PATH, or a directory with adapters in subdirectories */
static bool needs_names(const char *spec) {
    const char *eq = strchr(spec, '=');
    if (eq && !memchr(spec, '/', (size_t)(eq - spec))) return true;
    struct stat st;
    if (stat(spec, &st) || !S_ISDIR(st.st_mode)) return false;
    DIR *d = opendir(spec);
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d));) {
        char p[4400];
        if (e->d_name[0] == '.' || strncmp(e->d_name, "checkpoint-", 11) == 0) continue;
        if ((size_t)snprintf(p, sizeof p, "%.4000s/%s", spec, e->d_name) >= sizeof p) continue;
        found = stat(p, &st) == 0 && S_ISDIR(st.st_mode) && has_config(p);
    }
    if (d) closedir(d);
    return found;
}

int pc_session_open_named(pc_session *s, const pc_registry *reg, const char *model, const char *tokenizer,
                          const char *const *specs, int n, const char *active, bool force, int num_labels, char *err,
                          size_t errlen) {
    if (!force && !active && n <= 1 && (n == 0 || !needs_names(specs[0])))
        return pc_session_open_labels(s, reg, model, tokenizer, n ? specs[0] : NULL, num_labels, err, errlen);
    if (pc_session_open_labels(s, reg, model, tokenizer, NULL, num_labels, err, errlen)) return -1;
    for (int i = 0; i < n; i++)
        if (pc_session_add_adapters(s, specs[i], err, errlen)) goto fail;
    if (active && pc_session_set_active(s, active, err, errlen)) goto fail;
    return 0;
fail:
    pc_session_close(s);
    return -1;
}
