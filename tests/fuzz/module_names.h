/* module names the matching harnesses run patterns against: Llama (two layers), GPT-2, BERT */
#ifndef PEFTC_FUZZ_MODULE_NAMES_H
#define PEFTC_FUZZ_MODULE_NAMES_H
static const char *const fuzz_module_names[] = {
    "model.embed_tokens",
    "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
    "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj",
    "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj",
    "model.layers.0.input_layernorm", "model.layers.0.post_attention_layernorm",
    "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj",
    "model.layers.1.mlp.down_proj", "model.layers.12.mlp.up_proj",
    "model.norm", "lm_head",
    "transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_fc",
    "h.3.attn.c_attn", "bert.encoder.layer.2.attention.self.query",
    "classifier", "score", "", ".", "a..b", "layers.7.", "model.layers.x.mlp.up_proj",
    "caf\xc3\xa9.layers.0.q_proj",
};
#define FUZZ_N_MODULE_NAMES (sizeof fuzz_module_names / sizeof fuzz_module_names[0])
#endif
