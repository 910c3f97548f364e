/* What a JSON value is, in the words messages about Python-made files use ("a list", "a
 * float", "null"): adapter_config.json, datasets, labels files. */
#ifndef PEFTC_RUNTIME_JSON_KIND_H
#define PEFTC_RUNTIME_JSON_KIND_H

#include <jansson.h>

const char *pc_json_kind(const json_t *v);

#endif
