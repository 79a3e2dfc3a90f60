/* The TCP transport (zero/comm_tcp.c) between forked processes on
 * 127.0.0.1: ring exchanges over 1, 2 and 4 ranks (3 MB, 0 bytes, and tens
 * of MB both ways at once), a killed rank seen by every other rank, a
 * timeout naming the peer, ranks that end at different times, ranks that
 * disagree (sizes, world size, a rank claimed twice), and bad options.
 *
 * Each rank is a child process that creates its own transport and reports
 * through its exit code (checks print the failed condition and the last
 * error on stderr); the parent only forks and waits, killing stragglers so
 * that a hang fails the test instead of blocking it. TEST_VERBOSE=1 prints
 * the error messages the ranks got. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/internal.h"
#include "zero/transport.h"

#define MAX_RANKS 8
#define EXIT_PORT_BUSY 98 /* rank 0 found MASTER_PORT taken: the parent tries another */

/* In a child: on failure print where and why, and exit with 1. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d: check failed at line %d: %s (last error: %s)\n", rank,       \
                    __LINE__, #cond, dsrt_error_message());                                        \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static void verbose(int rank, const char *msg)
{
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "    [rank %d got] %s\n", rank, msg);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* A port nobody listens on now, from our pid (parallel test runs differ):
 * rank 0 binds the wildcard address, so that is what is probed. */
static int free_port(void)
{
    static int seq;
    for (int tries = 0; tries < 500; tries++) {
        int port = 20000 + (int)(((unsigned)getpid() * 37u + (unsigned)seq++ * 101u) % 20000u);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_ANY);
        a.sin_port = htons((uint16_t)port);
        int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return port;
    }
    fail_msg("no free TCP port found");
    return 0;
}

/* What a rank runs: its exit code. `port` is MASTER_PORT. */
typedef int (*rank_fn)(int rank, int world, int port);

/* Fork `n` ranks running fn, wait for all (SIGKILL after limit_s); the wait
 * statuses go to st[]. Another port is tried when rank 0 found it taken. */
static void run_ranks(int n, int world, rank_fn fn, double limit_s, int st[MAX_RANKS])
{
    assert_true(n <= MAX_RANKS);
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = free_port();
        pid_t pid[MAX_RANKS];
        fflush(stdout);
        fflush(stderr);
        for (int r = 0; r < n; r++) {
            pid[r] = fork();
            assert_true(pid[r] >= 0);
            if (pid[r] == 0)
                _exit(fn(r, world, port)); /* _exit: no cmocka or stdio teardown twice */
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int left = n;
        for (int r = 0; r < n; r++)
            st[r] = -1;
        while (left > 0) {
            for (int r = 0; r < n; r++) {
                if (st[r] != -1)
                    continue;
                int s;
                if (waitpid(pid[r], &s, WNOHANG) == pid[r]) {
                    st[r] = s;
                    left--;
                }
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double el = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            if (left > 0 && el > limit_s) {
                for (int r = 0; r < n; r++)
                    if (st[r] == -1) {
                        fprintf(stderr, "rank %d still running after %.0f s: killed\n", r, el);
                        kill(pid[r], SIGKILL);
                    }
            }
            if (left > 0)
                sleep_s(0.005);
        }
        if (!(WIFEXITED(st[0]) && WEXITSTATUS(st[0]) == EXIT_PORT_BUSY))
            return;
        fprintf(stderr, "MASTER_PORT %d was taken meanwhile: trying another\n", port);
    }
    fail_msg("no usable MASTER_PORT after 5 tries");
}

static void assert_exited_0(const int *st, int n)
{
    for (int r = 0; r < n; r++) {
        if (!WIFEXITED(st[r]) || WEXITSTATUS(st[r]) != 0)
            fail_msg("rank %d: %s %d", r, WIFEXITED(st[r]) ? "exit code" : "killed by signal",
                     WIFEXITED(st[r]) ? WEXITSTATUS(st[r]) : WTERMSIG(st[r]));
    }
}

static dsrt_tcp_options options(int rank, int world, int port, double timeout_s)
{
    dsrt_tcp_options o;
    memset(&o, 0, sizeof o);
    o.rank = rank;
    o.world = world;
    o.local_rank = rank + 100; /* passed through untouched */
    o.master_addr = "127.0.0.1";
    o.master_port = port;
    o.timeout_s = timeout_s;
    return o;
}

/* Create and check the fields; an exit code when it fails. */
static int create(int rank, int world, int port, double timeout_s, dsrt_transport **t)
{
    dsrt_tcp_options o = options(rank, world, port, timeout_s);
    if (dsrt_transport_tcp_create(&o, t) != DSRT_STATUS_OK) {
        fprintf(stderr, "rank %d: create failed: %s\n", rank, dsrt_error_message());
        return strstr(dsrt_error_message(), "already in use") ? EXIT_PORT_BUSY : 2;
    }
    CHECK(*t && !strcmp((*t)->name, "tcp"));
    CHECK((*t)->rank == rank && (*t)->world == world && (*t)->local_rank == rank + 100);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static unsigned char pattern(int rank, int rep, size_t i)
{
    return (unsigned char)(i * 131u + (size_t)rank * 17u + (size_t)rep * 29u + (i >> 13));
}

/* ---------------------------------------------------------------- rings */

static int ring_rank(int rank, int world, int port)
{
    const size_t n = (size_t)3 << 20;
    dsrt_transport *t = NULL;
    int rc = create(rank, world, port, 20, &t);
    if (rc)
        return rc;
    unsigned char *s = malloc(n), *r = malloc(n);
    CHECK(s && r);
    int to = (rank + 1) % world, from = (rank - 1 + world) % world;
    for (int rep = 0; rep < 3; rep++) {
        for (size_t i = 0; i < n; i++)
            s[i] = pattern(rank, rep, i);
        memset(r, 0, n);
        CHECK(t->sendrecv(t, to, s, n, from, r, n, now_s() + 20, "ring test") == DSRT_STATUS_OK);
        for (size_t i = 0; i < n; i++)
            CHECK(r[i] == pattern(from, rep, i));
        /* an empty message still travels (and is checked as one) */
        CHECK(t->sendrecv(t, to, s, 0, from, r, 0, now_s() + 20, "empty test") == DSRT_STATUS_OK);
    }
    /* nothing either way */
    CHECK(t->sendrecv(t, -1, NULL, 0, -1, NULL, 0, now_s() + 1, "nothing") == DSRT_STATUS_OK);
    t->destroy(t);
    free(s);
    free(r);
    return 0;
}

static void test_ring_1(void **state)
{
    (void)state;
    int st[MAX_RANKS];
    run_ranks(1, 1, ring_rank, 30, st);
    assert_exited_0(st, 1);
}

static void test_ring_2(void **state)
{
    (void)state;
    int st[MAX_RANKS];
    run_ranks(2, 2, ring_rank, 30, st);
    assert_exited_0(st, 2);
}

static void test_ring_4(void **state)
{
    (void)state;
    int st[MAX_RANKS];
    run_ranks(4, 4, ring_rank, 30, st);
    assert_exited_0(st, 4);
}

/* Two ranks send each other tens of MB at once, of different sizes: far
 * past the socket buffers, so a transport that sent before receiving would
 * deadlock here. */
static int big_rank(int rank, int world, int port)
{
    const size_t nb[2] = {(size_t)40 << 20, (size_t)24 << 20}; /* rank 0 sends 40 MB, 1 sends 24 */
    dsrt_transport *t = NULL;
    int rc = create(rank, world, port, 20, &t);
    if (rc)
        return rc;
    int peer = 1 - rank;
    unsigned char *s = malloc(nb[rank]), *r = malloc(nb[peer]);
    CHECK(s && r);
    for (size_t i = 0; i < nb[rank]; i++)
        s[i] = pattern(rank, 7, i);
    CHECK(t->sendrecv(t, peer, s, nb[rank], peer, r, nb[peer], now_s() + 30, "big test") ==
          DSRT_STATUS_OK);
    for (size_t i = 0; i < nb[peer]; i++)
        CHECK(r[i] == pattern(peer, 7, i));
    t->destroy(t);
    free(s);
    free(r);
    return 0;
}

static void test_big_both_ways(void **state)
{
    (void)state;
    int st[MAX_RANKS];
    run_ranks(2, 2, big_rank, 60, st);
    assert_exited_0(st, 2);
}

/* ---------------------------------------------------------------- failures */

/* Rank 1 is killed right after the rendezvous. Rank 2 waits for it; rank 0
 * waits for rank 2 (alive, but stuck behind rank 1) and must still learn at
 * once that rank 1 is gone, from the hang-up of a connection it was not
 * reading. */
static int death_rank(int rank, int world, int port)
{
    dsrt_transport *t = NULL;
    int rc = create(rank, world, port, 20, &t);
    if (rc)
        return rc;
    if (rank == 1)
        raise(SIGKILL);
    unsigned char buf[16];
    double t0 = now_s();
    dsrt_status st = t->sendrecv(t, -1, NULL, 0, rank == 0 ? 2 : 1, buf, sizeof buf, t0 + 20,
                                 "death test");
    double el = now_s() - t0;
    verbose(rank, dsrt_error_message());
    CHECK(st == DSRT_STATUS_IO_ERROR);
    CHECK(el < 10);
    CHECK(strstr(dsrt_error_message(), "rank 1 closed its connection during death test"));
    /* stay a moment, so the other survivor sees rank 1's hang-up, not ours */
    sleep_s(1.0);
    t->failed = 1;
    t->destroy(t);
    return 0;
}

static void test_peer_death(void **state)
{
    (void)state;
    int st[MAX_RANKS];
    run_ranks(3, 3, death_rank, 30, st);
    assert_true(WIFSIGNALED(st[1]) && WTERMSIG(st[1]) == SIGKILL);
    int survivors[2] = {st[0], st[2]};
    assert_exited_0(survivors, 2);
}

/* Rank 1 is alive and connected but never sends: rank 0's 1 s deadline
 * passes. Rank 1 then sees rank 0 hang up: rank 0 does not set t->failed, so
 * this also checks that a timed-out transport closes without a goodbye (which
 * rank 1 would read as "rank 0 has finished"). */
static int timeout_rank(int rank, int world, int port)
{
    dsrt_transport *t = NULL;
    int rc = create(rank, world, port, 20, &t);
    if (rc)
        return rc;
    unsigned char buf[16];
    double t0 = now_s();
    dsrt_status st = t->sendrecv(t, -1, NULL, 0, 1 - rank, buf, sizeof buf,
                                 t0 + (rank == 0 ? 1.0 : 20.0), "timeout test");
    double el = now_s() - t0;
    verbose(rank, dsrt_error_message());
    CHECK(st == DSRT_STATUS_IO_ERROR);
    if (rank == 0) {
        CHECK(el >= 0.9 && el < 3);
        CHECK(strstr(dsrt_error_message(), "timed out after 1.0 s waiting for rank 1"));
    } else {
        CHECK(el < 5);
        CHECK(strstr(dsrt_error_message(), "rank 0 closed its connection"));
    }
    t->destroy(t);
    return 0;
}

static void test_timeout(void **state)
{
    (void)state;
    int st[MAX_RANKS];
    run_ranks(2, 2, timeout_rank, 30, st);
    assert_exited_0(st, 2);
}

/* Ranks end at different times: rank 0 destroys its transport at once while
 * rank 2 still waits for a late message from rank 1. Rank 0's goodbye must
 * not look like a death to rank 2. */
static int uneven_end_rank(int rank, int world, int port)
{
    dsrt_transport *t = NULL;
    int rc = create(rank, world, port, 20, &t);
    if (rc)
        return rc;
    unsigned char m[64];
    memset(m, rank, sizeof m);
    if (rank == 1) {
        sleep_s(0.3);
        CHECK(t->sendrecv(t, 2, m, sizeof m, -1, NULL, 0, now_s() + 10, "late") ==
              DSRT_STATUS_OK);
    } else if (rank == 2) {
        CHECK(t->sendrecv(t, -1, NULL, 0, 1, m, sizeof m, now_s() + 10, "late") ==
              DSRT_STATUS_OK);
        CHECK(m[0] == 1 && m[63] == 1);
    }
    double t0 = now_s();
    t->destroy(t); /* rank 0 waits here for the others' goodbyes */
    CHECK(now_s() - t0 < 5);
    return 0;
}

static void test_uneven_end(void **state)
{
    (void)state;
    int st[MAX_RANKS];
    run_ranks(3, 3, uneven_end_rank, 30, st);
    assert_exited_0(st, 3);
}

/* Rank 0 sends 100 bytes where rank 1 expects 200. */
static int size_mismatch_rank(int rank, int world, int port)
{
    dsrt_transport *t = NULL;
    int rc = create(rank, world, port, 20, &t);
    if (rc)
        return rc;
    unsigned char m[200] = {0};
    if (rank == 0) {
        CHECK(t->sendrecv(t, 1, m, 100, -1, NULL, 0, now_s() + 10, "mismatch") ==
              DSRT_STATUS_OK);
    } else {
        CHECK(t->sendrecv(t, -1, NULL, 0, 0, m, 200, now_s() + 10, "mismatch") ==
              DSRT_STATUS_IO_ERROR);
        verbose(rank, dsrt_error_message());
        CHECK(strstr(dsrt_error_message(), "rank 0 sent 100 bytes during mismatch where 200"));
        t->failed = 1;
    }
    double t0 = now_s();
    t->destroy(t); /* rank 0: rank 1's hang-up ends the goodbye wait */
    CHECK(now_s() - t0 < 5);
    return 0;
}

static void test_size_mismatch(void **state)
{
    (void)state;
    int st[MAX_RANKS];
    run_ranks(2, 2, size_mismatch_rank, 30, st);
    assert_exited_0(st, 2);
}

/* Rank 0 ends (destroy) while rank 1 still waits for a message from it. */
static int early_end_rank(int rank, int world, int port)
{
    dsrt_transport *t = NULL;
    int rc = create(rank, world, port, 20, &t);
    if (rc)
        return rc;
    if (rank == 1) {
        unsigned char m[8];
        CHECK(t->sendrecv(t, -1, NULL, 0, 0, m, sizeof m, now_s() + 10, "early end") ==
              DSRT_STATUS_IO_ERROR);
        verbose(rank, dsrt_error_message());
        CHECK(strstr(dsrt_error_message(), "rank 0 has finished"));
        t->failed = 1;
    }
    t->destroy(t);
    return 0;
}

static void test_early_end(void **state)
{
    (void)state;
    int st[MAX_RANKS];
    run_ranks(2, 2, early_end_rank, 30, st);
    assert_exited_0(st, 2);
}

/* Rank 1 believes in a world of 3, rank 0 in one of 2. */
static int world_mismatch_rank(int rank, int world, int port)
{
    dsrt_transport *t = NULL;
    dsrt_tcp_options o = options(rank, rank == 1 ? world + 1 : world, port, 10);
    dsrt_status st = dsrt_transport_tcp_create(&o, &t);
    verbose(rank, dsrt_error_message());
    if (st != DSRT_STATUS_OK && strstr(dsrt_error_message(), "already in use"))
        return EXIT_PORT_BUSY;
    CHECK(st == DSRT_STATUS_INVALID_ARGUMENT && t == NULL);
    CHECK(strstr(dsrt_error_message(), "WORLD_SIZE=3"));
    CHECK(strstr(dsrt_error_message(), "WORLD_SIZE=2"));
    return 0;
}

static void test_world_mismatch(void **state)
{
    (void)state;
    int st[MAX_RANKS];
    run_ranks(2, 2, world_mismatch_rank, 30, st);
    assert_exited_0(st, 2);
}

/* Three processes: ranks 0, 1 and 1 again. */
static int duplicate_rank(int rank, int world, int port)
{
    dsrt_transport *t = NULL;
    dsrt_tcp_options o = options(rank == 2 ? 1 : rank, world, port, 10);
    dsrt_status st = dsrt_transport_tcp_create(&o, &t);
    verbose(rank, dsrt_error_message());
    if (st != DSRT_STATUS_OK && strstr(dsrt_error_message(), "already in use"))
        return EXIT_PORT_BUSY;
    CHECK(st == DSRT_STATUS_INVALID_ARGUMENT && t == NULL);
    CHECK(strstr(dsrt_error_message(), "two processes claim RANK=1"));
    return 0;
}

static void test_duplicate_rank(void **state)
{
    (void)state;
    int st[MAX_RANKS];
    run_ranks(3, 3, duplicate_rank, 30, st);
    assert_exited_0(st, 3);
}

/* ---------------------------------------------------------------- bad options */

static void expect_error(const dsrt_tcp_options *o, dsrt_status want, const char *want_text)
{
    dsrt_transport *t = (dsrt_transport *)&t; /* must come back NULL */
    dsrt_error_clear();
    dsrt_status st = dsrt_transport_tcp_create(o, &t);
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "    [got] %s\n", dsrt_error_message());
    assert_null(t);
    assert_int_equal(st, want);
    if (!strstr(dsrt_error_message(), want_text))
        fail_msg("message \"%s\" does not contain \"%s\"", dsrt_error_message(), want_text);
}

static void test_bad_options(void **state)
{
    (void)state;
    int port = free_port();
    dsrt_tcp_options o = options(2, 2, port, 1);
    expect_error(&o, DSRT_STATUS_INVALID_ARGUMENT, "RANK=2");
    o = options(-1, 2, port, 1);
    expect_error(&o, DSRT_STATUS_INVALID_ARGUMENT, "RANK=-1");
    o = options(0, 0, port, 1);
    expect_error(&o, DSRT_STATUS_INVALID_ARGUMENT, "WORLD_SIZE=0");
    o = options(1, 2, 0, 1);
    expect_error(&o, DSRT_STATUS_INVALID_ARGUMENT, "MASTER_PORT=0");
    o = options(1, 2, 70000, 1);
    expect_error(&o, DSRT_STATUS_INVALID_ARGUMENT, "MASTER_PORT=70000");
    o = options(1, 2, port, 1);
    o.master_addr = "";
    expect_error(&o, DSRT_STATUS_INVALID_ARGUMENT, "MASTER_ADDR");
    o = options(1, 2, port, 0);
    expect_error(&o, DSRT_STATUS_INVALID_ARGUMENT, "timeout");

    /* a name that cannot resolve: INVALID_ARGUMENT, or IO_ERROR when DNS
     * itself is down; either way the value is named */
    o = options(1, 2, port, 1);
    o.master_addr = "no-such-host.invalid";
    dsrt_transport *t = NULL;
    dsrt_status st = dsrt_transport_tcp_create(&o, &t);
    assert_null(t);
    assert_true(st == DSRT_STATUS_INVALID_ARGUMENT || st == DSRT_STATUS_IO_ERROR);
    assert_non_null(strstr(dsrt_error_message(), "MASTER_ADDR=\"no-such-host.invalid\""));

    /* no master at all: gives up after timeout_s, naming the address */
    char want[64];
    snprintf(want, sizeof want, "MASTER_ADDR=127.0.0.1 MASTER_PORT=%d", port);
    double t0 = now_s();
    o = options(1, 2, port, 1);
    expect_error(&o, DSRT_STATUS_IO_ERROR, want);
    double el = now_s() - t0;
    assert_true(el >= 0.9 && el < 3);

    /* a master whose ranks never come: gives up, naming who is missing; the
     * port is free again afterwards */
    t0 = now_s();
    o = options(0, 3, port, 1);
    expect_error(&o, DSRT_STATUS_IO_ERROR, "1 of 3 ranks joined (missing rank 1, 2)");
    el = now_s() - t0;
    assert_true(el >= 0.9 && el < 3);
    expect_error(&o, DSRT_STATUS_IO_ERROR, "timed out");

    /* one rank needs no network at all, and sendrecv with itself copies */
    o = options(0, 1, port, 1);
    t = NULL;
    assert_int_equal(dsrt_transport_tcp_create(&o, &t), DSRT_STATUS_OK);
    char a[4] = "abc", b[4] = "";
    assert_int_equal(t->sendrecv(t, 0, a, 4, 0, b, 4, now_s() + 1, "self"), DSRT_STATUS_OK);
    assert_string_equal(b, "abc");
    assert_int_equal(t->sendrecv(t, 0, a, 4, -1, NULL, 0, now_s() + 1, "self"),
                     DSRT_STATUS_INVALID_ARGUMENT);
    assert_int_equal(t->sendrecv(t, 1, a, 4, -1, NULL, 0, now_s() + 1, "self"),
                     DSRT_STATUS_INVALID_ARGUMENT);
    t->destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options),    cmocka_unit_test(test_ring_1),
        cmocka_unit_test(test_ring_2),         cmocka_unit_test(test_ring_4),
        cmocka_unit_test(test_big_both_ways),  cmocka_unit_test(test_peer_death),
        cmocka_unit_test(test_timeout),        cmocka_unit_test(test_uneven_end),
        cmocka_unit_test(test_size_mismatch),  cmocka_unit_test(test_early_end),
        cmocka_unit_test(test_world_mismatch), cmocka_unit_test(test_duplicate_rank),
    };
    /* SIGPIPE is left at its default on purpose: a send without
     * MSG_NOSIGNAL to a dead rank would kill the sender and fail the test */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
