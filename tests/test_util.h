/* Helpers shared by the CMocka tests of ops and kernels: a small
 * deterministic generator (xorshift64) and a status check that fails the
 * test with the library's message. Include after <cmocka.h>. */
#ifndef DSRT_TEST_UTIL_H
#define DSRT_TEST_UTIL_H

#include <stdint.h>

#include "base/internal.h"

#define OK(call)                                                                                   \
    do {                                                                                           \
        dsrt_status st_ = (call);                                                                  \
        if (st_ != DSRT_STATUS_OK)                                                                 \
            fail_msg("%s: status %d: %s", #call, (int)st_, dsrt_error_message());                  \
    } while (0)

static uint64_t rng_state = 88172645463325252ull;

static inline uint64_t rnd_u64(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* uniform in [-1, 1) */
static inline float rnd_uniform(void)
{
    return (float)((rnd_u64() >> 40) * 0x1.0p-24 * 2.0 - 1.0);
}

#endif
