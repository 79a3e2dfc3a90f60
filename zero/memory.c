/* Per-rank model-state bytes (see memory.h). */
#include "zero/memory.h"

zero_memory zero_memory_per_rank(uint64_t numel, int world, int stage, int dtype_bytes,
                                 uint64_t reduce_bucket_size, bool overlap_comm,
                                 bool contiguous_gradients)
{
    uint64_t n = world > 0 ? (uint64_t)world : 1;
    uint64_t align = 2 * n;
    uint64_t padded = (numel + align - 1) / align * align;
    uint64_t part = padded / n;
    uint64_t owned = stage >= 1 ? part : numel; /* optimizer state kept by this rank */
    zero_memory m = {0};
    m.params = numel * (uint64_t)dtype_bytes;
    m.grads = (stage >= 2 ? part : numel) * (uint64_t)dtype_bytes;
    m.masters = dtype_bytes == 4 ? 0 : owned * 4;
    m.moments = owned * 8;
    if (stage >= 2 && contiguous_gradients)
        m.buckets = reduce_bucket_size * (uint64_t)dtype_bytes * (overlap_comm ? 2 : 1);
    m.total = m.params + m.grads + m.masters + m.moments + m.buckets;
    return m;
}
