/* Text IR: printer/parser round trips, the verifier, DOT export, and malformed inputs. */
#include "cu_main.h"

#include "ir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const pc_print_opts NOLOC = {0, 0}, LOC = {0, 1};

/* a heap copy of exactly len bytes, no NUL terminator: ASan catches any read past len */
static char *exact_copy(const char *s, size_t len) {
    char *p = malloc(len ? len : 1);
    if (len) memcpy(p, s, len);
    return p;
}

static pc_graph *parse_exact(const char *text, size_t len, char **err) {
    char *buf = exact_copy(text, len);
    pc_graph *g = pc_parse(buf, len, "t.pir", err);
    free(buf);
    return g;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

/* every line of a diagnostic text is "FILE:LINE[:COL]: error: ..." */
static int well_formed_errors(const char *s, const char *file) {
    if (!s || !*s) return 0;
    while (*s) {
        const char *nl = strchr(s, '\n');
        if (!nl) return 0;
        size_t fl = strlen(file);
        if (strncmp(s, file, fl) != 0 || s[fl] != ':') return 0;
        const char *e = strstr(s, ": error: ");
        if (!e || e > nl) return 0;
        for (const char *p = s + fl; p < e; p++)
            if (!(*p == ':' || (*p >= '0' && *p <= '9'))) return 0;
        s = nl + 1;
    }
    return 1;
}

/* print -> parse -> print must be byte-identical, the parsed graph must verify */
static void check_roundtrip(const pc_graph *g, pc_print_opts opts) {
    char *t1 = pc_print(g, opts);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t1);
    char *err = NULL;
    pc_graph *g2 = parse_exact(t1, strlen(t1), &err);
    if (!g2) fprintf(stderr, "\nparse failed:\n%s\n--- text ---\n%s\n", err, t1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g2);
    CU_ASSERT_PTR_NULL(err);
    char *verr = NULL;
    int nv = pc_verify(g2, &verr);
    if (nv) fprintf(stderr, "\nverify failed:\n%s\n", verr);
    CU_ASSERT_EQUAL(nv, 0);
    free(verr);
    char *t2 = pc_print(g2, opts);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t2);
    if (strcmp(t1, t2) != 0) fprintf(stderr, "\nround trip differs:\n--- first ---\n%s--- second ---\n%s", t1, t2);
    CU_ASSERT_STRING_EQUAL(t1, t2);
    /* and once more through the parser (the fixed point) */
    pc_graph *g3 = parse_exact(t2, strlen(t2), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g3);
    char *t3 = pc_print(g3, opts);
    CU_ASSERT_STRING_EQUAL(t2, t3);
    free(t1);
    free(t2);
    free(t3);
    pc_graph_free(g2);
    pc_graph_free(g3);
}

static void check_all_forms(const pc_graph *g) {
    CU_ASSERT_PTR_NULL(pc_graph_error(g));
    if (pc_graph_error(g)) fprintf(stderr, "\nbuild error: %s\n", pc_graph_error(g));
    char *err = NULL;
    int nv = pc_verify(g, &err);
    if (nv) fprintf(stderr, "\nverify (DSL graph) failed:\n%s\n", err);
    CU_ASSERT_EQUAL(nv, 0);
    CU_ASSERT_PTR_NULL(err);
    free(err);
    check_roundtrip(g, NOLOC);
    check_roundtrip(g, LOC);
    check_roundtrip(g, (pc_print_opts){16, 1});
    check_roundtrip(g, (pc_print_opts){1, 0});
    char *dot = pc_to_dot(g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dot);
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "digraph"));
    CU_ASSERT_EQUAL(dot[strlen(dot) - 2], '}');
    free(dot);
}

/* ---- graphs built with the DSL ---- */
static pc_graph *build_mlp(void) {
    pc_graph *g = pc_graph_new("mlp");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(4, 8));
    pc_val t = pc_input(g, "targets", PC_I32, PC_SHAPE(4));
    pc_val hp = pc_input(g, "hp", PC_F32, PC_SHAPE(8));
    pc_val w1 = pc_param(g, "w1", "mlp.fc1.weight", PC_F32, PC_SHAPE(16, 8), PC_FROZEN, (pc_init){0});
    pc_val b1 = pc_param(g, "b1", "mlp.fc1.bias", PC_F32, PC_SHAPE(16), PC_TRAINABLE, (pc_init){PC_INIT_ZEROS, 0, 0});
    pc_val la = pc_param(g, "fc1.lora_A", "mlp.fc1.lora_A.weight", PC_F32, PC_SHAPE(2, 8), PC_TRAINABLE,
                         (pc_init){PC_INIT_KAIMING_UNIFORM, sqrt(5.0), 0});
    pc_val lb = pc_param(g, "fc1.lora_B", "mlp.fc1.lora_B.weight", PC_F32, PC_SHAPE(16, 2), PC_TRAINABLE,
                         (pc_init){PC_INIT_ZEROS, 0, 0});
    pc_val w2 = pc_param(g, "w2", "mlp.fc2.weight", PC_F32, PC_SHAPE(10, 16), PC_FROZEN,
                         (pc_init){PC_INIT_NORMAL, 0.02, 0});
    pc_val h = pc_matmul(g, x, w1, 0, 1);
    pc_val d = pc_matmul(g, pc_matmul(g, x, la, 0, 1), lb, 0, 1);
    h = pc_add(g, pc_add(g, h, pc_scale(g, d, 2.0, 0.0)), b1);
    h = pc_gelu(g, h, 1);
    pc_val logits = pc_matmul(g, h, w2, 0, 1);
    pc_set_name(g, logits, "logits");
    pc_val loss = pc_cross_entropy(g, logits, t, -100, 0);
    pc_set_name(g, loss, "loss");
    pc_mark_loss(g, loss);
    pc_mark_output(g, logits);
    /* an optimizer step for b1 */
    pc_val m = pc_state(g, "b1.m", "mlp.fc1.bias.adam_m", PC_F32, PC_SHAPE(16), (pc_init){PC_INIT_ZEROS, 0, 0});
    pc_val v = pc_state(g, "b1.v", "mlp.fc1.bias.adam_v", PC_F32, PC_SHAPE(16), (pc_init){PC_INIT_UNIFORM, -0.5, 1.0 / 3});
    pc_val gr = pc_sum(g, pc_add(g, pc_scale(g, h, 1.0, 0.0), pc_scalar(g, 0.0f)), 1, (int64_t[]){0}, 0);
    pc_val gs = pc_scalar(g, 1.0f);
    pc_val m2 = pc_op(g, "adamw_m", 4, (pc_val[]){m, gr, hp, gs}, 0, NULL);
    pc_val v2 = pc_op(g, "adamw_v", 4, (pc_val[]){v, gr, hp, gs}, 0, NULL);
    pc_val b2 = pc_op(g, "adamw_p", 4, (pc_val[]){b1, m2, v2, hp}, 0, NULL);
    pc_set_name(g, b2, "b1.next");
    pc_add_update(g, b1, b2);
    pc_add_update(g, m, m2);
    pc_add_update(g, v, v2);
    return g;
}

static pc_graph *build_attention(void) {
    pc_graph *g = pc_graph_new("attn.block-0");
    pc_val h = pc_input(g, "h", PC_F32, PC_SHAPE(2, 8, 64));
    pc_val pos = pc_input(g, "pos", PC_I32, PC_SHAPE(8));
    pc_val wq = pc_param(g, "w.q.0", "model.layers.0.self_attn.q_proj.weight", PC_F32, PC_SHAPE(64, 64), PC_FROZEN, (pc_init){0});
    pc_val wk = pc_param(g, "w.k.0", "model.layers.0.self_attn.k_proj.weight", PC_F32, PC_SHAPE(64, 64), PC_FROZEN, (pc_init){0});
    pc_val wv = pc_param(g, "w.v.0", "model.layers.0.self_attn.v_proj.weight", PC_F32, PC_SHAPE(64, 64), PC_FROZEN, (pc_init){0});
    pc_val wn = pc_param(g, "w.norm", "model.layers.0.input_layernorm.weight", PC_F32, PC_SHAPE(64), PC_FROZEN,
                         (pc_init){PC_INIT_ONES, 0, 0});
    pc_val xn = pc_rmsnorm(g, h, wn, 1e-6);
    int64_t perm[4] = {0, 2, 1, 3};
    pc_val q = pc_reshape(g, pc_matmul(g, xn, wq, 0, 1), PC_SHAPE(2, 8, 4, 16));
    pc_val k = pc_reshape(g, pc_matmul(g, xn, wk, 0, 1), PC_SHAPE(2, 8, 4, 16));
    pc_val v = pc_reshape(g, pc_matmul(g, xn, wv, 0, 1), PC_SHAPE(2, 8, 4, 16));
    q = pc_transpose(g, pc_rope(g, q, pos, 10000.0, 0, 0), 4, perm);
    k = pc_transpose(g, pc_rope(g, k, pos, 500000.0, 1, 0), 4, perm);
    v = pc_transpose(g, v, 4, perm);
    pc_val s = pc_scale(g, pc_matmul(g, q, k, 0, 1), 0.25, 0.0);
    s = pc_causal_mask(g, s, -INFINITY);
    pc_val p = pc_softmax(g, s, 3);
    pc_val o = pc_matmul(g, p, v, 0, 0);
    o = pc_reshape(g, pc_transpose(g, o, 4, perm), PC_SHAPE(2, 8, 64));
    pc_val out = pc_add(g, h, o);
    pc_set_name(g, out, "out");
    pc_mark_output(g, out);
    pc_mark_output(g, p);
    return g;
}

static pc_graph *build_consts(void) {
    pc_graph *g = pc_graph_new("consts");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(3));
    float fv[8] = {0.5f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f, 3.4028235e38f, 0.1f};
    int32_t iv[5] = {INT32_MIN, INT32_MAX, 0, -1, 42};
    float big[40];
    for (int i = 0; i < 40; i++) big[i] = (float)i / 7.0f;
    uint16_t bf[3] = {0x3f80, 0xc000, 0x7f80}; /* 1, -2, inf */
    pc_val c0 = pc_scalar(g, 0.5f);
    pc_val c1 = pc_const(g, PC_F32, PC_SHAPE(8), fv);
    pc_val c2 = pc_const(g, PC_I32, PC_SHAPE(5), iv);
    pc_val c3 = pc_const(g, PC_F32, PC_SHAPE(4096), NULL);
    pc_val c4 = pc_const(g, PC_F32, PC_SHAPE(2, 20), big);
    pc_val c5 = pc_const(g, PC_BF16, PC_SHAPE(3), bf);
    pc_val c6 = pc_const(g, PC_F32, PC_SHAPE(0), NULL);
    pc_val c7 = pc_const(g, PC_F32, PC_SHAPE(0), fv);
    pc_val c8 = pc_const(g, PC_I32, PC_SCALAR, iv);
    pc_val c9 = pc_const(g, PC_F32, PC_SHAPE(1, 1), fv);
    pc_set_name(g, c3, "c.elided");
    (void)c1; (void)c2; (void)c4; (void)c5; (void)c6; (void)c7; (void)c8; (void)c9;
    pc_val y = pc_mul(g, x, c0);
    pc_val z = pc_add(g, pc_slice(g, c1, 0, 0, 3), y);
    pc_mark_output(g, z);
    pc_mark_output(g, c3);
    pc_val k = pc_param(g, "odd", "weird \"key\" \\ with\nnewline\ttab\x01 and // slashes", PC_F32, PC_SCALAR,
                        PC_TRAINABLE, (pc_init){PC_INIT_UNIFORM, -1e-300, 1e300});
    pc_val st = pc_state(g, "st", "utf8 \xc3\xa9t\xc3\xa9", PC_F32, PC_SCALAR, (pc_init){PC_INIT_NORMAL, 1.0 / 3.0, 0});
    pc_add_update(g, k, st);
    return g;
}

/* every op of ops.def at least once, with non-default attributes */
static pc_graph *build_all_ops(void) {
    pc_graph *g = pc_graph_new("all_ops");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(2, 3));
    pc_val y = pc_input(g, "y", PC_F32, PC_SHAPE(3));
    pc_val ids = pc_input(g, "ids", PC_I32, PC_SHAPE(2, 3));
    pc_val seed = pc_input(g, "seed", PC_I32, PC_SCALAR);
    pc_val hp = pc_input(g, "hp", PC_F32, PC_SHAPE(8));
    pc_val xr = pc_input(g, "xr", PC_F32, PC_SHAPE(1, 4, 2, 8));
    pc_val pos = pc_input(g, "pos", PC_I32, PC_SHAPE(4));
    pc_val logits = pc_input(g, "logits", PC_F32, PC_SHAPE(2, 3, 5));
    pc_val r[80];
    int n = 0;
    r[n++] = pc_add(g, x, y);
    r[n++] = pc_sub(g, x, y);
    r[n++] = pc_mul(g, x, y);
    r[n++] = pc_div(g, x, y);
    r[n++] = pc_maximum(g, x, y);
    r[n++] = pc_minimum(g, ids, ids);
    r[n++] = pc_eq(g, x, y);
    r[n++] = pc_lt(g, ids, ids);
    r[n++] = pc_gt(g, x, y);
    r[n++] = pc_where(g, pc_gt(g, x, y), x, y);
    r[n++] = pc_neg(g, x);
    r[n++] = pc_stop_gradient(g, x);
    r[n++] = pc_scale(g, x, 2.5, -0.125);
    r[n++] = pc_exp(g, x);
    r[n++] = pc_log(g, x);
    r[n++] = pc_sqrt(g, x);
    r[n++] = pc_rsqrt(g, x);
    r[n++] = pc_square(g, x);
    r[n++] = pc_abs(g, x);
    r[n++] = pc_tanh(g, x);
    r[n++] = pc_sigmoid(g, x);
    r[n++] = pc_relu(g, x);
    r[n++] = pc_gelu(g, x, 1);
    r[n++] = pc_silu(g, x);
    r[n++] = pc_cast(g, x, PC_I32);
    r[n++] = pc_dropout(g, x, seed, 0.1, 7);
    r[n++] = pc_sum(g, x, 1, (int64_t[]){1}, 1);
    r[n++] = pc_mean(g, x, 2, (int64_t[]){0, 1}, 0);
    r[n++] = pc_max(g, x, 1, (int64_t[]){-1}, 0);
    r[n++] = pc_softmax(g, x, 0);
    r[n++] = pc_log_softmax(g, x, 0);
    r[n++] = pc_rmsnorm(g, x, y, 1e-6);
    r[n++] = pc_layernorm(g, x, y, y, 1e-3);
    r[n++] = pc_matmul(g, x, x, 1, 0);
    r[n++] = pc_kron(g, x, x);
    r[n++] = pc_reshape(g, x, PC_SHAPE(3, 2));
    r[n++] = pc_transpose(g, x, 2, (int64_t[]){1, 0});
    pc_val bc = pc_broadcast(g, y, PC_SHAPE(4, 3));
    r[n++] = bc;
    r[n++] = pc_sum_to(g, bc, PC_SHAPE(1, 3));
    r[n++] = pc_slice(g, x, 1, 1, 3);
    r[n++] = pc_pad(g, x, 0, 1, 2);
    r[n++] = pc_concat(g, 3, (pc_val[]){x, x, x}, 1);
    pc_val table = pc_param(g, "table", "embed.weight", PC_F32, PC_SHAPE(10, 4), PC_FROZEN, (pc_init){0});
    pc_val emb = pc_embedding(g, table, ids);
    r[n++] = emb;
    r[n++] = pc_embedding_grad(g, ids, emb, 10);
    r[n++] = pc_rope(g, xr, pos, 500.0, 1, 1);
    r[n++] = pc_causal_mask(g, pc_matmul(g, x, x, 0, 1), -1e9);
    pc_val ce = pc_cross_entropy(g, logits, ids, -1, 1);
    r[n++] = ce;
    r[n++] = pc_op(g, "cross_entropy_grad", 3, (pc_val[]){logits, ids, ce}, 2,
                   (const char *[]){"ignore_index=-1", "reduction=1"});
    r[n++] = pc_cross_entropy(g, logits, ids, 3, 2);
    pc_val p = pc_param(g, "p", "p.weight", PC_F32, PC_SHAPE(2, 3), PC_TRAINABLE, (pc_init){PC_INIT_NORMAL, 0.02, 0});
    pc_val m = pc_state(g, "p.m", "p.weight.m", PC_F32, PC_SHAPE(2, 3), (pc_init){PC_INIT_ZEROS, 0, 0});
    pc_val v = pc_state(g, "p.v", "p.weight.v", PC_F32, PC_SHAPE(2, 3), (pc_init){PC_INIT_ZEROS, 0, 0});
    pc_val grad = pc_mul(g, p, x);
    pc_val gs = pc_op(g, "clip_coef", 2, (pc_val[]){pc_sum(g, pc_square(g, grad), 0, NULL, 0), hp}, 0, NULL);
    pc_val m2 = pc_op(g, "adamw_m", 4, (pc_val[]){m, grad, hp, gs}, 0, NULL);
    pc_val v2 = pc_op(g, "adamw_v", 4, (pc_val[]){v, grad, hp, gs}, 0, NULL);
    pc_val p2 = pc_op(g, "adamw_p", 4, (pc_val[]){p, m2, v2, hp}, 0, NULL);
    pc_add_update(g, p, p2);
    pc_add_update(g, m, m2);
    pc_add_update(g, v, v2);
    for (int i = 0; i < n; i++) pc_mark_output(g, r[i]);
    pc_val loss = pc_mean(g, r[0], 0, NULL, 0);
    pc_mark_loss(g, loss);
    return g;
}

static void test_mlp(void) {
    pc_graph *g = build_mlp();
    check_all_forms(g);
    pc_graph_free(g);
}

static void test_attention(void) {
    pc_graph *g = build_attention();
    check_all_forms(g);
    char *t = pc_print(g, NOLOC);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "graph @attn.block-0(%h: f32[2,8,64], %pos: i32[8]) -> (%out: f32[2,8,64], %"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "{transpose_b=1} : f32[2,8,64]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "{perm=[0,2,1,3]} : f32[2,4,8,16]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "{theta=5e+05, style=1} : f32[2,8,4,16]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "{fill=-inf} : f32[2,4,8,8]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "{eps=1e-06} : f32[2,8,64]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "{alpha=0.25} : f32[2,4,8,8]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "{axis=3} : f32[2,4,8,8]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "{shape=[2,8,4,16]}"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"model.layers.0.self_attn.q_proj.weight\"\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "init=ones\n"));
    free(t);
    t = pc_print(g, LOC);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " : f32[2,8,64]  // " __FILE__ ":"));
    free(t);
    pc_graph_free(g);
}

static void test_consts(void) {
    pc_graph *g = build_consts();
    check_all_forms(g);
    char *t = pc_print(g, NOLOC);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " = const f32[] 0.5\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " = const f32[8] [0.5, -0, inf, -inf, nan, 1.40129846e-45, 3.40282347e+38, 0.100000001]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " = const i32[5] [-2147483648, 2147483647, 0, -1, 42]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "%c.elided = const f32[4096] elided\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " = const bf16[3] [1, -2, inf]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " = const f32[0] elided\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " = const f32[0] []\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " = const i32[] -2147483648\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " = const f32[1,1] [0.5]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"weird \\\"key\\\" \\\\ with\\nnewline\\ttab\\u0001 and // slashes\" init=uniform(-1e-300, 1e+300)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "init=normal(0.3333333333333333)\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "  update %odd <- %st\n}\n"));
    free(t);
    /* eliding */
    t = pc_print(g, (pc_print_opts){16, 0});
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " = const f32[2,20] elided\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " = const f32[8] [0.5,"));
    free(t);
    /* parsed values are bit-exact */
    t = pc_print(g, NOLOC);
    char *err = NULL;
    pc_graph *g2 = pc_parse(t, strlen(t), "c.pir", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g2);
    for (int i = 0; i < g->nvals; i++) {
        const pc_value *a = &g->vals[i];
        if (a->op != PC_OP_const) continue;
        pc_val j = pc_lookup(g2, a->name);
        CU_ASSERT_FATAL(j != PC_NONE);
        const pc_value *b = &g2->vals[j];
        CU_ASSERT_EQUAL(a->dtype, b->dtype);
        CU_ASSERT(pc_shape_eq(a->shape, b->shape));
        CU_ASSERT_EQUAL(!a->data, !b->data);
        if (a->data && b->data) {
            size_t nb = (size_t)pc_shape_numel(a->shape) * pc_dtype_size(a->dtype);
            if (a->dtype == PC_F32) { /* NaN payloads may differ; compare the rest bit-exactly */
                for (size_t k = 0; k < nb / 4; k++) {
                    float fa = ((float *)a->data)[k], fb = ((float *)b->data)[k];
                    CU_ASSERT(isnan(fa) ? isnan(fb) : memcmp(&fa, &fb, 4) == 0);
                }
            } else CU_ASSERT(memcmp(a->data, b->data, nb) == 0);
        }
    }
    pc_val k = pc_lookup_key(g2, "weird \"key\" \\ with\nnewline\ttab\x01 and // slashes");
    CU_ASSERT(k != PC_NONE && g2->vals[k].init.a == -1e-300 && g2->vals[k].init.b == 1e300);
    CU_ASSERT(pc_lookup_key(g2, "utf8 \xc3\xa9t\xc3\xa9") != PC_NONE);
    pc_graph_free(g2);
    free(t);
    pc_graph_free(g);
}

static void test_all_ops(void) {
    pc_graph *g = build_all_ops();
    CU_ASSERT_PTR_NULL_FATAL(pc_graph_error(g));
    bool seen[PC_OP_COUNT] = {0};
    for (int i = 0; i < g->nvals; i++) seen[g->vals[i].op] = true;
    seen[PC_OP_const] = true; /* covered by test_consts */
    for (int op = 0; op < PC_OP_COUNT; op++) {
        if (!seen[op]) fprintf(stderr, "\nop %s is not covered\n", pc_op_get((pc_opcode)op)->name);
        CU_ASSERT(seen[op]);
    }
    /* every non-default attribute shows up */
    char *t = pc_print(g, NOLOC);
    const char *want[] = {"{alpha=2.5, beta=-0.125}", "{approximate=1}", "{to=1} : i32[2,3]", "{p=0.1, salt=7}",
                          "{axes=[1], keepdim=1} : f32[2,1]", "{axes=[0,1]} : f32[]", "{axes=[-1]} : f32[2]",
                          "softmax %x {axis=0}", "log_softmax %x {axis=0}", "{eps=1e-06}", "{eps=0.001}",
                          "{transpose_a=1} : f32[3,3]", "kron %x, %x : f32[4,9]", "{shape=[3,2]}", "{perm=[1,0]}",
                          "{shape=[4,3]}", "{shape=[1,3]}", "{axis=1, start=1, end=3} : f32[2,2]",
                          "{before=1, after=2} : f32[5,3]", "concat %x, %x, %x {axis=1} : f32[2,9]",
                          "{rows=10} : f32[10,4]", "{theta=5e+02, style=1, inverse=1}", "{fill=-1e+09}",
                          "{ignore_index=-1, reduction=1} : f32[]", "{ignore_index=-1, reduction=1} : f32[2,3,5]",
                          "{ignore_index=3, reduction=2} : f32[2,3]", "clip_coef", "adamw_p %p, "};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        if (!strstr(t, want[i])) fprintf(stderr, "\nmissing '%s'\n", want[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(t, want[i]));
    }
    free(t);
    check_all_forms(g);
    pc_graph_free(g);
}

/* ---- hand-written text ---- */
static const char *const SAMPLE =
    "// a training step, by hand\n"
    "\n"
    "graph @train(%tokens: i32[8,64], %targets: i32[8,64], %hp: f32[8]) -> (%loss: f32[] loss, %logits: f32[8,64,16]) {\n"
    "  %w.q.0 = param frozen f32[64,64] \"model.layers.0.self_attn.q_proj.weight\"      // llama.c:88\n"
    "  %a = param trainable f32[8,64] \"x.lora_A.weight\" init=kaiming_uniform(2.2360679774997898)\n"
    "  %m = state f32[8,64] \"x.lora_A.weight.adam_m\" init=zeros\n"
    "  %emb = param frozen f32[512,64] \"tok_embeddings.weight\"\n"
    "  %c = const f32[] 0.5\n"
    "  %c2 = const i32[3] [1, 2, 3]\n"
    "  %c3 = const f32[4096] elided\n"
    "\t%15 = embedding %emb,   %tokens : f32[8,64,64]   // TODO: not a location\n"
    "  %17 = matmul %15, %w.q.0 {transpose_b=1} : f32[8,64,64]      // llama.c:91\n"
    "  %18 = sum %17 {axes=[0,1], keepdim=1} : f32[1,1,64]\n"
    "  %19 = concat %a, %a, %a {axis=1} : f32[8,192]\n"
    "  %wo = param frozen f32[16,64] \"out.weight\" // \"quoted\":12\n"
    "  %logits = matmul %17, %wo { transpose_b = 1 } : f32[8,64,16]\n"
    "  %loss = cross_entropy %logits, %targets : f32[]\n"
    "  %m.next = scale %m {alpha=0.9} : f32[8,64]\n"
    "  update %m <- %m.next\n"
    "}\n"
    "// trailing comment\n";

static void test_parse_sample(void) {
    char *err = NULL;
    pc_graph *g = parse_exact(SAMPLE, strlen(SAMPLE), &err);
    if (!g) fprintf(stderr, "\n%s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_PTR_NULL(err);
    char *verr = NULL;
    CU_ASSERT_EQUAL(pc_verify(g, &verr), 0);
    if (verr) fprintf(stderr, "\n%s\n", verr);
    free(verr);
    CU_ASSERT_STRING_EQUAL(g->name, "train");
    CU_ASSERT_EQUAL(g->noutputs, 2);
    pc_val loss = pc_lookup(g, "loss"), w = pc_lookup(g, "w.q.0"), mm = pc_lookup(g, "17");
    CU_ASSERT_FATAL(loss != PC_NONE && w != PC_NONE && mm != PC_NONE);
    CU_ASSERT_EQUAL(g->outputs[0], loss);
    CU_ASSERT(g->vals[loss].flags & PC_LOSS);
    CU_ASSERT(g->vals[loss].flags & PC_OUTPUT);
    /* locations: the comment wins, otherwise the text position */
    CU_ASSERT_STRING_EQUAL(g->vals[w].loc.file, "llama.c");
    CU_ASSERT_EQUAL(g->vals[w].loc.line, 88);
    CU_ASSERT_EQUAL(g->vals[w].loc.col, 0);
    CU_ASSERT_EQUAL(g->vals[mm].loc.line, 91);
    pc_val e = pc_lookup(g, "15");
    CU_ASSERT_STRING_EQUAL(g->vals[e].loc.file, "t.pir");
    CU_ASSERT_EQUAL(g->vals[e].loc.line, 11);
    CU_ASSERT_EQUAL(g->vals[e].loc.col, 2);
    pc_val wo = pc_lookup(g, "wo");
    CU_ASSERT_STRING_EQUAL(g->vals[wo].loc.file, "\"quoted\"");
    CU_ASSERT_EQUAL(pc_lookup(g, "tokens"), 0);
    CU_ASSERT_EQUAL(g->vals[0].loc.line, 3);
    CU_ASSERT_EQUAL(g->vals[0].loc.col, 14);
    CU_ASSERT_EQUAL(g->vals[0].op, PC_OP_input);
    CU_ASSERT(g->vals[0].flags & PC_INPUT);
    CU_ASSERT_EQUAL(pc_attr_i(g, mm, "transpose_b"), 1);
    CU_ASSERT_EQUAL(pc_attr_i(g, pc_lookup(g, "logits"), "transpose_b"), 1);
    const pc_attr *ax = pc_attr_get(g, pc_lookup(g, "18"), "axes");
    CU_ASSERT(ax && ax->n == 2 && ax->ints[0] == 0 && ax->ints[1] == 1);
    pc_val a = pc_lookup(g, "a");
    CU_ASSERT(g->vals[a].flags & PC_TRAINABLE);
    CU_ASSERT_EQUAL(g->vals[a].init.kind, PC_INIT_KAIMING_UNIFORM);
    CU_ASSERT_DOUBLE_EQUAL(g->vals[a].init.a, sqrt(5.0), 1e-15);
    CU_ASSERT_PTR_NULL(g->vals[pc_lookup(g, "c3")].data);
    const int32_t *c2 = g->vals[pc_lookup(g, "c2")].data;
    CU_ASSERT(c2 && c2[0] == 1 && c2[2] == 3);
    CU_ASSERT(*(float *)g->vals[pc_lookup(g, "c")].data == 0.5f);
    CU_ASSERT_EQUAL(g->nupdates, 1);
    CU_ASSERT(g->vals[pc_lookup(g, "m")].flags & PC_STATE);
    CU_ASSERT_STRING_EQUAL(g->vals[pc_lookup(g, "m")].key, "x.lora_A.weight.adam_m");
    check_all_forms(g);

    /* the same text with CRLF line endings parses to the same graph */
    pc_strbuf b = {0};
    for (const char *s = SAMPLE; *s; s++) {
        if (*s == '\n') pc_sb_printf(&b, "\r\n");
        else pc_sb_printf(&b, "%c", *s);
    }
    char *crlf = pc_sb_take(&b);
    pc_graph *g2 = parse_exact(crlf, strlen(crlf), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g2);
    char *t1 = pc_print(g, LOC), *t2 = pc_print(g2, LOC);
    CU_ASSERT_STRING_EQUAL(t1, t2);
    free(t1);
    free(t2);
    free(crlf);
    pc_graph_free(g2);

    /* the DOT export names every value and distinguishes frozen and trainable params */
    char *dot = pc_to_dot(g);
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "digraph \"train\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "label=\"%w.q.0\\nparam frozen\\nf32[64,64]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "label=\"%a\\nparam trainable\\nf32[8,64]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "label=\"%17\\nmatmul\\nf32[8,64,64]\", shape=ellipse"));
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "shape=invhouse"));
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "shape=note"));
    char edge[64];
    snprintf(edge, sizeof edge, "  v%d -> v%d", (int)w, (int)mm);
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, edge));
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "label=\"update\""));
    free(dot);
    pc_graph_free(g);
}

static void test_dot_escapes(void) {
    pc_graph *g = pc_graph_new("q\"uote");
    pc_param(g, "p", "a\"b\\c", PC_F32, PC_SCALAR, PC_FROZEN, (pc_init){0});
    char *dot = pc_to_dot(g);
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "digraph \"q\\\"uote\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "\\\"a\\\"b\\\\c\\\""));
    free(dot);
    /* odd graph names and location files still round trip */
    pc_val x = pc_input(g, "x", PC_F32, PC_SCALAR);
    pc_neg_at(g, (pc_loc){"my dir/odd:name.c", 7, 0}, x);
    char *t = pc_print(g, LOC);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "graph @q_uote(%x: f32[]) -> () {\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, " = neg %x : f32[]  // my dir/odd:name.c:7\n"));
    free(t);
    check_roundtrip(g, LOC);
    pc_graph_free(g);
    dot = pc_to_dot(NULL);
    CU_ASSERT_PTR_NOT_NULL(dot);
    free(dot);
}

static void test_minimal_forms(void) {
    const char *texts[] = {
        "graph @g() -> () {\n}\n",
        "graph @g() -> () {\n}",                      /* no final newline */
        "graph @g()->(){}\n",                         /* hmm: '{' then '}' on one line is not allowed */
        "  graph   @g ( )  ->  ( )  {  // c\n  }  // done\n\n\n",
        "graph @g(%x: f32[]) -> (%x: f32[]) {\n}\n", /* an input as the output */
    };
    int expect_ok[] = {1, 1, 0, 1, 1};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        char *err = NULL;
        pc_graph *g = parse_exact(texts[i], strlen(texts[i]), &err);
        CU_ASSERT_EQUAL(!!g, expect_ok[i]);
        if (!!g != expect_ok[i]) fprintf(stderr, "\ncase %zu: %s\n", i, err ? err : "(parsed)");
        if (g) check_roundtrip(g, LOC);
        free(err);
        pc_graph_free(g);
    }
    char *t = pc_print(NULL, NOLOC);
    CU_ASSERT_PTR_NOT_NULL(t);
    free(t);
    char *err = NULL;
    CU_ASSERT_PTR_NULL(pc_parse(NULL, 0, NULL, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "<input>:1:1: error: expected the graph header"));
    free(err);
    CU_ASSERT_PTR_NULL(pc_parse("garbage", 7, "x", NULL)); /* err may be NULL */
}

/* ---- malformed inputs ---- */
enum { PARSE, VERIFY };
typedef struct {
    const char *text;
    size_t len; /* 0 = strlen */
    int stage;  /* PARSE: pc_parse fails; VERIFY: pc_parse succeeds, pc_verify fails */
    const char *where;
    const char *what;
} bad_case;

#define H "graph @t(%x: f32[2,3], %i: i32[2,3]) -> () {\n"
#define NUL_TEXT H "  %a = add %x,\0 %x : f32[2,3]\n}\n"

static const bad_case BAD[] = {
    {H "  %a = matmull %x, %x : f32[2,2]\n}\n", 0, PARSE, "t.pir:2:8: error:", "unknown op 'matmull'"},
    {H "  %a = add %x, %x : f32[2,4]\n}\n", 0, VERIFY, "t.pir:2:3: error:", "declared type f32[2,4] but add infers f32[2,3]"},
    {H "  %a = matmul %x, %x : f32[2,3]\n}\n", 0, VERIFY, "t.pir:2:3: error:", "contraction dimensions differ"},
    {H "  %a = add %x, %y : f32[2,3]\n}\n", 0, PARSE, "t.pir:2:16: error:", "use of undefined value '%y'"},
    {H "  %a = add %x, %i : f32[2,3]\n}\n", 0, VERIFY, "t.pir:2:3: error:", "operand dtypes differ (f32, i32)"},
    {H "  %a = add %x,\n}\n", 0, PARSE, "t.pir:2:15: error:", "expected an operand after ','"},
    {H "  %a = add %x, %x :\n}\n", 0, PARSE, "t.pir:2:20: error:", "expected a type"},
    {H "\x01\xff\xfe\n}\n", 0, PARSE, "t.pir:2:1: error:", "found '\\x01'"},
    {NUL_TEXT, sizeof(NUL_TEXT) - 1, PARSE, "t.pir:2:15: error:", "found '\\x00'"},
    {H "  %a = const f32[99999999999999999999] elided\n}\n", 0, PARSE, "t.pir:2:18: error:", "dimension 99999999999999999999 overflows"},
    {H "  %a = const f32[1048576,1048576,2] elided\n}\n", 0, PARSE, "t.pir:2:14: error:", "too large"},
    {H "  %a = const f32[1,1,1,1,1,1,1] elided\n}\n", 0, PARSE, "t.pir:2:14: error:", "rank 7 exceeds the maximum rank 6"},
    {H "  %a = add %x, %x : f32[2,3]\n", 0, PARSE, "t.pir:3:1: error:", "missing '}'"},
    {H "}\ngraph @u() -> () {\n}\n", 0, PARSE, "t.pir:3:1: error:", "unexpected text after the end of the graph"},
    {H "} junk\n", 0, PARSE, "t.pir:2:3: error:", "unexpected 'junk' after the closing '}'"},
    {H "  %x = add %x, %x : f32[2,3]\n}\n", 0, PARSE, "t.pir:2:3: error:", "redefinition of value '%x'"},
    {H "  %a = neg %x : f32[2,3]\n  %a = neg %x : f32[2,3]\n}\n", 0, PARSE, "t.pir:3:3: error:", "redefinition of value '%a' (first defined at t.pir:2)"},
    {H "  %a = add %x, %x {foo=1} : f32[2,3]\n}\n", 0, PARSE, "t.pir:2:20: error:", "unknown attribute 'foo'"},
    {H "  %a = softmax %x {axis=abc} : f32[2,3]\n}\n", 0, PARSE, "t.pir:2:25: error:", "bad value for attribute 'axis'"},
    {H "  %a = softmax %x {axis=0, axis=1} : f32[2,3]\n}\n", 0, PARSE, "t.pir:2:28: error:", "duplicate attribute 'axis'"},
    {H "  %a = sum %x {axes=[0,1,2,3,4,5,6,7,8]} : f32[]\n}\n", 0, PARSE, "t.pir:2:21: error:", "more than 8 entries"},
    {H "  %a = softmax %x {axis=99999999999999999999} : f32[2,3]\n}\n", 0, PARSE, "t.pir:2:25: error:", "out of range"},
    {H "  %a = add %x, %x\n}\n", 0, PARSE, "t.pir:2:18: error:", "missing ': TYPE'"},
    {H "  %a = add %x, %x f32[2,3]\n}\n", 0, PARSE, "t.pir:2:19: error:", "expected ': TYPE'"},
    {H "  %p = param frozen f32[2] \"k\" init=gaussian(1)\n}\n", 0, PARSE, "t.pir:2:37: error:", "unknown init 'gaussian'"},
    {H "  %p = param frozen f32[2] \"k\" init=uniform(1)\n}\n", 0, PARSE, "t.pir:2:37: error:", "takes 2 arguments, got 1"},
    {H "  %p = param frozen f32[2] \"k\" init=zeros(1)\n}\n", 0, PARSE, "t.pir:2:42: error:", "takes no arguments"},
    {H "  %p = param f32[2] \"k\"\n}\n", 0, PARSE, "t.pir:2:14: error:", "expected 'frozen' or 'trainable'"},
    {H "  %p = param frozen f32[2]\n}\n", 0, PARSE, "t.pir:2:27: error:", "expected a quoted checkpoint key"},
    {H "  %p = param frozen f32[2] \"unterminated\n}\n", 0, PARSE, "t.pir:2:28: error:", "unterminated string"},
    {H "  %p = param frozen f32[2] \"k\"\n  %q = state f32[2] \"k\"\n}\n", 0, PARSE, "t.pir:3:21: error:", "key \"k\" is already used by '%p'"},
    {H "  %p = param frozen f32[2] \"\"\n}\n", 0, VERIFY, "t.pir:2:3: error:", "param %p has no checkpoint key"},
    {H "  %c = const f32[3] [1, 2]\n}\n", 0, PARSE, "t.pir:2:21: error:", "const f32[3] needs 3 values, got 2"},
    {H "  %c = const f32[2] [1, 2, 3]\n}\n", 0, PARSE, "t.pir:2:28: error:", "too many values"},
    {H "  %c = const f32[2] 1\n}\n", 0, PARSE, "t.pir:2:21: error:", "needs a list of 2 values"},
    {H "  %c = const i32[2] [1, 2.5]\n}\n", 0, PARSE, "t.pir:2:25: error:", "expected an integer"},
    {H "  %c = const i32[] 4294967296\n}\n", 0, PARSE, "t.pir:2:20: error:", "out of range for i32"},
    {H "  %c = const f32[] 1e999\n}\n", 0, PARSE, "t.pir:2:20: error:", "out of range for f32"},
    {H "  %c = const f32[] 1.2.3\n}\n", 0, PARSE, "t.pir:2:20: error:", "malformed number '1.2.3'"},
    {H "  %c = const f32[] [1, 2]\n}\n", 0, PARSE, "t.pir:2:24: error:", "too many values for const f32[] (expected 1)"},
    {H "  %c = const f64[2] elided\n}\n", 0, PARSE, "t.pir:2:14: error:", "unknown dtype 'f64'"},
    {H "  %c = const f32(2) elided\n}\n", 0, PARSE, "t.pir:2:17: error:", "malformed type: expected '['"},
    {H "  %c = const f32[2,] elided\n}\n", 0, PARSE, "t.pir:2:20: error:", "expected a dimension"},
    {H "  %c = const f32[-2] elided\n}\n", 0, PARSE, "t.pir:2:18: error:", "expected a dimension"},
    {H "  %a = neg %x : f32[2,3]\n  update %x <- %a\n}\n", 0, PARSE, "t.pir:3:10: error:", "update target '%x' is not a param or state"},
    {H "  %p = param trainable f32[2] \"k\"\n  update %p <- %x\n}\n", 0, PARSE, "t.pir:3:16: error:", "of a different type"},
    {H "  %p = param trainable f32[2,3] \"k\"\n  update %p <- %x\n  update %p <- %x\n}\n", 0, PARSE, "t.pir:4:10: error:", "duplicate update of '%p'"},
    {H "  update %p <- %x\n  %p = param trainable f32[2,3] \"k\"\n}\n", 0, PARSE, "t.pir:2:10: error:", "use of undefined value '%p'"},
    {H "  update %x %x\n}\n", 0, PARSE, "t.pir:2:13: error:", "expected '<-'"},
    {"graph @t(%x: f32[2]) -> (%z: f32[]) {\n}\n", 0, PARSE, "t.pir:1:26: error:", "output '%z' is not defined"},
    {"graph @t(%x: f32[2]) -> (%x: f32[3]) {\n}\n", 0, PARSE, "t.pir:1:26: error:", "declared as f32[3] but defined as f32[2]"},
    {"graph @t(%x: f32[2]) -> (%x: f32[2], %x: f32[2]) {\n}\n", 0, PARSE, "t.pir:1:38: error:", "listed twice"},
    {"graph @t(%x: f32[2]) -> (%x: f32[2] loss) {\n}\n", 0, PARSE, "t.pir:1:26: error:", "loss '%x' must be a scalar f32, got f32[2]"},
    {"graph @t(%x: i32[]) -> (%x: i32[] loss) {\n}\n", 0, PARSE, "t.pir:1:25: error:", "must be a scalar f32, got i32[]"},
    {"", 0, PARSE, "t.pir:1:1: error:", "expected the graph header"},
    {"// only\n\n// comments\n", 0, PARSE, "t.pir:4:1: error:", "found end of input"},
    {"graph t() -> () {\n}\n", 0, PARSE, "t.pir:1:7: error:", "expected '@' and the graph name"},
    {"graph @t(%x f32[2]) -> () {\n}\n", 0, PARSE, "t.pir:1:13: error:", "expected ':' and the input type"},
    {"graph @t(%x: f32[2]) {\n}\n", 0, PARSE, "t.pir:1:22: error:", "expected '->'"},
    {"graph @t(%x: f32[2], %x: f32[2]) -> () {\n}\n", 0, PARSE, "t.pir:1:22: error:", "redefinition of value '%x'"},
    {"graph @t() -> () {\n  %a = input : f32[]\n}\n", 0, PARSE, "t.pir:2:8: error:", "inputs are declared in the graph header"},
    {"grap @t() -> () {\n}\n", 0, PARSE, "t.pir:1:1: error:", "expected the graph header"},
    {"graph @t() -> () {\n  %% = neg %x : f32[]\n}\n", 0, PARSE, "t.pir:2:3: error:", "expected a name after '%'"},
    {H "  %a = add %x : f32[2,3]\n}\n", 0, PARSE, "t.pir:2:8: error:", "add takes 2 operands, got 1"},
    {H "  %a = concat : f32[2,3]\n}\n", 0, PARSE, "t.pir:2:8: error:", "concat takes at least 1 operand"},
    {H "  %a = neg %x : f32[2,3] extra\n}\n", 0, PARSE, "t.pir:2:26: error:", "unexpected 'extra'"},
    {H "  %a = transpose %x {perm=[0,0]} : f32[2,2]\n}\n", 0, VERIFY, "t.pir:2:3: error:", "perm is not a permutation"},
    {H "  %w = param frozen f32[2] \"w\"\n  %a = rmsnorm %x, %w : f32[2,3]\n}\n", 0, VERIFY, "t.pir:3:3: error:", "operand 2 must have shape [3]"},
    {H "  %a = neg %x : f32[2,3]   // model.c:7\n  %b = exp %a : f32[3]\n}\n", 0, VERIFY, "t.pir:3:3: error:", "declared type f32[3] but exp infers f32[2,3]"},
    {H "  %a = exp %x : f32[9]   // model.c:7\n}\n", 0, VERIFY, "model.c:7: error:", "%a: declared type f32[9]"},
    {"graph @t() -> () {\r\n  %a = foo\r\n}\r\n", 0, PARSE, "t.pir:2:8: error:", "unknown op 'foo'\n"},
};

static void test_bad_inputs(void) {
    size_t n = sizeof BAD / sizeof *BAD;
    CU_ASSERT(n >= 30);
    for (size_t i = 0; i < n; i++) {
        const bad_case *c = &BAD[i];
        size_t len = c->len ? c->len : strlen(c->text);
        char *err = NULL;
        pc_graph *g = parse_exact(c->text, len, &err);
        const char *msg = err;
        char *verr = NULL;
        int ok = 1;
        if (c->stage == PARSE) {
            ok = g == NULL && err != NULL;
        } else {
            ok = g != NULL && err == NULL && pc_verify(g, &verr) > 0;
            msg = verr;
        }
        if (ok) ok = strstr(msg, c->where) && strstr(msg, c->what);
        if (ok && c->stage == PARSE) ok = well_formed_errors(msg, "t.pir");
        if (!ok)
            fprintf(stderr, "\nbad case %zu failed: want \"%s ... %s\" (%s), got:\n%s\n", i, c->where, c->what,
                    c->stage == PARSE ? "parse" : "verify", msg ? msg : g ? "(parsed fine)" : "(null)");
        CU_ASSERT(ok);
        free(err);
        free(verr);
        pc_graph_free(g);
    }
}

/* one error per bad line, later lines still checked, no cascades from failed lines */
static void test_multiple_errors(void) {
    const char *text = H
        "  %a = matmull %x, %x : f32[2,2]\n" /* 2: unknown op */
        "  %b = add %a, %x : f32[2,3]\n"      /* 3: uses the failed %a: no second error */
        "  %c = neg %x : f32[2,3]\n"          /* 4: fine */
        "  %d = neg %zz : f32[2,3]\n"         /* 5: undefined */
        "  %e = neg %c : q32[2]\n"            /* 6: bad dtype */
        "  %f = neg %b : f32[2,3]\n"          /* 7: %b failed silently: no error */
        "  update %b <- %c\n"                  /* 8: poisoned target: no error */
        "}\n";
    char *err = NULL;
    pc_graph *g = parse_exact(text, strlen(text), &err);
    CU_ASSERT_PTR_NULL(g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(err);
    CU_ASSERT_EQUAL(count_lines(err), 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "t.pir:2:8: error: unknown op 'matmull'\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "t.pir:5:12: error: use of undefined value '%zz'\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "t.pir:6:17: error: unknown dtype 'q32'"));
    if (count_lines(err) != 3) fprintf(stderr, "\n%s\n", err);
    free(err);

    /* the verifier reports every bad node, with later nodes checked against declared types */
    const char *vt = H
        "  %a = add %x, %x : f32[2,4]\n"
        "  %b = matmul %a, %x : f32[2,3]\n"
        "  %c = neg %b : f32[2,3]\n"
        "  %d = exp %i : i32[2,3]\n"
        "}\n";
    g = parse_exact(vt, strlen(vt), &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    char *verr = NULL;
    CU_ASSERT_EQUAL(pc_verify(g, &verr), 3);
    CU_ASSERT_EQUAL(count_lines(verr), 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(verr, "t.pir:2:3: error: %a: declared type f32[2,4] but add infers f32[2,3]\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(verr, "t.pir:3:3: error: %b: matmul: contraction dimensions differ"));
    CU_ASSERT_PTR_NOT_NULL(strstr(verr, "t.pir:5:3: error: %d: exp: operand 1 must be f32, got i32\n"));
    /* pc_verify appends to an existing message */
    int n2 = pc_verify(g, &verr);
    CU_ASSERT_EQUAL(n2, 3);
    CU_ASSERT_EQUAL(count_lines(verr), 6);
    free(verr);
    CU_ASSERT_EQUAL(pc_verify(g, NULL), 3);
    pc_graph_free(g);

    /* at most 50 errors, then a final note */
    pc_strbuf b = {0};
    pc_sb_printf(&b, "graph @t() -> () {\n");
    for (int i = 0; i < 200; i++) pc_sb_printf(&b, "  %%v%d = bogus\n", i);
    pc_sb_printf(&b, "}\n");
    char *many = pc_sb_take(&b);
    g = parse_exact(many, strlen(many), &err);
    CU_ASSERT_PTR_NULL(g);
    CU_ASSERT_EQUAL(count_lines(err), 51);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "too many errors"));
    free(err);
    free(many);
}

/* the verifier on graphs corrupted behind the builder's back */
static void test_verify_corrupt(void) {
    pc_graph *g = pc_graph_new("bad");
    pc_val x = pc_input(g, "x", PC_F32, PC_SHAPE(2, 3));
    pc_val p = pc_param(g, "p", "p", PC_F32, PC_SHAPE(2, 3), PC_TRAINABLE, (pc_init){0});
    pc_val q = pc_param(g, "q", "q", PC_F32, PC_SHAPE(2, 3), PC_FROZEN, (pc_init){0});
    pc_val s = pc_state(g, "s", "s", PC_F32, PC_SHAPE(2, 3), (pc_init){0});
    pc_val a = pc_add(g, x, p);
    pc_val b = pc_neg(g, a);
    pc_val l = pc_sum(g, b, 0, NULL, 0);
    pc_mark_loss(g, l);
    pc_add_update(g, p, b);
    CU_ASSERT_PTR_NULL_FATAL(pc_graph_error(g));
    CU_ASSERT_EQUAL(pc_verify(g, NULL), 0);
    /* now break it */
    g->vals[q].flags |= PC_TRAINABLE;             /* both frozen and trainable */
    free(g->vals[s].key);
    g->vals[s].key = NULL;                        /* state without key */
    g->vals[a].in[1] = b;                         /* use before definition */
    g->vals[b].shape = PC_SHAPE(3, 2);            /* declared type disagrees */
    g->vals[l].shape = PC_SHAPE(1);               /* loss not scalar */
    g->vals[l].dtype = PC_F32;
    free(g->vals[p].key);
    g->vals[p].key = malloc(2);
    strcpy(g->vals[p].key, "q");                  /* duplicate key */
    g->updates[0].target = x;                     /* update of an input */
    char *err = NULL;
    int n = pc_verify(g, &err);
    CU_ASSERT(n >= 7);
    const char *want[] = {"param %q must be exactly one of frozen or trainable", "state %s has no checkpoint key",
                          "operand 2 of add (%", "is not defined before its use",
                          "loss %2 must be a scalar f32, got f32[1]", "%q: key \"q\" is already used by %p",
                          "the target is not a param or state", "declared type f32[1] but sum infers f32[]"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        if (!strstr(err, want[i])) fprintf(stderr, "\nmissing '%s' in:\n%s\n", want[i], err);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, want[i]));
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(err, __FILE__ ":"));
    free(err);
    /* printing a broken graph must not crash */
    char *t = pc_print(g, LOC);
    CU_ASSERT_PTR_NOT_NULL(t);
    free(t);
    pc_graph_free(g);
    CU_ASSERT_EQUAL(pc_verify(NULL, NULL), 1);
}

/* long lines, huge inputs and random mutations: never crash, never read past len */
static unsigned long long rng_state = 0x9e3779b97f4a7c15ull;
static unsigned rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state >> 11);
}

static int n_parsed, n_rejected, n_verified;

static void parse_any(const char *text, size_t len) {
    char *err = NULL;
    pc_graph *g = parse_exact(text, len, &err);
    if (g) n_parsed++;
    else n_rejected++;
    if (g) {
        CU_ASSERT_PTR_NULL(err);
        char *verr = NULL;
        n_verified += pc_verify(g, &verr) == 0;
        free(verr);
        char *t = pc_print(g, LOC);
        /* whatever parsed prints and parses back to the same text */
        pc_graph *g2 = parse_exact(t, strlen(t), &err);
        CU_ASSERT_PTR_NOT_NULL(g2);
        if (g2) {
            char *t2 = pc_print(g2, LOC);
            CU_ASSERT_STRING_EQUAL(t, t2);
            free(t2);
        } else {
            fprintf(stderr, "\nreparse failed: %s\n%s\n", err, t);
            free(err);
        }
        pc_graph_free(g2);
        free(t);
        char *dot = pc_to_dot(g);
        free(dot);
        pc_graph_free(g);
    } else {
        CU_ASSERT_PTR_NOT_NULL(err);
        if (err && !well_formed_errors(err, "t.pir")) {
            fprintf(stderr, "\nmalformed diagnostics:\n%s\n", err);
            CU_FAIL("diagnostic format");
        }
        free(err);
    }
}

static void test_robustness(void) {
    /* a 1 MB line of garbage, a long const list, a huge name */
    size_t n = 1 << 20;
    char *big = malloc(n + 100);
    memcpy(big, H "  ", strlen(H "  "));
    size_t o = strlen(H "  ");
    for (; o < n; o++) big[o] = (char)('a' + o % 26);
    parse_any(big, o);
    free(big);

    pc_strbuf b = {0};
    pc_sb_printf(&b, "%s  %%c = const f32[100000] [", H);
    for (int i = 0; i < 100000; i++) pc_sb_printf(&b, "%s%d.5", i ? ", " : "", i);
    pc_sb_printf(&b, "]\n  %%%s = neg %%c : f32[100000]\n}\n", "n.a.m.e-0123456789_abcdefghijklmnopqrstuvwxyz");
    char *t = pc_sb_take(&b);
    char *err = NULL;
    pc_graph *g = parse_exact(t, strlen(t), &err);
    CU_ASSERT_PTR_NOT_NULL(g);
    if (g) {
        float *d = g->vals[pc_lookup(g, "c")].data;
        CU_ASSERT(d && d[99999] == 99999.5f);
        char *p1 = pc_print(g, (pc_print_opts){0, 1});
        CU_ASSERT(strlen(p1) > 800000);
        free(p1);
        pc_graph_free(g);
    }
    free(err);
    free(t);

    /* a const claiming 2^40 elements with a short list must not allocate it */
    const char *huge = H "  %c = const f32[1099511627776] [1, 2]\n}\n";
    g = parse_exact(huge, strlen(huge), &err);
    CU_ASSERT_PTR_NULL(g);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "needs 1099511627776 values, got 2"));
    free(err);

    /* every prefix of a valid text */
    size_t sl = strlen(SAMPLE);
    for (size_t k = 0; k <= sl; k++) parse_any(SAMPLE, k);

    /* random mutations of valid texts */
    pc_graph *srcs[2] = {build_all_ops(), build_consts()};
    char *texts[3] = {pc_print(srcs[0], LOC), pc_print(srcs[1], (pc_print_opts){0, 1}), (char *)SAMPLE};
    static const char *tokens[] = {"%", "%x", "@", "{", "}", "[", "]", "(", ")", ",", ":", "=", "<-", "->",
                                   "\"", "\\", "//", "\n", "\r\n", "\0", "f32[", "i32[]", "99999999999999999999",
                                   "-1", "1e999", "nan", "inf", "matmul", "update", "param", "const", "elided",
                                   "loss", " ", "\t", "\xff", "{axes=[", "init=", "kaiming_uniform(", "graph @g"};
    for (int iter = 0; iter < 2000; iter++) {
        const char *src = texts[iter % 3];
        size_t len = strlen(src);
        char *m = malloc(len * 2 + 64);
        memcpy(m, src, len);
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = len ? rnd() % (len + 1) : 0;
            switch (rnd() % 5) {
            case 0: if (at < len) m[at] = (char)(rnd() & 0xff); break;
            case 1: { /* delete a span */
                size_t k = rnd() % 16;
                if (at + k > len) k = len - at;
                memmove(m + at, m + at + k, len - at - k);
                len -= k;
                break;
            }
            case 2: { /* insert a token */
                const char *tk = tokens[rnd() % (sizeof tokens / sizeof *tokens)];
                size_t k = strlen(tk) ? strlen(tk) : 1;
                if (len + k > len * 2 + 60) break;
                memmove(m + at + k, m + at, len - at);
                memcpy(m + at, tk, k);
                len += k;
                break;
            }
            case 3: len = at; break; /* truncate */
            default: /* swap two bytes */
                if (at < len) {
                    size_t j = rnd() % len;
                    char c = m[at];
                    m[at] = m[j];
                    m[j] = c;
                }
            }
        }
        parse_any(m, len);
        free(m);
    }
    printf("\n    fuzz: %d texts parsed (%d of them verified), %d rejected\n", n_parsed, n_verified, n_rejected);
    free(texts[0]);
    free(texts[1]);
    pc_graph_free(srcs[0]);
    pc_graph_free(srcs[1]);
}

static CU_TestInfo tests[] = {
    {"mlp round trip", test_mlp},
    {"attention round trip", test_attention},
    {"constants round trip", test_consts},
    {"every op round trip", test_all_ops},
    {"hand-written text", test_parse_sample},
    {"dot escapes", test_dot_escapes},
    {"minimal forms", test_minimal_forms},
    {"malformed inputs", test_bad_inputs},
    {"multiple errors", test_multiple_errors},
    {"verify corrupted graphs", test_verify_corrupt},
    {"robustness and fuzz", test_robustness},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("ir_text", tests)
