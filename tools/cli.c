/* Option parsing and file helpers shared by the verbs. */
#include "tools/cli.h"
#include "ir/ir.h"
#include "runtime/adapter_io.h"
#include "runtime/fileio.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pc_cli_parse(const char *verb, int argc, char **argv, const pc_cli_opt *opts, int nopts,
                 const char **pos, int maxpos, int *npos) {
    *npos = 0;
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
            if (*npos >= maxpos) {
                fprintf(stderr, "peftc %s: unexpected argument '%s'\n", verb, a);
                return -1;
            }
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) { only_pos = true; continue; }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
        const char *name = a + (a[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const pc_cli_opt *o = NULL;
        for (int k = 0; k < nopts; k++)
            if (strlen(opts[k].name) == nlen && strncmp(opts[k].name, name, nlen) == 0) o = &opts[k];
        if (!o || (a[1] != '-' && nlen != 1) || (a[1] == '-' && nlen == 1)) {
            fprintf(stderr, "peftc %s: unknown option '%s' (see peftc %s --help)\n", verb, a, verb);
            return -1;
        }
        if (o->takes_value) {
            if (eq) *o->value = eq + 1;
            else if (i + 1 < argc) *o->value = argv[++i];
            else {
                fprintf(stderr, "peftc %s: option '%s' needs a value\n", verb, a);
                return -1;
            }
        } else {
            if (eq) {
                fprintf(stderr, "peftc %s: option '--%s' takes no value\n", verb, o->name);
                return -1;
            }
            *o->flag = true;
        }
    }
    return 0;
}

int pc_cli_int(const char *verb, const char *flag, const char *text, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (end == text || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "peftc %s: --%s: expected an integer in [%lld, %lld], got '%s'\n", verb, flag, lo, hi, text);
        return -1;
    }
    *out = x;
    return 0;
}

int pc_cli_double(const char *verb, const char *flag, const char *text, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "peftc %s: --%s: expected a number in [%g, %g], got '%s'\n", verb, flag, lo, hi, text);
        return -1;
    }
    *out = x;
    return 0;
}

char *pc_cli_read(const char *verb, const char *path, size_t *len) {
    if (strcmp(path, "-") == 0) {
        size_t cap = 1 << 16, n = 0;
        char *buf = malloc(cap + 1);
        for (size_t got; buf && (got = fread(buf + n, 1, cap - n, stdin)) > 0;) {
            n += got;
            if (n == cap) {
                char *b = realloc(buf, 2 * cap + 1);
                if (!b) { free(buf); buf = NULL; break; }
                buf = b;
                cap *= 2;
            }
        }
        if (!buf) { fprintf(stderr, "peftc %s: out of memory reading stdin\n", verb); return NULL; }
        buf[n] = 0;
        *len = n;
        return buf;
    }
    char *data, err[512];
    if (pc_read_file(path, &data, len, err, sizeof err)) {
        fprintf(stderr, "peftc %s: %s\n", verb, err);
        return NULL;
    }
    return data;
}

int pc_cli_write(const char *verb, const char *path, const char *text, size_t len) {
    if (!path || strcmp(path, "-") == 0) {
        if (fwrite(text, 1, len, stdout) != len || fflush(stdout)) {
            fprintf(stderr, "peftc %s: writing to stdout failed\n", verb);
            return -1;
        }
        return 0;
    }
    char err[512];
    if (pc_make_parents(path, err, sizeof err) || pc_write_file_atomic(path, text, len, err, sizeof err)) {
        fprintf(stderr, "peftc %s: %s\n", verb, err);
        return -1;
    }
    return 0;
}

int pc_cli_check_outputs(const char *prog, const pc_out *outs, int nouts, const pc_in *ins, int nins) {
    char err[8192];
    if (!pc_check_outputs(outs, nouts, ins, nins, err, sizeof err)) return 0;
    fprintf(stderr, "%s: %s\n", prog, err);
    return -1;
}

int pc_cli_adapter_inputs(const char *flag, const char *path, pc_in *ins, pc_cli_adapter_paths *bufs) {
    if (!path) return 0;
    ins[0] = (pc_in){flag, path};
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return 1;
    snprintf(bufs->config, sizeof bufs->config, "%s/%s", path, PC_ADAPTER_CONFIG_NAME);
    snprintf(bufs->weights, sizeof bufs->weights, "%s/%s", path, PC_ADAPTER_WEIGHTS_NAME);
    ins[1] = (pc_in){flag, bufs->config};
    ins[2] = (pc_in){flag, bufs->weights};
    return 3;
}

int pc_cli_base_dtype(const char *verb, const char *value, pc_dtype *out) {
    *out = PC_F32;
    if (!value || !strcmp(value, "f32")) return 0;
    if (!strcmp(value, "bf16")) { *out = PC_BF16; return 0; }
    fprintf(stderr, "peftc %s: --base-dtype: expected f32 or bf16, got '%s'\n", verb, value);
    return -1;
}

int pc_cli_fixed_base_dtype(const pc_cli_fixed *fx, const char *flag, pc_dtype *dt) {
    if (!fx) return 0;
    if (flag && *dt != fx->base_dtype) {
        fprintf(stderr, "%s: --base-dtype %s: this executable was compiled for a %s base (peftc compile --base-dtype)\n",
                fx->prog, flag, pc_dtype_name(fx->base_dtype));
        return -1;
    }
    *dt = fx->base_dtype;
    return 0;
}

int pc_cli_dump_stage(const char *verb, const char *value) {
    if (!value || !strcmp(value, "adapt") || !strcmp(value, "all")) return 0;
    fprintf(stderr, "peftc %s: --dump-after: expected adapt or all (the graph after the adapter's sites), got '%s'\n",
            verb, value);
    return -1;
}

int pc_cli_take_repeated(const char *verb, int argc, char **argv, const char *name, const char **vals, int cap,
                         int *nvals) {
    int out = 0;
    size_t nl = strlen(name);
    *nvals = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) { /* positional from here */
            while (i < argc) argv[out++] = argv[i++];
            break;
        }
        if (strncmp(a, "--", 2) || strncmp(a + 2, name, nl) || (a[2 + nl] && a[2 + nl] != '=')) {
            argv[out++] = argv[i];
            continue;
        }
        const char *v = a[2 + nl] == '=' ? a + 3 + nl : i + 1 < argc ? argv[++i] : NULL;
        if (!v) { fprintf(stderr, "peftc %s: option '--%s' needs a value\n", verb, name); return -1; }
        if (*nvals == cap) { fprintf(stderr, "peftc %s: more than %d --%s options\n", verb, cap, name); return -1; }
        vals[(*nvals)++] = v;
    }
    return out;
}
