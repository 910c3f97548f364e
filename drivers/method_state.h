/* What a method keeps between the steps of a training run besides its params and their
 * optimizer moments (AdaLoRA's importance EMAs and rank masks): written into a resumable
 * checkpoint through the method's save_state, read back on --resume through its load_state.
 * Also the tensor sink methods write files through (pc_tensor_io.put). */
#ifndef PEFTC_DRIVERS_METHOD_STATE_H
#define PEFTC_DRIVERS_METHOD_STATE_H

#include "drivers/store.h"
#include "passes/adapt.h"
#include "runtime/safetensors.h"

/* a pc_tensor_io.put into a safetensors writer: each tensor copied, since the writer borrows
 * until it writes; free the copies after pc_st_write */
typedef struct {
    pc_st_writer *w;
    float **copies;
    int n;
} pc_st_put;
int pc_st_put_tensor(void *put_ctx, const char *key, pc_shape shape, const float *data);
void pc_st_put_free(pc_st_put *p);

/* the method's save_state into p (nothing without one); errors name the method */
int pc_method_state_save(pc_adapt_ctx *cx, pc_store *store, pc_st_put *p, char *err, size_t errlen);
/* the method's load_state from the checkpoint's file f (its get sees the run's params, then f's
 * F32 tensors); nothing without one */
int pc_method_state_load(pc_adapt_ctx *cx, pc_store *store, const pc_st_file *f, char *err, size_t errlen);

#endif
