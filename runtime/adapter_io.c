/* Reading and writing PEFT adapter directories. */
#include "runtime/adapter_io.h"
#include "runtime/atomic_dir.h"
#include "runtime/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int pc_mkdirs(const char *dir, char *err, size_t errlen) {
    char path[4096];
    if (!dir || !*dir) return pc_errf(err, errlen, "an empty directory name");
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) return pc_errf(err, errlen, "%s: path too long", dir);
    for (char *p = path + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(path, 0777) && errno != EEXIST) return pc_errf(err, errlen, "%s: cannot create directory: %s", path, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return pc_errf(err, errlen, "%s: not a directory", dir);
    return 0;
}

int pc_adapter_load(const char *path, pc_adapter_files *out, char *err, size_t errlen) {
    return pc_adapter_load_ex(path, out, NULL, 0, err, errlen);
}

int pc_adapter_load_ex(const char *path, pc_adapter_files *out, const char *const *custom_types, size_t ncustom,
                       char *err, size_t errlen) {
    *out = (pc_adapter_files){0};
    struct stat st;
    if (!path) return pc_errf(err, errlen, "adapter: no path");
    if (stat(path, &st)) return pc_errf(err, errlen, "%s: %s", path, strerror(errno));
    if (!(out->cfg = pc_adapter_config_load_ex(path, custom_types, ncustom, err, errlen))) return -1;
    if (S_ISDIR(st.st_mode)) {
        char w[4096];
        snprintf(w, sizeof w, "%s/%s", path, PC_ADAPTER_WEIGHTS_NAME);
        if (!(out->weights = pc_st_open(w, err, errlen))) {
            pc_adapter_close(out);
            return -1;
        }
    }
    return 0;
}

void pc_adapter_close(pc_adapter_files *a) {
    pc_adapter_config_free(a->cfg);
    pc_st_close(a->weights);
    *a = (pc_adapter_files){0};
}

int pc_adapter_write_files(const char *dir, const pc_adapter_config *cfg, const pc_st_writer *weights,
                           char *err, size_t errlen) {
    char path[4096];
    /* weights first: a config without weights would look like a complete adapter */
    if (snprintf(path, sizeof path, "%s/%s", dir, PC_ADAPTER_WEIGHTS_NAME) >= (int)sizeof path)
        return pc_errf(err, errlen, "%s: path too long", dir);
    if (pc_st_write(weights, path, err, errlen)) return -1;
    if (snprintf(path, sizeof path, "%s/%s", dir, PC_ADAPTER_CONFIG_NAME) >= (int)sizeof path)
        return pc_errf(err, errlen, "%s: path too long", dir);
    return pc_adapter_config_write(cfg, path, err, errlen);
}

int pc_adapter_save(const char *dir, const pc_adapter_config *cfg, const pc_st_writer *weights,
                    char *err, size_t errlen) {
    pc_dir_txn t;
    if (pc_dir_begin(&t, dir, err, errlen)) return -1;
    if (pc_adapter_write_files(t.stage, cfg, weights, err, errlen)) {
        pc_dir_abort(&t);
        return -1;
    }
    return pc_dir_commit(&t, NULL, err, errlen);
}
