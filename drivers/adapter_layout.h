/* Writing several adapters as one directory in PEFT's save_pretrained layout: the adapter named
 * "default" at the root, every other one in a subdirectory named after it (PEFT's
 * `output_dir = save_directory if adapter_name == "default" else save_directory/adapter_name`),
 * each as adapter_config.json + adapter_model.safetensors copied byte for byte. PEFT reads it
 * back with PeftModel.from_pretrained(model, DIR) for "default" and
 * load_adapter(DIR/NAME, adapter_name=NAME) (or subfolder=NAME) for the others; peftc with
 * --adapter DIR (pc_session_add_adapters). */
#ifndef PEFTC_DRIVERS_ADAPTER_LAYOUT_H
#define PEFTC_DRIVERS_ADAPTER_LAYOUT_H

#include <stddef.h>

/* names[i] from the adapter directory dirs[i] (each must load as a trained adapter: config and
 * weights); names unique, without '/', not "__base__". The directory is written as a whole
 * (runtime/atomic_dir.h), replacing what was there; nothing is written on an error. */
int pc_adapters_write_layout(const char *out, const char *const *names, const char *const *dirs, int n, char *err,
                             size_t errlen);

#endif
