/* Text IR printer: one value per line, MLIR-like; the parser (ir/parse.c) reads it back.
 *
 *   graph @name(%in: f32[2,3]) -> (%loss: f32[] loss) {
 *     %w = param trainable f32[3,4] "key" init=normal(0.02)   // file.c:12
 *     %y = matmul %in, %w {transpose_b=1} : f32[2,4]
 *     update %w <- %w.next
 *   }
 *
 * print(parse(print(g))) == print(g) byte for byte. */
#include "ir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_type(pc_strbuf *b, pc_dtype dt, pc_shape s) {
    char buf[192];
    if (s.rank < 0) s.rank = 0;
    pc_shape_str(s, buf, sizeof buf); /* clamps to PC_MAX_RANK */
    pc_sb_printf(b, "%s%s", pc_dtype_name(dt), buf);
}

/* shortest "%.*g" that reads back to the same double */
static void fmt_double(char *buf, size_t n, double x) {
    if (isnan(x)) { snprintf(buf, n, "nan"); return; }
    if (isinf(x)) { snprintf(buf, n, x < 0 ? "-inf" : "inf"); return; }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static void fmt_float(char *buf, size_t n, float x) {
    if (isnan(x)) snprintf(buf, n, "nan");
    else if (isinf(x)) snprintf(buf, n, x < 0 ? "-inf" : "inf");
    else snprintf(buf, n, "%.9g", (double)x);
}

static float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void put_string(pc_strbuf *b, const char *s) {
    pc_sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': pc_sb_printf(b, "\\\""); break;
        case '\\': pc_sb_printf(b, "\\\\"); break;
        case '\n': pc_sb_printf(b, "\\n"); break;
        case '\t': pc_sb_printf(b, "\\t"); break;
        case '\r': pc_sb_printf(b, "\\r"); break;
        default:
            if (*p < 0x20 || *p == 0x7f) pc_sb_printf(b, "\\u%04x", *p);
            else pc_sb_printf(b, "%c", *p);
        }
    }
    pc_sb_printf(b, "\"");
}

static void put_name(pc_strbuf *b, const pc_graph *g, pc_val v) {
    if (pc_valid(g, v) && g->vals[v].name) pc_sb_printf(b, "%%%s", g->vals[v].name);
    else pc_sb_printf(b, "%%<invalid:%d>", (int)v);
}

static void put_init(pc_strbuf *b, pc_init in) {
    char x[40], y[40];
    switch (in.kind) {
    case PC_INIT_NONE: break;
    case PC_INIT_ZEROS: pc_sb_printf(b, " init=zeros"); break;
    case PC_INIT_ONES: pc_sb_printf(b, " init=ones"); break;
    case PC_INIT_UNIFORM:
        fmt_double(x, sizeof x, in.a);
        fmt_double(y, sizeof y, in.b);
        pc_sb_printf(b, " init=uniform(%s, %s)", x, y);
        break;
    case PC_INIT_NORMAL:
        fmt_double(x, sizeof x, in.a);
        pc_sb_printf(b, " init=normal(%s)", x);
        break;
    case PC_INIT_KAIMING_UNIFORM:
        fmt_double(x, sizeof x, in.a);
        pc_sb_printf(b, " init=kaiming_uniform(%s)", x);
        break;
    }
}

static void put_const_data(pc_strbuf *b, const pc_value *v, int elide_over) {
    int64_t n = pc_shape_numel(v->shape);
    if (!v->data || n < 0 || (elide_over > 0 && n > elide_over)) {
        pc_sb_printf(b, " elided");
        return;
    }
    char buf[40];
    pc_sb_printf(b, v->shape.rank == 0 ? " " : " [");
    for (int64_t i = 0; i < n; i++) {
        switch (v->dtype) {
        case PC_F32: fmt_float(buf, sizeof buf, ((const float *)v->data)[i]); break;
        case PC_I32: snprintf(buf, sizeof buf, "%d", (int)((const int32_t *)v->data)[i]); break;
        case PC_BF16: fmt_float(buf, sizeof buf, bf16_to_float(((const uint16_t *)v->data)[i])); break;
        default: snprintf(buf, sizeof buf, "0"); break;
        }
        pc_sb_printf(b, "%s%s", i ? ", " : "", buf);
    }
    if (v->shape.rank != 0) pc_sb_printf(b, "]");
}

static int attr_is_default(const pc_attr_spec *spec, const pc_attr *a) {
    switch (spec->kind) {
    case PC_ATTR_INT: return a->i == (int64_t)spec->dflt;
    case PC_ATTR_FLOAT: return memcmp(&a->f, &spec->dflt, sizeof(double)) == 0;
    case PC_ATTR_INTS: return a->n == 0;
    }
    return 1;
}

static void put_attrs(pc_strbuf *b, const pc_value *v) {
    const pc_op_info *info = pc_op_get(v->op);
    int first = 1;
    for (int k = 0; info && k < info->nattrs && k < PC_MAX_ATTRS; k++) {
        const pc_attr_spec *spec = &info->attrs[k];
        const pc_attr *a = &v->attr[k];
        if (attr_is_default(spec, a)) continue;
        pc_sb_printf(b, "%s%s=", first ? " {" : ", ", spec->name);
        first = 0;
        char buf[40];
        switch (spec->kind) {
        case PC_ATTR_INT: pc_sb_printf(b, "%lld", (long long)a->i); break;
        case PC_ATTR_FLOAT: fmt_double(buf, sizeof buf, a->f); pc_sb_printf(b, "%s", buf); break;
        case PC_ATTR_INTS: {
            int n = a->n < 0 ? 0 : a->n > PC_MAX_INTS ? PC_MAX_INTS : a->n;
            pc_sb_printf(b, "[");
            for (int j = 0; j < n; j++) pc_sb_printf(b, "%s%lld", j ? "," : "", (long long)a->ints[j]);
            pc_sb_printf(b, "]");
            break;
        }
        }
    }
    if (!first) pc_sb_printf(b, "}");
}

static void put_value(pc_strbuf *b, const pc_graph *g, pc_val id, pc_print_opts opts) {
    const pc_value *v = &g->vals[id];
    const pc_op_info *info = pc_op_get(v->op);
    pc_sb_printf(b, "  ");
    put_name(b, g, id);
    pc_sb_printf(b, " = ");
    switch (v->op) {
    case PC_OP_param:
        pc_sb_printf(b, "param %s ", (v->flags & PC_TRAINABLE) ? "trainable" : "frozen");
        put_type(b, v->dtype, v->shape);
        pc_sb_printf(b, " ");
        put_string(b, v->key);
        put_init(b, v->init);
        break;
    case PC_OP_state:
        pc_sb_printf(b, "state ");
        put_type(b, v->dtype, v->shape);
        pc_sb_printf(b, " ");
        put_string(b, v->key);
        put_init(b, v->init);
        break;
    case PC_OP_const:
        pc_sb_printf(b, "const ");
        put_type(b, v->dtype, v->shape);
        put_const_data(b, v, opts.elide_consts_over);
        break;
    default:
        pc_sb_printf(b, "%s", info ? info->name : "<invalid-op>");
        for (int k = 0; k < v->nin && v->in; k++) {
            pc_sb_printf(b, k ? ", " : " ");
            put_name(b, g, v->in[k]);
        }
        put_attrs(b, v);
        pc_sb_printf(b, " : ");
        put_type(b, v->dtype, v->shape);
        break;
    }
    if (opts.show_locations && v->loc.file) {
        pc_sb_printf(b, "  // ");
        for (const unsigned char *p = (const unsigned char *)v->loc.file; *p; p++)
            pc_sb_printf(b, "%c", *p < 0x20 || *p == 0x7f ? '?' : *p);
        pc_sb_printf(b, ":%d", v->loc.line);
    }
    pc_sb_printf(b, "\n");
}

char *pc_print_value(const pc_graph *g, pc_val v) {
    pc_strbuf b = {0};
    if (!pc_valid(g, v)) {
        pc_sb_printf(&b, "%%<invalid:%d>", (int)v);
        return pc_sb_take(&b);
    }
    /* constants elided past 8 elements: a message quotes the line, it does not carry data */
    put_value(&b, g, v, (pc_print_opts){.elide_consts_over = 8});
    char *s = pc_sb_take(&b);
    if (!s) return NULL;
    size_t n = strlen(s);
    if (n && s[n - 1] == '\n') s[--n] = 0;
    return n >= 2 ? memmove(s, s + 2, n - 1) : s; /* without put_value's indent */
}

char *pc_print(const pc_graph *g, pc_print_opts opts) {
    pc_strbuf b = {0};
    if (!g) {
        pc_sb_printf(&b, "// no graph\n");
        return pc_sb_take(&b);
    }
    /* a name the parser would not accept is printed with '_' for its odd characters */
    pc_sb_printf(&b, "graph @");
    const char *gn = g->name && g->name[0] ? g->name : "main";
    for (const char *p = gn; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.' || c == '-';
        pc_sb_printf(&b, "%c", ok ? c : '_');
    }
    pc_sb_printf(&b, "(");
    int first = 1;
    for (int i = 0; i < g->nvals; i++) {
        const pc_value *v = &g->vals[i];
        if (v->op != PC_OP_input) continue;
        pc_sb_printf(&b, "%s", first ? "" : ", ");
        first = 0;
        put_name(&b, g, i);
        pc_sb_printf(&b, ": ");
        put_type(&b, v->dtype, v->shape);
    }
    pc_sb_printf(&b, ") -> (");
    for (int k = 0; k < g->noutputs; k++) {
        pc_val o = g->outputs[k];
        pc_sb_printf(&b, "%s", k ? ", " : "");
        put_name(&b, g, o);
        if (pc_valid(g, o)) {
            pc_sb_printf(&b, ": ");
            put_type(&b, g->vals[o].dtype, g->vals[o].shape);
            if (g->vals[o].flags & PC_LOSS) pc_sb_printf(&b, " loss");
        }
    }
    pc_sb_printf(&b, ") {\n");
    for (int i = 0; i < g->nvals; i++)
        if (g->vals[i].op != PC_OP_input) put_value(&b, g, i, opts);
    for (int k = 0; k < g->nupdates; k++) {
        pc_sb_printf(&b, "  update ");
        put_name(&b, g, g->updates[k].target);
        pc_sb_printf(&b, " <- ");
        put_name(&b, g, g->updates[k].next);
        pc_sb_printf(&b, "\n");
    }
    pc_sb_printf(&b, "}\n");
    return pc_sb_take(&b);
}
