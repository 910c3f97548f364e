/* LD_PRELOAD shim for the PyTorch baseline (bench/torch_llama_lora.py --mkl-avx512 LIB).
 * The MKL inside PyPI's torch picks its code path by CPU vendor: on AMD it reports
 * "Intel(R) Architecture processors" (a generic AVX2 path) whatever MKL_ENABLE_INSTRUCTIONS,
 * MKL_CBWR or MKL_DEBUG_CPU_TYPE say. These three service functions are exported by
 * libtorch_cpu.so and called through its PLT, so overriding them makes MKL take the AVX-512 path
 * it would take on an Intel CPU with the same ISA (MKL_VERBOSE then names AVX-512). Only for
 * benchmarking; the ISA is really there (avx512f/bw/vl/dq/bf16 in /proc/cpuinfo).
 * Build: gcc -O2 -shared -fPIC bench/mkl_avx512.c -o build/bench/libmkl_avx512.so */
int mkl_serv_intel_cpu_true(void);
int mkl_serv_intel_cpu(void);
int mkl_serv_cpuiszen(void);

int mkl_serv_intel_cpu_true(void) { return 1; }
int mkl_serv_intel_cpu(void) { return 1; }
int mkl_serv_cpuiszen(void) { return 0; }
