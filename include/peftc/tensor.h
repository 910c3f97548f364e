/* A tensor view shared by the runtime and the compiler: dtype, shape and a data pointer. */
#ifndef PEFTC_TENSOR_H
#define PEFTC_TENSOR_H
#include "peftc/peftc.h"

typedef struct {
    pc_dtype dtype;
    pc_shape shape;
    void *data; /* not owned unless the API that returns it says so */
} pc_tensor;

#endif
