/* libFuzzer target: any bytes through the whole ds_config reader (parse,
 * "auto", validation, batch resolution, printing) must give OK or a clean
 * rejection: no crash, no leak, no undefined behaviour (run under ASan/UBSan
 * by tests/run_fuzz.sh). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsrt.h"

const dsrt_api *dsrt_api_table(void);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* tests/run_fuzz.sh's self-test: a planted crash must fail the run */
    static const char planted[] = "dsrt-fuzz-selftest";
    static int selftest = -1;
    if (selftest < 0)
        selftest = getenv("DSRT_FUZZ_SELFTEST") != NULL;
    if (selftest && size >= sizeof planted - 1 && !memcmp(data, planted, sizeof planted - 1))
        __builtin_trap();
    const dsrt_api *api = dsrt_api_table();
    static const char *const hf[] = {"max_steps=100", "warmup_steps=5", "hidden_size=64"};
    /* the first byte picks the world size and whether hf values are given */
    int32_t world = size ? 1 + (data[0] & 7) : 1;
    dsrt_config_create_args a = {.struct_size = sizeof a, .text = (const char *)data, .text_length = size,
                                 .world_size = world, .hf_values = hf, .hf_value_count = (size && (data[0] & 8)) ? 3 : 0};
    if (api->config_create(&a) == DSRT_STATUS_OK) {
        dsrt_config_to_json_args j = {.struct_size = sizeof j, .config = a.config, .indent = 2};
        if (api->config_to_json(&j) != DSRT_STATUS_OK || strlen(j.json) != j.json_length)
            __builtin_trap();
        /* the printed form must read back */
        dsrt_config_create_args b = {.struct_size = sizeof b, .text = j.json, .text_length = j.json_length,
                                     .world_size = world};
        if (api->config_create(&b) != DSRT_STATUS_OK)
            __builtin_trap();
        dsrt_config_destroy_args d2 = {.struct_size = sizeof d2, .config = b.config};
        api->config_destroy(&d2);
        dsrt_config_destroy_args d = {.struct_size = sizeof d, .config = a.config};
        api->config_destroy(&d);
    }
    return 0;
}
