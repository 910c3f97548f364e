/* llama2.c legacy checkpoint reader (mmap, validated) and writer (atomic, byte-exact). */
#include "runtime/llama2c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "llama2.c checkpoints are little-endian; big-endian hosts are not supported"
#endif

#define L2C_HEADER_BYTES 28
#define L2C_MAGIC_V1 0x616b3432 /* "ak42": the newer llama2.c export versions */

/* sanity limits: far above any llama2.c model, low enough that sizes cannot overflow */
#define L2C_MAX_DIM (1 << 16)
#define L2C_MAX_HIDDEN (1 << 20)
#define L2C_MAX_LAYERS 1024
#define L2C_MAX_VOCAB (1 << 22)
#define L2C_MAX_SEQ (1 << 22)

/* per-layer kinds in HF order, which is also the file's section order */
enum { K_RMS_ATT, K_WQ, K_WK, K_WV, K_WO, K_RMS_FFN, K_W1, K_W2, K_W3, K_PER_LAYER };

static const char *const layer_names[K_PER_LAYER] = {
    "input_layernorm",  "self_attn.q_proj", "self_attn.k_proj",
    "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
    "mlp.gate_proj",    "mlp.down_proj",    "mlp.up_proj"};

int pc_l2c_config_check(const pc_l2c_config *c, const char *file, char *err, size_t errlen) {
    const struct {
        const char *name;
        int v, max;
    } f[] = {{"dim", c->dim, L2C_MAX_DIM},
             {"hidden_dim", c->hidden_dim, L2C_MAX_HIDDEN},
             {"n_layers", c->n_layers, L2C_MAX_LAYERS},
             {"n_heads", c->n_heads, L2C_MAX_DIM},
             {"n_kv_heads", c->n_kv_heads, L2C_MAX_DIM},
             {"vocab_size", c->vocab_size, L2C_MAX_VOCAB},
             {"seq_len", c->seq_len, L2C_MAX_SEQ}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].v <= 0)
            return pc_errf(err, errlen, "%s: header: %s (%d) must be positive", file, f[i].name,
                           f[i].v);
        if (f[i].v > f[i].max)
            return pc_errf(err, errlen, "%s: header: %s (%d) is absurdly large (limit %d)", file,
                           f[i].name, f[i].v, f[i].max);
    }
    if (c->dim % c->n_heads)
        return pc_errf(err, errlen, "%s: header: n_heads (%d) does not divide dim (%d)", file,
                       c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads)
        return pc_errf(err, errlen, "%s: header: n_kv_heads (%d) does not divide n_heads (%d)",
                       file, c->n_kv_heads, c->n_heads);
    if ((c->dim / c->n_heads) % 2)
        return pc_errf(err, errlen,
                       "%s: header: head size dim/n_heads (%d) must be even for RoPE pairs", file,
                       c->dim / c->n_heads);
    return 0;
}

/* section sizes in floats, file order; [13] is wcls (0 when tied) */
static void section_sizes(const pc_l2c_config *c, uint64_t s[14]) {
    uint64_t L = (uint64_t)c->n_layers, d = (uint64_t)c->dim, h = (uint64_t)c->hidden_dim;
    uint64_t kv = (uint64_t)c->n_kv_heads * (d / (uint64_t)c->n_heads);
    uint64_t half = (uint64_t)c->seq_len * (d / (uint64_t)c->n_heads) / 2;
    uint64_t v = (uint64_t)c->vocab_size;
    uint64_t t[14] = {v * d,      L * d,
                      L * d * d,  L * kv * d,
                      L * kv * d, L * d * d,
                      L * d,      L * h * d,
                      L * d * h,  L * h * d,
                      d,          half,
                      half,       c->shared_classifier ? 0 : v * d};
    memcpy(s, t, sizeof t);
}

uint64_t pc_l2c_file_size(const pc_l2c_config *c) {
    if (pc_l2c_config_check(c, "", NULL, 0)) return 0;
    uint64_t s[14], n = 0;
    section_sizes(c, s);
    for (int i = 0; i < 14; i++) n += s[i];
    return L2C_HEADER_BYTES + 4 * n;
}

int pc_l2c_tensor_count(const pc_l2c_config *c) { return 1 + K_PER_LAYER * c->n_layers + 2; }

static void set_shape(pc_shape *s, int rank, int64_t d0, int64_t d1) {
    memset(s, 0, sizeof *s);
    s->rank = rank;
    s->dim[0] = d0;
    s->dim[1] = d1;
}

/* fills names/shapes; sec (section base pointers in file order) may be NULL for specs */
static void build_tensors(const pc_l2c_config *c, const float *const *sec, pc_l2c_tensor *out) {
    int64_t d = c->dim, h = c->hidden_dim, kv = (int64_t)c->n_kv_heads * (c->dim / c->n_heads);
    int64_t rows[K_PER_LAYER] = {d, d, kv, kv, d, d, h, d, h};
    int64_t cols[K_PER_LAYER] = {0, d, d, d, d, 0, d, h, d};
    int k = 0;
    memset(out, 0, sizeof *out * (size_t)pc_l2c_tensor_count(c));
    snprintf(out[k].name, PC_L2C_NAME_MAX, "model.embed_tokens.weight");
    set_shape(&out[k].shape, 2, c->vocab_size, d);
    out[k++].data = sec ? sec[0] : NULL;
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < K_PER_LAYER; j++, k++) {
            snprintf(out[k].name, PC_L2C_NAME_MAX, "model.layers.%d.%s.weight", l, layer_names[j]);
            set_shape(&out[k].shape, cols[j] ? 2 : 1, rows[j], cols[j]);
            int64_t per = rows[j] * (cols[j] ? cols[j] : 1);
            out[k].data = sec ? sec[1 + j] + (size_t)l * (size_t)per : NULL;
        }
    snprintf(out[k].name, PC_L2C_NAME_MAX, "model.norm.weight");
    set_shape(&out[k].shape, 1, d, 0);
    out[k++].data = sec ? sec[10] : NULL;
    snprintf(out[k].name, PC_L2C_NAME_MAX, "lm_head.weight");
    set_shape(&out[k].shape, 2, c->vocab_size, d);
    out[k].data = sec ? (c->shared_classifier ? sec[0] : sec[13]) : NULL;
}

void pc_l2c_tensor_specs(const pc_l2c_config *c, pc_l2c_tensor *out) {
    build_tensors(c, NULL, out);
}

void pc_l2c_close(pc_l2c_model *m) {
    if (!m) return;
    pc_mmap_close(&m->map);
    free(m->tensors);
    free(m->path);
    free(m);
}

pc_l2c_model *pc_l2c_open(const char *path, char *err, size_t errlen) {
    pc_l2c_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        pc_errf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    if (pc_mmap_open(&m->map, path, err, errlen)) goto fail;
    if (m->map.len < L2C_HEADER_BYTES) {
        pc_errf(err, errlen, "%s: header: truncated, %zu bytes, the header needs %d", path,
                m->map.len, L2C_HEADER_BYTES);
        goto fail;
    }
    int32_t h[7];
    memcpy(h, m->map.data, sizeof h);
    if ((uint32_t)h[0] == L2C_MAGIC_V1) {
        pc_errf(err, errlen,
                "%s: header: magic 'ak42' marks a versioned llama2.c export (version %d); only "
                "the legacy v0 format is supported",
                path, h[1]);
        goto fail;
    }
    pc_l2c_config *c = &m->cfg;
    *c = (pc_l2c_config){h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[5] > 0};
    if (h[5] < 0 && h[5] != INT32_MIN) c->vocab_size = -h[5];
    /* The format has no magic number: a header whose sizes are no model's, or that disagree
     * with the file's size, is most likely another kind of file, and "dim (-970066998) must be
     * positive" alone would not say so. */
    char why[512];
    if (pc_l2c_config_check(c, path, why, sizeof why)) {
        const char *reason = strstr(why, ": header: "); /* after the check's "PATH: header: " */
        pc_errf(err, errlen, "%s: not a llama2.c checkpoint (its %d-byte header is no model's: %s)", path,
                L2C_HEADER_BYTES, reason ? reason + strlen(": header: ") : why);
        goto fail;
    }
    uint64_t want = pc_l2c_file_size(c);
    if ((uint64_t)m->map.len != want) {
        pc_errf(err, errlen,
                "%s: not a llama2.c checkpoint, or a damaged one: the header (dim %d, hidden_dim %d, n_layers %d, "
                "vocab_size %d%s, seq_len %d) needs %llu bytes but the file has %zu (%s)",
                path, c->dim, c->hidden_dim, c->n_layers, c->vocab_size, c->shared_classifier ? "" : " untied",
                c->seq_len, (unsigned long long)want, m->map.len,
                (uint64_t)m->map.len < want ? "truncated" : "trailing bytes");
        goto fail;
    }
    uint64_t s[14];
    section_sizes(c, s);
    const float *sec[14];
    const float *p = (const float *)((const char *)m->map.data + L2C_HEADER_BYTES);
    for (int i = 0; i < 14; i++) {
        sec[i] = p;
        p += s[i];
    }
    m->token_embedding = sec[0];
    m->rms_att = sec[1];
    m->wq = sec[2];
    m->wk = sec[3];
    m->wv = sec[4];
    m->wo = sec[5];
    m->rms_ffn = sec[6];
    m->w1 = sec[7];
    m->w2 = sec[8];
    m->w3 = sec[9];
    m->rms_final = sec[10];
    m->freq_cis_real = sec[11];
    m->freq_cis_imag = sec[12];
    m->wcls = c->shared_classifier ? sec[0] : sec[13];
    m->n_tensors = pc_l2c_tensor_count(c);
    m->tensors = calloc((size_t)m->n_tensors, sizeof *m->tensors);
    if (!m->tensors) {
        pc_errf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    build_tensors(c, sec, m->tensors);
    return m;
fail:
    pc_l2c_close(m);
    return NULL;
}

const pc_l2c_tensor *pc_l2c_find(const pc_l2c_model *m, const char *name) {
    for (int i = 0; m && name && i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

void pc_l2c_rope_tables(const pc_l2c_config *c, float *real, float *imag) {
    int hs = c->dim / c->n_heads, half = hs / 2;
    for (int i = 0; i < half; i++) {
        /* float32 steps as in torch: 1 / (10000 ** (arange(0, hs, 2).float() / hs)) */
        float freq = 1.0f / powf(10000.0f, (float)(2 * i) / (float)hs);
        for (int pos = 0; pos < c->seq_len; pos++) {
            float a = (float)pos * freq;
            real[(size_t)pos * (size_t)half + (size_t)i] = cosf(a);
            imag[(size_t)pos * (size_t)half + (size_t)i] = sinf(a);
        }
    }
}

static int shape_str(char *buf, size_t n, pc_shape s) {
    int k = snprintf(buf, n, "[");
    for (int i = 0; i < s.rank && k >= 0 && (size_t)k < n; i++)
        k += snprintf(buf + k, n - (size_t)k, "%s%lld", i ? ", " : "", (long long)s.dim[i]);
    if (k >= 0 && (size_t)k < n) k += snprintf(buf + k, n - (size_t)k, "]");
    return k;
}

int pc_l2c_write(const char *path, const pc_l2c_config *cfg, const pc_l2c_tensor *tensors, int n,
                 const float *freq_real, const float *freq_imag, char *err, size_t errlen) {
    if (pc_l2c_config_check(cfg, path, err, errlen)) return -1;
    int nt = pc_l2c_tensor_count(cfg), rc = -1;
    pc_l2c_tensor *spec = calloc((size_t)nt, sizeof *spec);
    const float **src = calloc((size_t)nt, sizeof *src); /* data per spec index */
    float *rope = NULL;
    pc_atomic_file *af;
    if (!spec || !src) {
        pc_errf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    pc_l2c_tensor_specs(cfg, spec);
    for (int i = 0; i < n; i++) {
        const pc_l2c_tensor *t = &tensors[i];
        int j = 0;
        while (j < nt && strcmp(spec[j].name, t->name) != 0) j++;
        if (j == nt) {
            pc_errf(err, errlen, "%s: tensor '%s' is not part of a llama2.c checkpoint", path,
                    t->name);
            goto done;
        }
        if (src[j]) {
            pc_errf(err, errlen, "%s: tensor '%s' given twice", path, t->name);
            goto done;
        }
        int same = t->shape.rank == spec[j].shape.rank;
        for (int d = 0; same && d < t->shape.rank; d++)
            same = t->shape.dim[d] == spec[j].shape.dim[d];
        if (!same) {
            char a[96], b[96];
            shape_str(a, sizeof a, t->shape);
            shape_str(b, sizeof b, spec[j].shape);
            pc_errf(err, errlen, "%s: tensor '%s' has shape %s, the config needs %s", path, t->name,
                    a, b);
            goto done;
        }
        if (!t->data) {
            pc_errf(err, errlen, "%s: tensor '%s' has no data", path, t->name);
            goto done;
        }
        src[j] = t->data;
    }
    size_t emb_n = (size_t)cfg->vocab_size * (size_t)cfg->dim;
    for (int j = 0; j < nt; j++) {
        int lm_head = j == nt - 1;
        if (src[j] || (lm_head && cfg->shared_classifier)) continue;
        pc_errf(err, errlen, "%s: tensor '%s' is missing%s", path, spec[j].name,
                lm_head ? " (the config has an untied classifier)" : "");
        goto done;
    }
    if (cfg->shared_classifier && src[nt - 1] && src[nt - 1] != src[0] &&
        memcmp(src[nt - 1], src[0], emb_n * sizeof(float)) != 0) {
        /* writing it would silently drop a changed lm_head */
        pc_errf(err, errlen,
                "%s: lm_head.weight differs from model.embed_tokens.weight but the config ties "
                "them (set shared_classifier = 0)",
                path);
        goto done;
    }
    size_t half = (size_t)cfg->seq_len * (size_t)(cfg->dim / cfg->n_heads) / 2;
    if (!freq_real || !freq_imag) {
        rope = malloc(2 * half * sizeof *rope);
        if (!rope) {
            pc_errf(err, errlen, "%s: out of memory", path);
            goto done;
        }
        pc_l2c_rope_tables(cfg, rope, rope + half);
        freq_real = rope;
        freq_imag = rope + half;
    }

    af = pc_atomic_open(path, err, errlen);
    if (!af) goto done;
    int32_t h[7] = {cfg->dim,        cfg->hidden_dim,
                    cfg->n_layers,   cfg->n_heads,
                    cfg->n_kv_heads, cfg->shared_classifier ? cfg->vocab_size : -cfg->vocab_size,
                    cfg->seq_len};
    pc_atomic_write(af, h, sizeof h);
    pc_atomic_write(af, src[0], emb_n * sizeof(float));
    for (int k = 0; k < K_PER_LAYER; k++)
        for (int l = 0; l < cfg->n_layers; l++) {
            const pc_l2c_tensor *s = &spec[1 + K_PER_LAYER * l + k];
            size_t cnt = (size_t)s->shape.dim[0];
            if (s->shape.rank == 2) cnt *= (size_t)s->shape.dim[1];
            pc_atomic_write(af, src[1 + K_PER_LAYER * l + k], cnt * sizeof(float));
        }
    pc_atomic_write(af, src[nt - 2], (size_t)cfg->dim * sizeof(float));
    pc_atomic_write(af, freq_real, half * sizeof(float));
    pc_atomic_write(af, freq_imag, half * sizeof(float));
    if (!cfg->shared_classifier) pc_atomic_write(af, src[nt - 1], emb_n * sizeof(float));
    rc = pc_atomic_commit(af, err, errlen);
done:
    free(rope);
    free(src);
    free(spec);
    return rc;
}
