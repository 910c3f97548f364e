/* PEFT's multi-adapter directory layout, written (see adapter_layout.h). */
#include "drivers/adapter_layout.h"
#include "drivers/session.h"
#include "runtime/adapter_io.h"
#include "runtime/atomic_dir.h"
#include "runtime/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int copy_file(const char *from, const char *to, char *err, size_t errlen) {
    char *data;
    size_t len;
    if (pc_read_file(from, &data, &len, err, errlen)) return -1;
    pc_atomic_file *f = pc_atomic_open(to, err, errlen);
    int rc = f ? 0 : -1;
    if (f) pc_atomic_write(f, data, len); /* a write error is reported by the commit */
    if (f && pc_atomic_commit(f, err, errlen)) rc = -1;
    free(data);
    return rc;
}

int pc_adapters_write_layout(const char *out, const char *const *names, const char *const *dirs, int n, char *err,
                             size_t errlen) {
    if (n <= 0) return pc_errf(err, errlen, "no adapters to write");
    for (int i = 0; i < n; i++) {
        if (!names[i][0] || strchr(names[i], '/') || strcmp(names[i], PC_BASE_ADAPTER_NAME) == 0 ||
            strcmp(names[i], ".") == 0 || strcmp(names[i], "..") == 0 || strncmp(names[i], "checkpoint-", 11) == 0)
            return pc_errf(err, errlen, "adapter name '%s': must be non-empty, without '/', not %s, '.', '..' or "
                           "checkpoint-* (a subdirectory name)", names[i], PC_BASE_ADAPTER_NAME);
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return pc_errf(err, errlen, "two adapters are named '%s' (%s and %s)", names[i], dirs[j], dirs[i]);
        pc_adapter_files a;
        if (pc_adapter_load(dirs[i], &a, err, errlen)) return -1;
        bool weights = a.weights != NULL;
        pc_adapter_close(&a);
        if (!weights)
            return pc_errf(err, errlen, "adapter '%s': %s has no %s (a trained adapter directory is needed)", names[i],
                           dirs[i], PC_ADAPTER_WEIGHTS_NAME);
    }
    pc_dir_txn t;
    if (pc_dir_begin(&t, out, err, errlen)) return -1;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        char sub[4400], from[4400], to[4600];
        bool root = strcmp(names[i], "default") == 0;
        snprintf(sub, sizeof sub, "%s%s%s", t.stage, root ? "" : "/", root ? "" : names[i]);
        if (!root && mkdir(sub, 0755)) { rc = pc_errf(err, errlen, "%s: cannot create the directory", sub); break; }
        static const char *const files[] = {PC_ADAPTER_CONFIG_NAME, PC_ADAPTER_WEIGHTS_NAME};
        for (int k = 0; k < 2 && !rc; k++) {
            snprintf(from, sizeof from, "%s/%s", dirs[i], files[k]);
            snprintf(to, sizeof to, "%s/%s", sub, files[k]);
            rc = copy_file(from, to, err, errlen);
        }
    }
    static const char *const all[] = {"*", NULL};
    if (!rc) return pc_dir_commit(&t, all, err, errlen);
    pc_dir_abort(&t);
    return -1;
}
