/* User-registered adapter methods (PC_PEFT_CUSTOM, see "custom methods" in adapter_config.h):
 * the method's own fields live in custom_json; this file compares them and reads them for the
 * method (pc_adapter_config_custom_number / _string). */
#include "runtime/adapter_config_internal.h"

#include <stdlib.h>
#include <string.h>

char *ac_compact_json(const json_t *v) {
    pc_textbuf b = {0};
    ac_py_dump(&b, v, AC_PY_COMPACT, 0);
    if (b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

json_t *ac_custom_object(const pc_adapter_config *cfg) {
    if (!cfg->custom_json) return json_object();
    json_t *o = json_loads(cfg->custom_json, 0, NULL);
    if (o && !json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* custom_json without the keys the struct holds (PeftConfig and targeting fields, peft_type) */
static json_t *own_fields(const pc_adapter_config *cfg) {
    json_t *o = ac_custom_object(cfg);
    if (!o) return NULL;
    for (int i = 0; i < F_COUNT; i++)
        if (AC_FIELDS[i].types & T_CUSTOM) json_object_del(o, AC_FIELDS[i].name);
    return o;
}

bool ac_custom_fields_equal(const pc_adapter_config *a, const pc_adapter_config *b) {
    json_t *x = own_fields(a), *y = own_fields(b);
    bool eq = x && y && json_equal(x, y);
    json_decref(x);
    json_decref(y);
    return eq;
}

/* ------------------------------------------------------------------------------------------------
 * accessors. Each distinct custom_json text is parsed once; the parsed copies form a list that
 * only grows (pushed with an atomic compare-and-swap, so concurrent readers of one config are
 * safe) and is freed with the config, so returned strings stay valid until then.
 * ---------------------------------------------------------------------------------------------- */

typedef struct custom_cache {
    struct custom_cache *next;
    char *text;  /* the custom_json text this was parsed from */
    json_t *obj; /* NULL when the text is not a JSON object */
} custom_cache;

void ac_custom_cache_free(pc_adapter_config *cfg) {
    custom_cache *c = cfg->custom_cache_;
    while (c) {
        custom_cache *next = c->next;
        json_decref(c->obj);
        free(c->text);
        free(c);
        c = next;
    }
    cfg->custom_cache_ = NULL;
}

/* the parsed custom_json of cfg, or NULL (no custom_json, not an object, out of memory) */
static const json_t *custom_obj(const pc_adapter_config *cfg) {
    if (!cfg || !cfg->custom_json) return NULL;
    void **slot = (void **)&((pc_adapter_config *)cfg)->custom_cache_;
    custom_cache *fresh = NULL;
    for (;;) {
        custom_cache *head = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        for (custom_cache *c = head; c; c = c->next)
            if (strcmp(c->text, cfg->custom_json) == 0) {
                if (fresh) {
                    json_decref(fresh->obj);
                    free(fresh->text);
                    free(fresh);
                }
                return c->obj;
            }
        if (!fresh) {
            fresh = calloc(1, sizeof *fresh);
            if (!fresh) return NULL;
            fresh->text = ac_strdup(cfg->custom_json);
            if (!fresh->text) {
                free(fresh);
                return NULL;
            }
            fresh->obj = json_loads(fresh->text, 0, NULL);
            if (fresh->obj && !json_is_object(fresh->obj)) {
                json_decref(fresh->obj);
                fresh->obj = NULL;
            }
        }
        fresh->next = head;
        void *expected = head;
        if (__atomic_compare_exchange_n(slot, &expected, (void *)fresh, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return fresh->obj;
    }
}

int pc_adapter_config_custom_number(const pc_adapter_config *cfg, const char *field, double *out) {
    if (!field) return 1;
    const json_t *v = json_object_get(custom_obj(cfg), field);
    if (!v || json_is_null(v)) return 1;
    if (!json_is_number(v)) return -1;
    if (out) *out = json_number_value(v);
    return 0;
}

const char *pc_adapter_config_custom_string(const pc_adapter_config *cfg, const char *field) {
    if (!field) return NULL;
    const json_t *v = json_object_get(custom_obj(cfg), field);
    return json_is_string(v) ? json_string_value(v) : NULL;
}
