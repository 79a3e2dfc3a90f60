/* libFuzzer target: any bytes through the Hugging Face GPT2Config reader
 * (model/gpt2_config.c) must give OK or a clean rejection (no crash, leak or
 * undefined behaviour, under ASan/UBSan), and an accepted config must be one
 * the model can be built from: positive sizes, n_embd a multiple of n_head. */
#include <stddef.h>
#include <stdint.h>

#include "model/gpt2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsrt_gpt2_config c;
    if (dsrt_gpt2_config_parse((const char *)data, size, "fuzz", &c) == DSRT_STATUS_OK) {
        if (c.vocab_size < 1 || c.n_positions < 1 || c.n_embd < 1 || c.n_layer < 1 || c.n_head < 1 ||
            c.n_inner < 1 || c.n_embd % c.n_head != 0 || !(c.layer_norm_epsilon > 0))
            __builtin_trap();
    }
    return 0;
}
