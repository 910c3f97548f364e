/* Writing a Hugging Face model directory (what `peftc merge` makes of an HF or GGUF model):
 * config.json, model.safetensors (f32) and the source directory's other files (tokenizer,
 * generation config), written as a whole directory (runtime/atomic_dir.h). */
#ifndef PEFTC_RUNTIME_HF_WRITE_H
#define PEFTC_RUNTIME_HF_WRITE_H

#include <peftc/types.h>
#include <stddef.h>

typedef struct {
    const char *key;
    pc_shape shape;
    const float *data;
} pc_hf_tensor;

/* config_json: the text of config.json; copy_from: a directory whose files other than weights
 * and config.json are copied (tokenizer files...), or NULL */
int pc_hf_write_model(const char *dir, const char *config_json, const pc_hf_tensor *t, int n, const char *copy_from,
                      char *err, size_t errlen);

#endif
