/* ZeRO flat-buffer layout against spec 9(g) (DeepSpeed's own partitioning,
 * printed), plus properties over random groups: every element of every
 * parameter owned exactly once, partitions equal and even, padding only at
 * the tail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"
#include "zero/memory.h"
#include "zero/partition.h"

typedef struct piece { size_t param, off, n; } piece;

static void expect_rank(const zero_layout *l, int rank, const piece *want, size_t n_want,
                        size_t first_offset, size_t padding)
{
    size_t s0 = l->rank_slices[rank], s1 = l->rank_slices[rank + 1];
    assert_int_equal(s1 - s0, n_want);
    for (size_t i = 0; i < n_want; i++) {
        assert_int_equal(l->slices[s0 + i].param, want[i].param);
        assert_int_equal(l->slices[s0 + i].offset_in_param, want[i].off);
        assert_int_equal(l->slices[s0 + i].n, want[i].n);
    }
    assert_int_equal(zero_layout_first_offset(l, rank), first_offset);
    assert_int_equal(zero_layout_padding(l, rank), padding);
}

static void test_spec_vectors(void **state)
{
    (void)state;
    zero_layout l;
    /* numels=[5, 3, 10, 7] dp=4 */
    size_t a[] = {5, 3, 10, 7};
    OK(zero_layout_build(a, 4, 4, false, &l));
    assert_int_equal(l.total, 25);
    assert_int_equal(l.padded, 32);
    assert_int_equal(l.partition_size, 8);
    expect_rank(&l, 0, (piece[]){{0, 0, 5}, {1, 0, 3}}, 2, 0, 0);
    expect_rank(&l, 1, (piece[]){{2, 0, 8}}, 1, 0, 0);
    expect_rank(&l, 2, (piece[]){{2, 8, 2}, {3, 0, 6}}, 2, 8, 0);
    expect_rank(&l, 3, (piece[]){{3, 6, 1}}, 1, 6, 7);
    zero_layout_free(&l);
    /* numels=[5, 3, 10, 7, 4, 6] dp=4 */
    size_t b[] = {5, 3, 10, 7, 4, 6};
    OK(zero_layout_build(b, 6, 4, false, &l));
    assert_int_equal(l.padded, 40);
    assert_int_equal(l.partition_size, 10);
    expect_rank(&l, 0, (piece[]){{0, 0, 5}, {1, 0, 3}, {2, 0, 2}}, 3, 0, 0);
    expect_rank(&l, 1, (piece[]){{2, 2, 8}, {3, 0, 2}}, 2, 2, 0);
    expect_rank(&l, 2, (piece[]){{3, 2, 5}, {4, 0, 4}, {5, 0, 1}}, 3, 2, 0);
    expect_rank(&l, 3, (piece[]){{5, 1, 5}}, 1, 1, 5);
    zero_layout_free(&l);
    /* the same with round_robin_gradients: order [0, 4, 1, 5, 2, 3] */
    OK(zero_layout_build(b, 6, 4, true, &l));
    size_t order[] = {0, 4, 1, 5, 2, 3};
    assert_memory_equal(l.order, order, sizeof order);
    expect_rank(&l, 0, (piece[]){{0, 0, 5}, {4, 0, 4}, {1, 0, 1}}, 3, 0, 0);
    expect_rank(&l, 1, (piece[]){{1, 1, 2}, {5, 0, 6}, {2, 0, 2}}, 3, 1, 0);
    expect_rank(&l, 2, (piece[]){{2, 2, 8}, {3, 0, 2}}, 2, 2, 0);
    expect_rank(&l, 3, (piece[]){{3, 2, 5}}, 1, 2, 5);
    zero_layout_free(&l);
    /* numels=[3] dp=4: ranks 2 and 3 own only padding */
    size_t c[] = {3};
    OK(zero_layout_build(c, 1, 4, false, &l));
    assert_int_equal(l.padded, 8);
    expect_rank(&l, 0, (piece[]){{0, 0, 2}}, 1, 0, 0);
    expect_rank(&l, 1, (piece[]){{0, 2, 1}}, 1, 2, 1);
    expect_rank(&l, 2, NULL, 0, 0, 2);
    expect_rank(&l, 3, NULL, 0, 0, 2);
    zero_layout_free(&l);
}

static void test_properties(void **state)
{
    (void)state;
    for (int trial = 0; trial < 500; trial++) {
        size_t n = 1 + rnd_u64() % 30;
        int world = 1 + (int)(rnd_u64() % 9);
        bool rr = rnd_u64() & 1;
        size_t *numels = malloc(n * sizeof(size_t));
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += numels[i] = 1 + rnd_u64() % (trial % 3 ? 50 : 5000);
        zero_layout l;
        OK(zero_layout_build(numels, n, world, rr, &l));
        assert_int_equal(l.padded % (2 * (size_t)world), 0);
        assert_true(l.padded >= total && l.padded - total < 2 * (size_t)world);
        assert_int_equal(l.partition_size * (size_t)world, l.padded);
        size_t *covered = calloc(n, sizeof(size_t));
        size_t flat = 0;
        for (int r = 0; r < world; r++) {
            size_t lo = (size_t)r * l.partition_size, owned = 0;
            for (size_t s = l.rank_slices[r]; s < l.rank_slices[r + 1]; s++) {
                const zero_slice *z = &l.slices[s];
                assert_true(z->n > 0);
                assert_int_equal(z->flat_offset, flat); /* contiguous, in flat order */
                assert_true(z->flat_offset >= lo && z->flat_offset + z->n <= lo + l.partition_size);
                assert_int_equal(z->flat_offset, l.param_offset[z->param] + z->offset_in_param);
                assert_int_equal(z->offset_in_param, covered[z->param]); /* in order, no overlap */
                covered[z->param] += z->n;
                flat += z->n;
                owned += z->n;
            }
            /* padding only after the last parameter */
            if (zero_layout_padding(&l, r))
                assert_true(flat == total);
            assert_int_equal(owned + zero_layout_padding(&l, r), l.partition_size);
        }
        for (size_t i = 0; i < n; i++)
            assert_int_equal(covered[i], numels[i]);
        free(covered);
        free(numels);
        zero_layout_free(&l);
    }
    zero_layout bad;
    size_t z[] = {4, 0};
    assert_int_equal(zero_layout_build(z, 2, 2, false, &bad), DSRT_STATUS_INVALID_ARGUMENT);
    assert_int_equal(zero_layout_build(z, 1, 0, false, &bad), DSRT_STATUS_INVALID_ARGUMENT);
}

/* spec 9(h): 7B parameters, fp16 + Adam, in GiB (model states, buckets apart) */
static void test_memory_formula(void **state)
{
    (void)state;
    const uint64_t psi = 7000000000ull;
    struct { int n; double gib[3]; } rows[] = {
        {1, {104.3, 104.3, 104.3}}, {8, {104.3, 35.9, 24.4}}, {64, {104.3, 27.3, 14.5}}};
    for (size_t r = 0; r < 3; r++) {
        for (int stage = 0; stage <= 2; stage++) {
            zero_memory m = zero_memory_per_rank(psi, rows[r].n, stage, 2, 200000000, true, true);
            double gib = (double)(m.total - m.buckets) / (double)(1ull << 30);
            if (gib < rows[r].gib[stage] - 0.05 || gib > rows[r].gib[stage] + 0.05)
                fail_msg("N=%d stage %d: %.2f GiB, spec %.1f", rows[r].n, stage, gib,
                         rows[r].gib[stage]);
        }
    }
    /* the buckets: 2e8 elements x 2 B x 2 (overlap_comm) = 0.75 GiB, stage 2 only */
    zero_memory m = zero_memory_per_rank(psi, 8, 2, 2, 200000000, true, true);
    assert_int_equal(m.buckets, 800000000ull);
    assert_int_equal(zero_memory_per_rank(psi, 8, 1, 2, 200000000, true, true).buckets, 0);
    /* exact partition arithmetic: 25 elements on 4 ranks pad to 32, 8 per rank */
    m = zero_memory_per_rank(25, 4, 2, 2, 0, false, false);
    assert_int_equal(m.grads, 16);
    assert_int_equal(m.masters, 32);
    assert_int_equal(m.moments, 64);
    assert_int_equal(m.params, 50);
    /* fp32 weights are their own masters */
    assert_int_equal(zero_memory_per_rank(25, 1, 0, 4, 0, false, false).masters, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_vectors),
        cmocka_unit_test(test_properties),
        cmocka_unit_test(test_memory_formula),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
