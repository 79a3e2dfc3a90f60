/* libFuzzer target: any bytes as a safetensors file (model/safetensors.c)
 * must give OK or a clean rejection (no crash, leak or undefined behaviour,
 * under ASan/UBSan); an accepted file's tensors must lie inside it, tile its
 * data section, and widen to fp32 where they are floating point. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (st_check_bytes(data, size, "fuzz") != DSRT_STATUS_OK)
        return 0;
    /* accepted: open it through the file path too, and read every tensor */
    char path[] = "/tmp/dsrt_fuzz_st_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        unlink(path);
        return 0;
    }
    close(fd);
    st_file f;
    if (st_open(path, &f) != DSRT_STATUS_OK)
        __builtin_trap(); /* the bytes were accepted in memory */
    size_t covered = 0;
    for (size_t i = 0; i < f.n; i++) {
        const st_tensor *t = &f.tensors[i];
        const uint8_t *p = t->data, *base = f.map;
        if (p < base || p + t->nbytes > base + f.size)
            __builtin_trap();
        covered += t->nbytes;
        size_t esz = st_dtype_size(t->dtype);
        float *v = malloc(t->nbytes / esz * sizeof(float) + 1);
        if (v && (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64) &&
            st_to_f32(t, v) != DSRT_STATUS_OK)
            __builtin_trap();
        free(v);
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | data[i];
    if (covered != size - 8 - hl)
        __builtin_trap();
    st_close(&f);
    unlink(path);
    return 0;
}
