/* A Hugging Face model directory: config.json and its weights in safetensors, one file
 * (model.safetensors) or sharded (model.safetensors.index.json naming a file per tensor).
 *
 * Weights are read by their Hugging Face key and converted to f32 once, on first use (bf16 and
 * f16 exactly; the f32 copy is owned by the checkpoint, or the mapping itself for f32 files).
 * config.json fields are read with typed getters whose errors name the file and the field. */
#ifndef PEFTC_RUNTIME_HF_CHECKPOINT_H
#define PEFTC_RUNTIME_HF_CHECKPOINT_H

#include <peftc/types.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct pc_hf_checkpoint pc_hf_checkpoint;

/* 1 when `dir` is a directory holding config.json and model.safetensors or its index */
int pc_hf_is_model_dir(const char *dir);
/* the "model_type" of dir's config.json into buf ("" when it has none), reading nothing else
 * (families probe with it); -1 when dir is not a model directory or its config.json not a
 * JSON object */
int pc_hf_model_type(const char *dir, char *buf, size_t len);
/* dir/tokenizer.json into buf when that file exists (0), else -1 */
int pc_hf_tokenizer_path(const char *dir, char *buf, size_t len);
pc_hf_checkpoint *pc_hf_open(const char *dir, char *err, size_t errlen);
void pc_hf_close(pc_hf_checkpoint *c); /* NULL is fine */
const char *pc_hf_dir(const pc_hf_checkpoint *c);

/* config.json fields. `found` (may be NULL) is set to whether the field is present and not
 * null; absent fields give dflt. A present field of the wrong type is an error (-1). Dotted
 * names reach into objects: "rope_scaling.factor". */
int pc_hf_int(const pc_hf_checkpoint *c, const char *field, long long dflt, long long *out, bool *found, char *err,
              size_t errlen);
int pc_hf_number(const pc_hf_checkpoint *c, const char *field, double dflt, double *out, bool *found, char *err,
                 size_t errlen);
int pc_hf_bool(const pc_hf_checkpoint *c, const char *field, bool dflt, bool *out, char *err, size_t errlen);
/* the number of members of an object field or entries of a list field (id2label); absent gives
 * 0 with *found false; another type is an error */
int pc_hf_size(const pc_hf_checkpoint *c, const char *field, long long *out, bool *found, char *err, size_t errlen);
/* a token id field of config.json (bos_token_id, eos_token_id): an integer in [0, vocab), or
 * the first of a list of them; -1 when absent, null or none of those */
int pc_hf_token_id(const pc_hf_checkpoint *c, const char *field, int vocab);
/* NULL when absent (or null); the string lives as long as c */
const char *pc_hf_string(const pc_hf_checkpoint *c, const char *field, char *err, size_t errlen, int *rc);

/* config.json as text with its dtype ("torch_dtype" / "dtype") set to float32: the config of
 * the model written back in f32 (malloc'd; NULL when out of memory) */
char *pc_hf_config_text_f32(const pc_hf_checkpoint *c);
/* the same for a sequence classifier: "architectures" = [architecture] (NULL: kept), and
 * id2label / label2id of num_labels labels LABEL_i where the config's are not num_labels (0: kept) */
char *pc_hf_config_text_classifier(const pc_hf_checkpoint *c, const char *architecture, int num_labels);

/* every weight key in file order (shard by shard) */
int pc_hf_nweights(const pc_hf_checkpoint *c);
const char *pc_hf_weight_key(const pc_hf_checkpoint *c, int i);
/* the weight with this key as f32 (NULL when absent or not a floating-point tensor: *err says
 * which; err may be NULL); shape out */
const float *pc_hf_weight(pc_hf_checkpoint *c, const char *key, pc_shape *shape, char *err, size_t errlen);
/* the stored dtype name of a key ("BF16"), NULL when absent */
const char *pc_hf_weight_dtype(const pc_hf_checkpoint *c, const char *key);
/* the tensor as the file holds it when that is bf16 (the mapped bytes, no copy), else NULL */
const uint16_t *pc_hf_weight_bf16(const pc_hf_checkpoint *c, const char *key, pc_shape *shape);

#endif
