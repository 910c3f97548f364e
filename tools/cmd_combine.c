/* peftc combine: a new adapter from weighted adapters (PEFT's add_weighted_adapter). */
#include "drivers/combine.h"
#include "drivers/session.h"
#include "runtime/adapter_io.h"
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_INPUTS = 64 };

static void help(void) {
    printf("usage: peftc combine --adapter NAME=DIR [--adapter NAME=DIR ...] --weights W1,W2,... --out DIR\n"
           "                     [--type TYPE] [--svd-rank R] [--svd-clamp Q] [--density D]\n"
           "                     [--majority-sign-method total|frequency] [--seed N] [--model M]\n\n"
           "Writes a new adapter directory from weighted LoRA (or IA3) adapters, as PEFT's\n"
           "add_weighted_adapter does (weights may be negative; s = each input's scale alpha/r):\n"
           "  cat     A = [w1*s1*A1; w2*s2*A2; ...], B = [B1 B2 ...]: exact, r = the sum of the ranks\n"
           "  linear  A = sum sign*sqrt|w*s|*A, B = sum sqrt|w*s|*B: equal ranks, an approximation\n"
           "  svd     (default) dW = sum w*s*B*A truncated by SVD to --svd-rank (default: the largest\n"
           "          input rank); --svd-clamp Q clamps the factors to the Q-quantile of their entries\n"
           "One adapter is combined linearly (PEFT's rule). The result has r = lora_alpha = its rank and\n"
           "the inputs' target_modules united; its config is otherwise the first adapter's.\n"
           "  ties, dare_linear, dare_ties, magnitude_prune: linear with PEFT's pruned merges of A and of B\n"
           "          (--density D: the fraction kept; ties elects a sign by --majority-sign-method);\n"
           "          their *_svd forms (ties_svd, ...) merge the inputs' dW and truncate as svd. DARE's\n"
           "          random pruning follows PEFT's rule with peftc's own draws (--seed), not torch's.\n"
           "IA3 adapters combine as ia3_l = sum w*l. LoHa, LoKr, AdaLoRA and prompt methods are refused\n"
           "(PEFT has no add_weighted_adapter for them), as are DoRA, lora_bias and modules_to_save\n"
           "(PEFT's result would lose them).\n"
           "--model M: check that every module of the result is a linear of M with its shape (adapters\n"
           "for another model are refused); no model is needed otherwise.\n"
           "A bare --adapter DIR is named 'default'. Nothing is written on an error.\n");
}

/* "w1,w2,...": exactly n finite numbers */
static int parse_weights(const char *text, double *w, int n) {
    const char *p = text;
    int k = 0;
    for (;;) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || (*end && *end != ',')) {
            fprintf(stderr, "peftc combine: --weights: expected comma-separated numbers, got '%s'\n", text);
            return -1;
        }
        if (k == n) {
            fprintf(stderr, "peftc combine: --weights: more weights than the %d adapters given\n", n);
            return -1;
        }
        w[k++] = x;
        if (!*end) break;
        p = end + 1;
    }
    if (k != n) {
        fprintf(stderr, "peftc combine: --weights: %d weight%s for %d adapters\n", k, k == 1 ? "" : "s", n);
        return -1;
    }
    return 0;
}

int pc_cmd_combine(const pc_registry *reg, int argc, char **argv) {
    /* --adapter repeats: taken out here, the rest parsed as usual */
    pc_combine_input in[MAX_INPUTS];
    char names[MAX_INPUTS][256];
    int n = 0, nrest = 0;
    char **rest = malloc(sizeof *rest * (size_t)(argc + 1));
    if (!rest) return 1;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--adapter")) {
            if (i + 1 == argc) {
                fprintf(stderr, "peftc combine: option '--adapter' needs a value\n");
                return free(rest), 1;
            }
            v = argv[++i];
        } else if (!strncmp(argv[i], "--adapter=", 10)) {
            v = argv[i] + 10;
        } else {
            rest[nrest++] = argv[i];
            continue;
        }
        if (n == MAX_INPUTS) {
            fprintf(stderr, "peftc combine: more than %d adapters\n", MAX_INPUTS);
            return free(rest), 1;
        }
        const char *eq = strchr(v, '=');
        /* NAME=DIR; a path of its own with '=' after a '/' stays a bare DIR */
        if (eq && eq > v && memchr(v, '/', (size_t)(eq - v)) == NULL && (size_t)(eq - v) < sizeof names[n]) {
            snprintf(names[n], sizeof names[n], "%.*s", (int)(eq - v), v);
            v = eq + 1;
        } else {
            snprintf(names[n], sizeof names[n], "default");
        }
        if (!*v) {
            fprintf(stderr, "peftc combine: --adapter %s: no directory\n", names[n]);
            return free(rest), 1;
        }
        in[n] = (pc_combine_input){names[n], v, 0};
        n++;
    }
    const char *model = 0, *weights = 0, *type = 0, *out = 0, *svd_rank = 0, *svd_clamp = 0, *density = 0, *sign = 0, *seed = 0;
    pc_cli_opt opts[] = {{"weights", true, &weights, 0},     {"type", true, &type, 0},
                         {"out", true, &out, 0},             {"svd-rank", true, &svd_rank, 0},
                         {"svd-clamp", true, &svd_clamp, 0}, {"density", true, &density, 0},
                         {"majority-sign-method", true, &sign, 0}, {"seed", true, &seed, 0},
                         {"model", true, &model, 0}};
    const char *pos[1];
    int npos;
    int rc = pc_cli_parse("combine", nrest, rest, opts, 9, pos, 0, &npos);
    free(rest);
    if (rc == 1) return help(), 0;
    if (rc) return 1;
    if (!n || !weights || !out) {
        fprintf(stderr, "peftc combine: --adapter (at least one), --weights and --out are required\n");
        return 1;
    }
    double w[MAX_INPUTS];
    if (parse_weights(weights, w, n)) return 1;
    for (int i = 0; i < n; i++) in[i].weight = w[i];
    pc_combine_opts o = {.type = type, .clamp = svd_clamp != NULL, .pruned = density != NULL};
    long long r;
    if (svd_rank) {
        if (pc_cli_int("combine", "svd-rank", svd_rank, 1, 1 << 20, &r)) return 1;
        o.svd_rank = (int)r;
    }
    if (svd_clamp && pc_cli_double("combine", "svd-clamp", svd_clamp, 0, 1, &o.svd_clamp)) return 1;
    if (density && pc_cli_double("combine", "density", density, 0, 1e300, &o.density)) return 1;
    if (seed) {
        if (pc_cli_int("combine", "seed", seed, 0, (1ll << 62), &r)) return 1;
        o.seed = (uint64_t)r;
    }
    if (sign && strcmp(sign, "total") && strcmp(sign, "frequency")) {
        fprintf(stderr, "peftc combine: --majority-sign-method: expected total or frequency, got '%s'\n", sign);
        return 1;
    }
    o.frequency = sign && !strcmp(sign, "frequency");

    pc_in ins[3 * MAX_INPUTS];
    pc_cli_adapter_paths ap[MAX_INPUTS];
    int nin = 0;
    for (int i = 0; i < n; i++) nin += pc_cli_adapter_inputs("--adapter", in[i].dir, ins + nin, &ap[i]);
    static const char *const written[] = {PC_ADAPTER_CONFIG_NAME, PC_ADAPTER_WEIGHTS_NAME, NULL};
    pc_out outs[] = {{.flag = "--out", .path = out, .kind = PC_OUT_DIR, .names = written}};
    if (pc_cli_check_outputs("peftc combine", outs, 1, ins, nin)) return 1;

    char err[8192];
    pc_combined c;
    if (pc_combine(in, n, &o, &c, err, sizeof err)) {
        fprintf(stderr, "peftc combine: %s\n", err);
        return 1;
    }
    for (int i = 0; i < c.nwarnings; i++) fprintf(stderr, "peftc combine: warning: %s\n", c.warnings[i]);
    rc = 0;
    if (model) { /* the result must fit the model it is meant for */
        pc_session s;
        rc = pc_session_open(&s, reg, model, NULL, NULL, err, sizeof err);
        if (!rc) {
            rc = pc_combined_check_model(&c, &s.model, model, err, sizeof err);
            pc_session_close(&s);
        }
    }
    if (!rc) rc = pc_combined_save(&c, out, err, sizeof err);
    if (rc) fprintf(stderr, "peftc combine: %s\n", err);
    else if (c.cfg->peft_type == PC_PEFT_LORA)
        fprintf(stderr, "peftc combine: %d adapter%s, %s, r %d, %d modules -> %s\n", n, n == 1 ? "" : "s", c.type,
                c.cfg->r, c.nmodules, out);
    else
        fprintf(stderr, "peftc combine: %d adapter%s, %s, %d modules -> %s\n", n, n == 1 ? "" : "s", c.type,
                c.nmodules, out);
    pc_combined_free(&c);
    return rc ? 1 : 0;
}
