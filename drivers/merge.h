/* Merging an adapter into the base weights (PEFT's merge_and_unload): W' = W + ΔW.
 * LoRA: ΔW = s · B A (fan_in_fan_out = false), bias += s · b_B when lora_bias. */
#ifndef PEFTC_DRIVERS_MERGE_H
#define PEFTC_DRIVERS_MERGE_H

#include "drivers/session.h"

/* Owned copies of the base tensors with the adapter merged in (same order and names as
 * session->model->tensors). A tied classifier stays tied: lm_head points at the merged
 * embedding. */
typedef struct {
    int n;
    pc_l2c_tensor *tensors; /* data points into buf */
    float *buf;
    int merged_modules;
} pc_merged_model;

int pc_merge_adapter(const pc_session *s, pc_merged_model *out, char *err, size_t errlen);
void pc_merged_free(pc_merged_model *m);

/* the merged model as an l2c model view (for binding and generation); borrows m */
pc_l2c_model pc_merged_view(const pc_session *s, const pc_merged_model *m);

#endif
