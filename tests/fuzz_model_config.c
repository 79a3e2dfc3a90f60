/* libFuzzer target: any bytes through the Hugging Face config readers
 * (model/model.c picks GPT2Config or the LLaMA family's by model_type) must
 * give OK or a clean rejection (no crash, leak or undefined behaviour, under
 * ASan/UBSan), and an accepted config must be one the model can be built
 * from: positive sizes, GPT-2's n_embd a multiple of n_head, LLaMA's heads a
 * multiple of the key/value heads and an even head size. */
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsrt_model_config m;
    if (dsrt_model_config_parse((const char *)data, size, "fuzz", &m) != DSRT_STATUS_OK)
        return 0;
    if (m.arch == DSRT_ARCH_GPT2) {
        const dsrt_gpt2_config *c = &m.gpt2;
        if (c->vocab_size < 1 || c->n_positions < 1 || c->n_embd < 1 || c->n_layer < 1 || c->n_head < 1 ||
            c->n_inner < 1 || c->n_embd % c->n_head != 0 || !(c->layer_norm_epsilon > 0))
            __builtin_trap();
    } else {
        const dsrt_llama_config *c = &m.llama;
        if (c->vocab_size < 1 || c->hidden_size < 1 || c->intermediate_size < 1 || c->num_hidden_layers < 1 ||
            c->num_attention_heads < 1 || c->num_key_value_heads < 1 ||
            c->num_attention_heads % c->num_key_value_heads || c->head_dim < 2 || c->head_dim % 2 ||
            !(c->rms_norm_eps > 0) || !(c->rope_theta > 0) || c->sliding_window < 0)
            __builtin_trap();
    }
    return 0;
}
