/* Kernel fingerprints and names, and which ops a kernel may contain (backend/kernel.h): shared by
 * the fusion, the JIT and the AOT builds. */
#include "backend/kernel.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    uint64_t h;
} fnv;

static void mix(fnv *f, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) f->h = (f->h ^ b[i]) * 1099511628211ull;
}
static void mix_i64(fnv *f, int64_t v) { mix(f, &v, sizeof v); }
static void mix_f64(fnv *f, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    mix(f, &u, sizeof u);
}

uint64_t pc_kernel_desc_hash(const pc_kernel_desc *k) {
    fnv f = {1469598103934665603ull};
    mix_i64(&f, k->rank);
    for (int d = 0; d < k->rank && d < PC_MAX_RANK; d++) mix_i64(&f, k->dim[d]);
    mix_i64(&f, k->ninputs);
    for (int i = 0; i < k->ninputs && i < PC_K_MAX_IN; i++) {
        mix_i64(&f, k->input[i].dtype);
        for (int d = 0; d < k->rank && d < PC_MAX_RANK; d++) mix_i64(&f, k->input[i].stride[d]);
    }
    mix_i64(&f, k->ninsns);
    for (int i = 0; i < k->ninsns && i < PC_K_MAX_INSNS; i++) {
        const pc_kinsn *I = &k->insn[i];
        mix_i64(&f, I->op);
        mix_i64(&f, I->nin);
        mix_i64(&f, I->dtype);
        for (int j = 0; j < I->nin && j < 4; j++) mix_i64(&f, I->in[j]);
        for (int a = 0; a < PC_MAX_ATTRS; a++) {
            mix_i64(&f, I->attr[a].i);
            mix_f64(&f, I->attr[a].f);
            mix_i64(&f, I->attr[a].n);
            for (int j = 0; j < I->attr[a].n && j < PC_MAX_INTS; j++) mix_i64(&f, I->attr[a].ints[j]);
        }
    }
    mix_i64(&f, k->noutputs);
    for (int i = 0; i < k->noutputs && i < PC_K_MAX_OUT; i++) mix_i64(&f, k->output[i]);
    return f.h;
}

void pc_kernel_name(const pc_kernel_desc *k, char name[PC_KERNEL_NAME_MAX]) {
    snprintf(name, PC_KERNEL_NAME_MAX, "pc_k_%016llx", (unsigned long long)pc_kernel_desc_hash(k));
}

bool pc_fusable_op(pc_opcode op) {
    if ((int)op < 0 || op >= PC_OP_COUNT || pc_op_get(op)->fusion != PC_FUSE_ELEMENTWISE) return false;
    return op != PC_OP_rope && op != PC_OP_causal_mask;
}

int pc_kernel_hp_operand(pc_opcode op) {
    switch (op) {
    case PC_OP_adamw_m: case PC_OP_adamw_v: return 2;
    case PC_OP_adamw_p: return 3;
    case PC_OP_clip_coef: return 1;
    default: return -1;
    }
}
