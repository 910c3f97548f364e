/* PEFT adapter directories: adapter_config.json + adapter_model.safetensors, read and written
 * with PEFT's file names and key names, so adapters move between peftc and PEFT both ways. */
#ifndef PEFTC_RUNTIME_ADAPTER_IO_H
#define PEFTC_RUNTIME_ADAPTER_IO_H

#include "runtime/adapter_config.h"
#include "runtime/safetensors.h"

#define PC_ADAPTER_WEIGHTS_NAME "adapter_model.safetensors"

typedef struct {
    pc_adapter_config *cfg;
    pc_st_file *weights; /* NULL when only a config was given */
} pc_adapter_files;

/* `path` is an adapter directory (config + weights) or a config .json file (no weights). */
int pc_adapter_load(const char *path, pc_adapter_files *out, char *err, size_t errlen);
/* the same, accepting the registered custom methods custom_types[0..ncustom) as peft_type
 * (pc_adapter_config_load_ex) */
int pc_adapter_load_ex(const char *path, pc_adapter_files *out, const char *const *custom_types, size_t ncustom,
                       char *err, size_t errlen);
void pc_adapter_close(pc_adapter_files *a);

/* writes the adapter as a whole directory (runtime/atomic_dir.h): a reader sees the previous
 * adapter or this one, never a mix; other entries of an existing dir (checkpoints) are kept */
int pc_adapter_save(const char *dir, const pc_adapter_config *cfg, const pc_st_writer *weights,
                    char *err, size_t errlen);

/* writes the two files into an existing directory (a pc_dir_txn's stage) */
int pc_adapter_write_files(const char *dir, const pc_adapter_config *cfg, const pc_st_writer *weights,
                           char *err, size_t errlen);

/* mkdir -p; 0 or -1 with a message */
int pc_mkdirs(const char *dir, char *err, size_t errlen);

#endif
