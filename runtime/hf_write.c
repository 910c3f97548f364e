/* Hugging Face model directories out: config, f32 safetensors, the source's other files. */
#include "runtime/hf_write.h"
#include "runtime/atomic_dir.h"
#include "runtime/fileio.h"
#include "runtime/safetensors.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* weights and the config are written anew; everything else a model directory holds is copied */
static bool is_replaced(const char *name) {
    size_t n = strlen(name);
    return strcmp(name, "config.json") == 0 || (n > 12 && strcmp(name + n - 12, ".safetensors") == 0) ||
           strcmp(name, "model.safetensors.index.json") == 0 || (n > 4 && strcmp(name + n - 4, ".bin") == 0) ||
           strcmp(name, "pytorch_model.bin.index.json") == 0 || name[0] == '.';
}

static int copy_others(const char *from, const char *to, char *err, size_t errlen) {
    DIR *d = opendir(from);
    if (!d) return pc_errf(err, errlen, "%s: cannot read the directory", from);
    int rc = 0;
    char src[4200], dst[4200];
    for (struct dirent *e; !rc && (e = readdir(d));) {
        if (is_replaced(e->d_name)) continue;
        snprintf(src, sizeof src, "%s/%s", from, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", to, e->d_name);
        struct stat st;
        if (stat(src, &st) || !S_ISREG(st.st_mode)) continue;
        char *data = NULL;
        size_t len = 0;
        rc = pc_read_file(src, &data, &len, err, errlen);
        if (!rc) rc = pc_write_file_atomic(dst, data, len, err, errlen);
        free(data);
    }
    closedir(d);
    return rc;
}

int pc_hf_write_model(const char *dir, const char *config_json, const pc_hf_tensor *t, int n, const char *copy_from,
                      char *err, size_t errlen) {
    pc_dir_txn txn;
    if (pc_dir_begin(&txn, dir, err, errlen)) return -1;
    pc_st_writer *w = pc_st_writer_new();
    int rc = w ? 0 : pc_errf(err, errlen, "%s: out of memory", dir);
    for (int i = 0; !rc && i < n; i++) rc = pc_st_writer_add(w, t[i].key, PC_F32, t[i].shape, t[i].data, err, errlen);
    if (!rc) rc = pc_st_writer_meta(w, "format", "pt", err, errlen);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", txn.stage);
    if (!rc) rc = pc_st_write(w, path, err, errlen);
    pc_st_writer_free(w);
    snprintf(path, sizeof path, "%s/config.json", txn.stage);
    if (!rc) rc = pc_write_file_atomic(path, config_json, strlen(config_json), err, errlen);
    if (!rc && copy_from) rc = copy_others(copy_from, txn.stage, err, errlen);
    if (rc) {
        pc_dir_abort(&txn);
        return -1;
    }
    /* the whole directory is the new model: a previous model's shards must not stay beside it */
    return pc_dir_commit(&txn, (const char *const[]){"*", NULL}, err, errlen);
}
