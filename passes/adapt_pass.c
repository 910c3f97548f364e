/* The adapt pass: an adapter config applied to the linears of any graph (IR text included). */
#include "passes/adapt.h"
#include "passes/pipeline.h"
#include "runtime/adapter_config.h"
#include "runtime/fileio.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "config=FILE,mode=train": the value of `key` into buf; 1 found, 0 absent, -1 a bad option */
static int option(const char *args, const char *key, char *buf, size_t len, char *err, size_t errlen) {
    int found = 0;
    for (const char *p = args; *p;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        int kl = (int)((eq ? eq : end) - p);
        bool known = (kl == 6 && !strncmp(p, "config", 6)) || (kl == 4 && !strncmp(p, "mode", 4));
        if (!known || !eq) return snprintf(err, errlen, "bad option '%.*s' (adapt takes config=FILE,mode=train|eval)", (int)(end - p), p), -1;
        if (kl == (int)strlen(key) && !strncmp(p, key, (size_t)kl)) {
            snprintf(buf, len, "%.*s", (int)(end - eq - 1), eq + 1);
            found = 1;
        }
        p = *end ? end + 1 : end;
    }
    return found;
}

int pc_pass_adapt(pc_graph **g, const pc_pass_args *a, char *err, size_t errlen) {
    char path[4096], mode[16] = "train";
    int r = option(a->args, "config", path, sizeof path, err, errlen);
    if (r <= 0) return r < 0 ? -1 : (snprintf(err, errlen, "adapt needs {config=FILE}"), -1);
    if (option(a->args, "mode", mode, sizeof mode, err, errlen) < 0) return -1;
    if (strcmp(mode, "train") && strcmp(mode, "eval"))
        return snprintf(err, errlen, "option mode: expected train or eval, got '%s'", mode), -1;
    pc_registry *own = a->reg ? NULL : pc_registry_new();
    const pc_registry *reg = a->reg ? a->reg : own;
    const char *custom[64];
    size_t nc = pc_registry_custom_types(reg, custom, 64);
    pc_adapter_config *cfg = pc_adapter_config_load_ex(path, custom, nc, err, errlen);
    pc_adapt_ctx *cx = NULL;
    int rc = -1;
    if (!cfg) goto done;
    const char *type = pc_adapter_config_type_name(cfg);
    const pc_adapter_method *m = pc_registry_find(reg, type);
    if (!m) { pc_errf(err, errlen, "%s: field \"peft_type\": %s is not implemented by peftc yet", path, type); goto done; }
    bool train = !strcmp(mode, "train");
    if (!(cx = pc_adapt_new(m, cfg, path, train ? PC_ADAPT_TRAIN : PC_ADAPT_EVAL, train, NULL, err, errlen))) goto done;
    if (pc_adapt_linears(g, cx, NULL, err, errlen) || pc_adapt_finish(cx, *g, err, errlen)) goto done;
    rc = 0;
done:
    pc_adapt_free(cx);
    pc_adapter_config_free(cfg);
    pc_registry_free(own);
    return rc;
}
