/* Hugging Face model directories: config.json + safetensors (one file or shards). */
#include "runtime/hf_checkpoint.h"
#include "runtime/fileio.h"
#include "runtime/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_NAME "config.json"
#define SINGLE_NAME "model.safetensors"
#define INDEX_NAME "model.safetensors.index.json"

typedef struct {
    const char *key;        /* the tensor's name (owned by its file) */
    pc_st_file *file;
    const pc_st_tensor *t;
    float *f32;             /* converted copy, NULL until asked (or when the file is f32) */
} hf_weight;

struct pc_hf_checkpoint {
    char *dir;
    char *config_path;
    json_t *config;
    pc_st_file **files;
    int nfiles;
    hf_weight *w;
    int n;
};

static bool regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void join(char *buf, size_t len, const char *dir, const char *name) { snprintf(buf, len, "%s/%s", dir, name); }

int pc_hf_tokenizer_path(const char *dir, char *buf, size_t len) {
    if ((size_t)snprintf(buf, len, "%s/tokenizer.json", dir) >= len) return -1;
    return regular_file(buf) ? 0 : -1;
}

int pc_hf_is_model_dir(const char *dir) {
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return 0;
    char p[4096];
    join(p, sizeof p, dir, CONFIG_NAME);
    if (!regular_file(p)) return 0;
    join(p, sizeof p, dir, SINGLE_NAME);
    if (regular_file(p)) return 1;
    join(p, sizeof p, dir, INDEX_NAME);
    return regular_file(p);
}

int pc_hf_model_type(const char *dir, char *buf, size_t len) {
    if (len) buf[0] = 0;
    if (!pc_hf_is_model_dir(dir)) return -1;
    char p[4096], *text = NULL;
    size_t n = 0;
    join(p, sizeof p, dir, CONFIG_NAME);
    if (pc_read_file(p, &text, &n, NULL, 0)) return -1;
    json_t *j = json_loadb(text, n, 0, NULL);
    free(text);
    if (!json_is_object(j)) {
        json_decref(j);
        return -1;
    }
    const char *t = json_string_value(json_object_get(j, "model_type"));
    if (t && len) snprintf(buf, len, "%s", t);
    json_decref(j);
    return 0;
}

void pc_hf_close(pc_hf_checkpoint *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) free(c->w[i].f32);
    for (int i = 0; i < c->nfiles; i++) pc_st_close(c->files[i]);
    free(c->files);
    free(c->w);
    json_decref(c->config);
    free(c->config_path);
    free(c->dir);
    free(c);
}

const char *pc_hf_dir(const pc_hf_checkpoint *c) { return c->dir; }

static hf_weight *find(const pc_hf_checkpoint *c, const char *key) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->w[i].key, key) == 0) return &c->w[i];
    return NULL;
}

/* adds a shard's tensors, refusing a key another shard has */
static int add_file(pc_hf_checkpoint *c, const char *path, char *err, size_t errlen) {
    pc_st_file *f = pc_st_open(path, err, errlen);
    if (!f) return -1;
    pc_st_file **files = realloc(c->files, ((size_t)c->nfiles + 1) * sizeof *files);
    if (!files) { pc_st_close(f); return pc_errf(err, errlen, "%s: out of memory", path); }
    c->files = files;
    c->files[c->nfiles++] = f;
    int k = pc_st_count(f);
    hf_weight *w = realloc(c->w, ((size_t)c->n + (size_t)k) * sizeof *w);
    if (!w) return pc_errf(err, errlen, "%s: out of memory", path);
    c->w = w;
    for (int i = 0; i < k; i++) {
        const pc_st_tensor *t = pc_st_get(f, i);
        if (find(c, t->name)) return pc_errf(err, errlen, "%s: tensor '%s' is also in another shard", path, t->name);
        c->w[c->n++] = (hf_weight){t->name, f, t, NULL};
    }
    return 0;
}

/* the shards the index names, each once, in the order of first appearance; every tensor the
 * index maps must be in its shard */
static int open_shards(pc_hf_checkpoint *c, const char *index, char *err, size_t errlen) {
    /* pc_read_file: regular files only (json_load_file would block on a FIFO) */
    char *text = NULL;
    size_t len = 0;
    if (pc_read_file(index, &text, &len, err, errlen)) return -1;
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    free(text);
    if (!j) return pc_errf(err, errlen, "%s:%d: %s", index, je.line, je.text);
    json_t *map = json_object_get(j, "weight_map");
    int rc = 0;
    if (!json_is_object(map) || json_object_size(map) == 0) {
        rc = pc_errf(err, errlen, "%s: field \"weight_map\": missing, empty or not an object", index);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v) {
        const char *file = json_string_value(v);
        if (!file || !*file || strchr(file, '/') || strcmp(file, "..") == 0) {
            rc = pc_errf(err, errlen, "%s: field \"weight_map\".\"%s\": not a file name in the directory", index, key);
            goto done;
        }
        bool seen = false;
        char path[4096];
        join(path, sizeof path, c->dir, file);
        for (int i = 0; i < c->nfiles && !seen; i++) seen = strcmp(pc_st_path(c->files[i]), path) == 0;
        if (!seen && (rc = add_file(c, path, err, errlen))) goto done;
    }
    json_object_foreach(map, key, v) {
        const hf_weight *w = find(c, key);
        char path[4096];
        join(path, sizeof path, c->dir, json_string_value(v));
        if (!w || strcmp(pc_st_path(w->file), path) != 0) {
            rc = pc_errf(err, errlen, "%s: tensor '%s' is not in %s, where \"weight_map\" says it is", index, key,
                         json_string_value(v));
            goto done;
        }
    }
done:
    json_decref(j);
    return rc;
}

pc_hf_checkpoint *pc_hf_open(const char *dir, char *err, size_t errlen) {
    pc_hf_checkpoint *c = calloc(1, sizeof *c);
    char path[4096];
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        pc_errf(err, errlen, "%s: out of memory", dir);
        return NULL;
    }
    join(path, sizeof path, dir, CONFIG_NAME);
    if (!(c->config_path = strdup(path))) { pc_errf(err, errlen, "%s: out of memory", dir); goto fail; }
    char *text = NULL;
    size_t len = 0;
    if (pc_read_file(path, &text, &len, err, errlen)) goto fail;
    json_error_t je;
    c->config = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!c->config || !json_is_object(c->config)) {
        if (c->config) pc_errf(err, errlen, "%s: not a JSON object", path);
        else pc_errf(err, errlen, "%s:%d: %s", path, je.line, je.text);
        goto fail;
    }
    join(path, sizeof path, dir, INDEX_NAME);
    if (regular_file(path)) {
        if (open_shards(c, path, err, errlen)) goto fail;
    } else {
        join(path, sizeof path, dir, SINGLE_NAME);
        if (add_file(c, path, err, errlen)) goto fail;
    }
    return c;
fail:
    pc_hf_close(c);
    return NULL;
}

/* the value of a dotted field, NULL when absent or null */
static json_t *field_value(const pc_hf_checkpoint *c, const char *field) {
    json_t *v = c->config;
    char part[256];
    for (const char *p = field; v && *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof part) return NULL;
        memcpy(part, p, n);
        part[n] = 0;
        v = json_is_object(v) ? json_object_get(v, part) : NULL;
        p = dot ? dot + 1 : p + n;
    }
    return json_is_null(v) ? NULL : v;
}

int pc_hf_int(const pc_hf_checkpoint *c, const char *field, long long dflt, long long *out, bool *found, char *err,
              size_t errlen) {
    json_t *v = field_value(c, field);
    if (found) *found = v != NULL;
    *out = dflt;
    if (!v) return 0;
    if (!json_is_integer(v)) return pc_errf(err, errlen, "%s: field \"%s\": not an integer", c->config_path, field);
    *out = json_integer_value(v);
    return 0;
}

int pc_hf_number(const pc_hf_checkpoint *c, const char *field, double dflt, double *out, bool *found, char *err,
                 size_t errlen) {
    json_t *v = field_value(c, field);
    if (found) *found = v != NULL;
    *out = dflt;
    if (!v) return 0;
    if (!json_is_number(v)) return pc_errf(err, errlen, "%s: field \"%s\": not a number", c->config_path, field);
    *out = json_number_value(v);
    return 0;
}

int pc_hf_bool(const pc_hf_checkpoint *c, const char *field, bool dflt, bool *out, char *err, size_t errlen) {
    json_t *v = field_value(c, field);
    *out = dflt;
    if (!v) return 0;
    if (!json_is_boolean(v)) return pc_errf(err, errlen, "%s: field \"%s\": not true or false", c->config_path, field);
    *out = json_is_true(v);
    return 0;
}

const char *pc_hf_string(const pc_hf_checkpoint *c, const char *field, char *err, size_t errlen, int *rc) {
    json_t *v = field_value(c, field);
    *rc = 0;
    if (!v) return NULL;
    if (!json_is_string(v)) {
        *rc = pc_errf(err, errlen, "%s: field \"%s\": not a string", c->config_path, field);
        return NULL;
    }
    return json_string_value(v);
}

int pc_hf_size(const pc_hf_checkpoint *c, const char *field, long long *out, bool *found, char *err, size_t errlen) {
    json_t *v = field_value(c, field);
    if (found) *found = v != NULL;
    *out = 0;
    if (!v) return 0;
    if (json_is_object(v)) *out = (long long)json_object_size(v);
    else if (json_is_array(v)) *out = (long long)json_array_size(v);
    else return pc_errf(err, errlen, "%s: field \"%s\": not an object or a list", c->config_path, field);
    return 0;
}

int pc_hf_token_id(const pc_hf_checkpoint *c, const char *field, int vocab) {
    json_t *v = json_object_get(c->config, field);
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (!json_is_integer(v)) return -1;
    json_int_t id = json_integer_value(v);
    return id >= 0 && id < vocab ? (int)id : -1;
}

char *pc_hf_config_text_f32(const pc_hf_checkpoint *c) { return pc_hf_config_text_classifier(c, NULL, 0); }

/* id2label / label2id of n labels LABEL_i (transformers' default names) */
static int set_labels(json_t *j, int n) {
    json_t *id2 = json_object(), *l2id = json_object();
    int bad = !id2 || !l2id;
    for (int i = 0; i < n && !bad; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "%d", i);
        snprintf(v, sizeof v, "LABEL_%d", i);
        bad = json_object_set_new(id2, k, json_string(v)) || json_object_set_new(l2id, v, json_integer(i));
    }
    if (bad) {
        json_decref(id2);
        json_decref(l2id);
        return -1;
    }
    json_object_del(j, "num_labels");
    return json_object_set_new(j, "id2label", id2) || json_object_set_new(j, "label2id", l2id);
}

char *pc_hf_config_text_classifier(const pc_hf_checkpoint *c, const char *architecture, int num_labels) {
    json_t *j = json_deep_copy(c->config);
    if (!j) return NULL;
    static const char *const fields[] = {"torch_dtype", "dtype"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (json_object_get(j, fields[i])) json_object_set_new(j, fields[i], json_string("float32"));
    if (architecture) {
        json_t *a = json_array();
        if (!a || json_array_append_new(a, json_string(architecture)) || json_object_set_new(j, "architectures", a)) {
            json_decref(j);
            return NULL;
        }
    }
    json_t *id2 = json_object_get(j, "id2label");
    if (num_labels > 0 && (!json_is_object(id2) || json_object_size(id2) != (size_t)num_labels) && set_labels(j, num_labels)) {
        json_decref(j);
        return NULL;
    }
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    return text;
}

int pc_hf_nweights(const pc_hf_checkpoint *c) { return c->n; }
const char *pc_hf_weight_key(const pc_hf_checkpoint *c, int i) { return i >= 0 && i < c->n ? c->w[i].key : NULL; }

const char *pc_hf_weight_dtype(const pc_hf_checkpoint *c, const char *key) {
    const hf_weight *w = find(c, key);
    return w ? w->t->dtype_name : NULL;
}

const uint16_t *pc_hf_weight_bf16(const pc_hf_checkpoint *c, const char *key, pc_shape *shape) {
    const hf_weight *w = find(c, key);
    if (!w || w->t->dtype != PC_BF16) return NULL;
    if (shape) *shape = w->t->shape;
    return w->t->data;
}

const float *pc_hf_weight(pc_hf_checkpoint *c, const char *key, pc_shape *shape, char *err, size_t errlen) {
    hf_weight *w = find(c, key);
    if (!w) {
        pc_errf(err, errlen, "%s: no tensor '%s'", c->dir, key);
        return NULL;
    }
    if (shape) *shape = w->t->shape;
    if (w->t->dtype == PC_F32) return w->t->data;
    if (!w->f32) {
        size_t n = w->t->elem_size ? w->t->nbytes / w->t->elem_size : 0;
        if (!(w->f32 = malloc((n ? n : 1) * sizeof(float)))) {
            pc_errf(err, errlen, "%s: out of memory converting tensor '%s' to f32 (%zu bytes)", c->dir, key,
                    n * sizeof(float));
            return NULL;
        }
        if (pc_st_to_f32(w->file, w->t, w->f32, err, errlen)) {
            free(w->f32);
            w->f32 = NULL;
            return NULL;
        }
    }
    return w->f32;
}
