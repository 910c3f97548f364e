/* The adapter-method registry: the built-in methods (one line each in adapters/methods.def)
 * and a user's own. */
#include "passes/adapt.h"
#include "runtime/fileio.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define METHOD(name) extern const pc_adapter_method pc_method_##name;
#include "passes/adapters/methods.def"
#undef METHOD

static const pc_adapter_method *const builtins[] = {
#define METHOD(name) &pc_method_##name,
#include "passes/adapters/methods.def"
#undef METHOD
    NULL,
};

const pc_adapter_method *const *pc_builtin_methods(void) { return builtins; }

struct pc_registry {
    const pc_adapter_method **m;
    int n, cap;
};

pc_registry *pc_registry_new(void) {
    pc_registry *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    for (int i = 0; builtins[i]; i++)
        if (pc_registry_add(r, builtins[i], NULL, 0)) { pc_registry_free(r); return NULL; }
    return r;
}

void pc_registry_free(pc_registry *r) {
    if (!r) return;
    free(r->m);
    free(r);
}

const pc_adapter_method *pc_registry_find(const pc_registry *r, const char *name) {
    if (!name) return NULL;
    for (int i = 0; r && i < r->n; i++)
        if (strcasecmp(r->m[i]->name, name) == 0 || (r->m[i]->peft_type && strcmp(r->m[i]->peft_type, name) == 0))
            return r->m[i];
    return NULL;
}

int pc_registry_add(pc_registry *r, const pc_adapter_method *m, char *err, size_t errlen) {
    if (!r || !m || !m->name || !m->name[0] || !m->rewrite)
        return pc_errf(err, errlen, "registering an adapter method: it needs a name and a rewrite");
    if (pc_registry_find(r, m->name) || (m->peft_type && pc_registry_find(r, m->peft_type)))
        return pc_errf(err, errlen, "an adapter method named '%s' (peft_type %s) is already registered", m->name,
                       m->peft_type ? m->peft_type : "-");
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 8;
        const pc_adapter_method **a = realloc(r->m, (size_t)cap * sizeof *a);
        if (!a) return pc_errf(err, errlen, "out of memory");
        r->m = a, r->cap = cap;
    }
    r->m[r->n++] = m;
    return 0;
}

int pc_registry_count(const pc_registry *r) { return r ? r->n : 0; }
const pc_adapter_method *pc_registry_at(const pc_registry *r, int i) { return r && i >= 0 && i < r->n ? r->m[i] : NULL; }

size_t pc_registry_custom_types(const pc_registry *r, const char **names, size_t cap) {
    size_t n = 0;
    for (int i = 0; r && i < r->n && n < cap; i++)
        if (r->m[i]->peft_type && pc_peft_type_from_name(r->m[i]->peft_type) == PC_PEFT_NONE) names[n++] = r->m[i]->peft_type;
    return n;
}
