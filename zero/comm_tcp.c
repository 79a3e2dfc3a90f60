/* The TCP transport (transport.h): ranks started by the deepspeed / torchrun
 * launchers (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) find each other
 * through rank 0 and then keep one TCP connection per pair of ranks.
 *
 * Rendezvous. Rank 0 listens on MASTER_PORT. Every other rank connects to it
 * (retrying: the master may start later), opens its own listening socket on
 * an ephemeral port of the interface it reaches the master through, and
 * sends a hello: its rank, the world size it was given and where it listens.
 * Once all have joined, rank 0 answers everyone with the table of listeners,
 * and each rank j connects to every rank 0 < i < j and says hello again. The
 * connection to the master is kept as the pair (0, j), so rank 0 needs no
 * second listener. Each hello is checked: two processes claiming one rank, or
 * disagreeing on the world size, end in an error naming both values (the
 * master also sends the reason to the ranks that already joined). Every step
 * is bounded by timeout_s.
 *
 * Transfers. sendrecv moves one frame each way (an 8-byte length, then the
 * bytes) with poll() over non-blocking sockets, so two ranks sending to each
 * other never wait on each other's full socket buffers. The length is checked
 * against what the receiver expects, which catches ranks running different
 * collectives. While it waits, sendrecv also watches every other peer's
 * connection for a hang-up: a process that dies has all its sockets closed by
 * the kernel, and every rank sees that at once instead of when the ring gets
 * to it.
 *
 * Shutdown. A rank that simply closed its connections at the end would look
 * dead to a peer still finishing its last transfer with a third rank. So
 * destroy first sends a goodbye frame to every peer and waits (up to
 * timeout_s) for theirs, a barrier like MPI_Finalize, and closes after; a peer
 * still waiting for data from it reads the goodbye and fails with a message
 * saying so. After a failed collective (t->failed) or a failed transfer,
 * destroy closes at once: that hang-up is what tells the other ranks. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/internal.h"
#include "zero/transport.h"

/* ---------------------------------------------------------------- wire format
 * All integers big-endian.
 *   address record (20 bytes): family (4 or 6), 0, port, 16 address bytes
 *                     (no IPv6 scope id: link-local addresses are not carried)
 *   hello (36 bytes): magic, version, rank, world, address record
 *                     (the listener; zeros in the mesh hellos)
 *   reply (12 bytes): magic, status, world; then with status 0 the table
 *                     (world address records, rank 0's unused), otherwise a
 *                     256-byte NUL-padded reason
 *   frame: 8-byte length, then the bytes; GOODBYE as the length ends a stream */
#define TCP_MAGIC 0x44535254u /* "DSRT" */
#define TCP_VERSION 1u
#define ADDR_BYTES 20
#define HELLO_BYTES (16 + ADDR_BYTES)
#define REPLY_BYTES 12
#define REASON_BYTES 256
#define GOODBYE UINT64_MAX

typedef struct tcp_transport {
    dsrt_transport base;
    int *fds;           /* per rank, -1 for this rank and ranks not yet connected */
    struct pollfd *pfd; /* poll() scratch, world entries */
    int *pfd_rank;      /* the rank of each pfd entry */
    int listen_fd;      /* open during rendezvous only */
    double timeout_s;   /* for the rendezvous and the goodbye in destroy */
    int ready;          /* the mesh is complete: destroy says goodbye */
    int broken;         /* a transfer failed midway: the streams are out of step */
} tcp_transport;

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (24 - 8 * i));
}
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}
static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}
static uint64_t get64(const unsigned char *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

static void addr_put(unsigned char *p, const struct sockaddr_storage *ss)
{
    memset(p, 0, ADDR_BYTES);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        p[0] = 4;
        memcpy(p + 2, &a->sin_port, 2); /* both already in network order */
        memcpy(p + 4, &a->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        p[0] = 6;
        memcpy(p + 2, &a->sin6_port, 2);
        memcpy(p + 4, &a->sin6_addr, 16);
    }
}

/* 0, or -1 when the record holds no address */
static int addr_get(const unsigned char *p, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (p[0] == 4) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        memcpy(&a->sin_port, p + 2, 2);
        memcpy(&a->sin_addr, p + 4, 4);
        *len = sizeof *a;
        return 0;
    }
    if (p[0] == 6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        memcpy(&a->sin6_port, p + 2, 2);
        memcpy(&a->sin6_addr, p + 4, 16);
        *len = sizeof *a;
        return 0;
    }
    return -1;
}

/* "10.0.0.2:41234" or "[fe80::1]:41234", for messages */
static const char *addr_text(const struct sockaddr_storage *ss, char out[64])
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(out, 64, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(out, 64, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else {
        snprintf(out, 64, "(address family %d)", (int)ss->ss_family);
    }
    return out;
}

static const char *err_text(int e, char out[128])
{
    /* the GNU strerror_r: thread-safe, returns the text (maybe not in out) */
    return strerror_r(e, out, 128);
}

/* Seconds for messages: "1800", "2.5" */
static const char *secs_text(double s, char out[32])
{
    if (s < 0)
        s = 0;
    snprintf(out, 32, s >= 10 ? "%.0f" : "%.1f", s);
    return out;
}

/* ---------------------------------------------------------------- blocking helpers
 * The sockets are non-blocking from the start; the rendezvous waits for each
 * one with poll() and the rendezvous deadline. */
enum { XF_OK = 0, XF_TIMEOUT, XF_EOF, XF_ERR };

static int poll_ms(double left_s)
{
    /* rounded up so that a poll never returns just before the deadline; at
     * most a minute per poll, so a far deadline cannot overflow an int */
    double ms = left_s * 1000.0 + 1.0;
    if (ms < 0)
        ms = 0;
    if (ms > 60000)
        ms = 60000;
    return (int)ms;
}

/* XF_OK when `fd` reports any of `events` (or an error or hang-up, which the
 * caller's next call on it reports), XF_TIMEOUT at the deadline. */
static int wait_fd(int fd, short events, double deadline)
{
    for (int last = 0; !last;) {
        /* one look even at the deadline: what is ready by then counts */
        double left = deadline - dsrt_now();
        last = left <= 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, last ? 0 : poll_ms(left));
        if (rc > 0)
            return XF_OK;
        if (rc < 0 && errno != EINTR)
            return XF_ERR;
    }
    return XF_TIMEOUT;
}

/* Send or receive exactly n bytes before the deadline. XF_ERR leaves errno. */
static int xfer(int fd, void *buf, size_t n, int sending, double deadline)
{
    size_t off = 0;
    while (off < n) {
        ssize_t k = sending ? send(fd, (char *)buf + off, n - off, MSG_NOSIGNAL)
                            : recv(fd, (char *)buf + off, n - off, 0);
        if (k > 0) {
            off += (size_t)k;
            continue;
        }
        if (k == 0)
            return sending ? XF_ERR : XF_EOF;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return XF_ERR;
        int w = wait_fd(fd, sending ? POLLOUT : POLLIN, deadline);
        if (w != XF_OK)
            return w;
    }
    return XF_OK;
}

/* A connected socket to `sa`, or -1 with errno (ETIMEDOUT at the deadline). */
static int connect_by(const struct sockaddr *sa, socklen_t len, double deadline)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int e = 0;
    if (connect(fd, sa, len) == 0)
        return fd;
    if (errno != EINPROGRESS && errno != EINTR) {
        e = errno;
    } else {
        int w = wait_fd(fd, POLLOUT, deadline);
        socklen_t el = sizeof e;
        if (w == XF_TIMEOUT)
            e = ETIMEDOUT;
        else if (w == XF_ERR)
            e = errno;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
            e = errno;
    }
    if (!e)
        return fd;
    close(fd);
    errno = e;
    return -1;
}

/* Small transfers must not wait for Nagle's timer. Keepalive lets even an
 * idle connection to a host that vanished (no FIN ever comes) fail within
 * about two minutes. The buffer sizes are left to the kernel's autotuning,
 * which setting SO_SNDBUF/SO_RCVBUF would switch off. */
static void tune(int fd)
{
    int one = 1, idle = 60, intvl = 10, cnt = 6;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

static int accept_nb(int lfd, struct sockaddr_storage *from)
{
    socklen_t fl = sizeof *from;
    memset(from, 0, sizeof *from);
    return accept4(lfd, (struct sockaddr *)from, &fl, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

/* A hello is sent right after connecting: waiting for one is bounded more
 * tightly than the rendezvous, so that a stranger connecting to our port
 * and saying nothing costs seconds, not the whole timeout. */
static double hello_deadline(double deadline)
{
    double d = dsrt_now() + 10.0;
    return d < deadline ? d : deadline;
}

static void pause_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* "2, 5, 7" for the ranks in [lo, world) other than `me` that have no
 * connection yet (at most 8 named) */
static const char *missing_text(const tcp_transport *tt, int lo, char out[128])
{
    size_t n = 0;
    int named = 0, missing = 0;
    out[0] = '\0';
    for (int r = lo; r < tt->base.world; r++) {
        if (r == tt->base.rank || tt->fds[r] >= 0)
            continue;
        if (named < 8 && n < 100) {
            n += (size_t)snprintf(out + n, 128 - n, "%s%d", named ? ", " : "", r);
            named++;
        }
        missing++;
    }
    if (missing > named)
        snprintf(out + n, 128 - n, ", ... (%d in all)", missing);
    return out;
}

/* ---------------------------------------------------------------- rendezvous */

static void hello_put(unsigned char *h, int rank, int world, const struct sockaddr_storage *ls)
{
    put32(h, TCP_MAGIC);
    put32(h + 4, TCP_VERSION);
    put32(h + 8, (uint32_t)rank);
    put32(h + 12, (uint32_t)world);
    memset(h + 16, 0, ADDR_BYTES);
    if (ls)
        addr_put(h + 16, ls);
}

static dsrt_status resolve(const dsrt_tcp_options *o, struct addrinfo **ai)
{
    char port[16];
    snprintf(port, sizeof port, "%d", o->master_port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* no AI_ADDRCONFIG: with only a loopback interface it hides 127.0.0.1 */
    int rc = getaddrinfo(o->master_addr, port, &hints, ai);
    if (rc == 0)
        return DSRT_STATUS_OK;
    char eb[128];
    const char *why = rc == EAI_SYSTEM ? err_text(errno, eb) : gai_strerror(rc);
    if (rc == EAI_NONAME || rc == EAI_FAIL
#ifdef EAI_NODATA
        || rc == EAI_NODATA
#endif
#ifdef EAI_ADDRFAMILY
        || rc == EAI_ADDRFAMILY
#endif
    )
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "rank %d: MASTER_ADDR=\"%s\" is not a known host or address (%s)",
                              o->rank, o->master_addr, why);
    return dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank %d: cannot resolve MASTER_ADDR=\"%s\": %s",
                          o->rank, o->master_addr, why);
}

/* Rank 0 tells a process why it is turned away (best effort, briefly). */
static void refuse(int fd, int world, const char *reason)
{
    unsigned char m[REPLY_BYTES + REASON_BYTES];
    memset(m, 0, sizeof m);
    put32(m, TCP_MAGIC);
    put32(m + 4, 1);
    put32(m + 8, (uint32_t)world);
    snprintf((char *)m + REPLY_BYTES, REASON_BYTES, "%s", reason);
    xfer(fd, m, sizeof m, 1, dsrt_now() + 1.0);
}

/* Rank 0 turns away `fd` and every rank that already joined with the message
 * just set, and returns its status. */
static dsrt_status refuse_all(tcp_transport *tt, int fd, dsrt_status st)
{
    refuse(fd, tt->base.world, dsrt_error_message());
    for (int r = 1; r < tt->base.world; r++)
        if (tt->fds[r] >= 0)
            refuse(tt->fds[r], tt->base.world, dsrt_error_message());
    close(fd);
    return st;
}

/* Rank 0: listen on MASTER_PORT, take one hello from every other rank, send
 * back the table of their listeners. */
static dsrt_status master_side(tcp_transport *tt, const dsrt_tcp_options *o,
                               const struct addrinfo *ai, double t0, double deadline)
{
    int world = tt->base.world;
    char eb[128], tb[32], a1[64], a2[64];
    /* The wildcard address of MASTER_ADDR's family, as torch's TCPStore does:
     * a hostname may resolve to 127.0.1.1 here and to the real address on
     * the other hosts. An IPv6 socket also takes IPv4 peers (V6ONLY off). */
    struct sockaddr_storage any;
    socklen_t any_len;
    memset(&any, 0, sizeof any);
    if (ai->ai_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&any;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_any;
        a->sin6_port = htons((uint16_t)o->master_port);
        any_len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&any;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_ANY);
        a->sin_port = htons((uint16_t)o->master_port);
        any_len = sizeof *a;
    }
    int lfd = socket(any.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank 0: socket() for MASTER_PORT=%d: %s",
                              o->master_port, err_text(errno, eb));
    tt->listen_fd = lfd;
    int one = 1, zero = 0;
    /* SO_REUSEADDR: a job restarted at once can listen again although the
     * last one's connections still linger in TIME_WAIT */
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (any.ss_family == AF_INET6)
        setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(lfd, (struct sockaddr *)&any, any_len) < 0 || listen(lfd, SOMAXCONN) < 0)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "rank 0: cannot listen on MASTER_PORT=%d (MASTER_ADDR=%s): %s (is "
                              "another job or another rank 0 using this port?)",
                              o->master_port, o->master_addr, err_text(errno, eb));

    unsigned char *table = calloc((size_t)world, ADDR_BYTES);
    struct sockaddr_storage *from = calloc((size_t)world, sizeof *from);
    if (!table || !from) {
        free(table);
        free(from);
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "rank 0: rendezvous table for %d ranks",
                              world);
    }
    dsrt_status st = DSRT_STATUS_OK;
    for (int joined = 0; joined < world - 1 && st == DSRT_STATUS_OK;) {
        char miss[128];
        int w = wait_fd(lfd, POLLIN, deadline);
        if (w == XF_TIMEOUT) {
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                "rank 0: rendezvous timed out after %s s at MASTER_ADDR=%s "
                                "MASTER_PORT=%d: %d of %d ranks joined (missing rank %s)",
                                secs_text(dsrt_now() - t0, tb), o->master_addr,
                                o->master_port, joined + 1, world, missing_text(tt, 1, miss));
            break;
        }
        struct sockaddr_storage peer;
        int c = accept_nb(lfd, &peer);
        if (c < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED)
                continue;
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank 0: accept() on MASTER_PORT=%d: %s",
                                o->master_port, err_text(errno, eb));
            break;
        }
        tune(c);
        unsigned char h[HELLO_BYTES];
        if (xfer(c, h, sizeof h, 0, hello_deadline(deadline)) != XF_OK ||
            get32(h) != TCP_MAGIC) {
            /* not one of ours, or it went away mid-hello: not counted */
            close(c);
            continue;
        }
        int r = (int)get32(h + 8), pw = (int)get32(h + 12);
        if (get32(h + 4) != TCP_VERSION) {
            dsrt_error_set(DSRT_STATUS_IO_ERROR,
                           "rank 0: the process at %s speaks rendezvous version %u, this one %u "
                           "(mixed dsrt versions in one job?)",
                           addr_text(&peer, a1), get32(h + 4), TCP_VERSION);
            st = refuse_all(tt, c, DSRT_STATUS_IO_ERROR);
        } else if (pw != world) {
            dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                           "rank 0: rank %d (at %s) has WORLD_SIZE=%d but rank 0 has "
                           "WORLD_SIZE=%d: every rank must be given the same WORLD_SIZE",
                           r, addr_text(&peer, a1), pw, world);
            st = refuse_all(tt, c, DSRT_STATUS_INVALID_ARGUMENT);
        } else if (r < 1 || r >= world) {
            dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                           "rank 0: the process at %s claims RANK=%d, not in [1, %d) for "
                           "WORLD_SIZE=%d (rank 0 is this process, at MASTER_ADDR=%s)",
                           addr_text(&peer, a1), r, world, world, o->master_addr);
            st = refuse_all(tt, c, DSRT_STATUS_INVALID_ARGUMENT);
        } else if (tt->fds[r] >= 0) {
            dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                           "rank 0: two processes claim RANK=%d, one at %s and one at %s: "
                           "every rank must be given its own RANK",
                           r, addr_text(&from[r], a1), addr_text(&peer, a2));
            st = refuse_all(tt, c, DSRT_STATUS_INVALID_ARGUMENT);
        } else {
            tt->fds[r] = c;
            from[r] = peer;
            memcpy(table + (size_t)r * ADDR_BYTES, h + 16, ADDR_BYTES);
            joined++;
        }
    }
    close(lfd);
    tt->listen_fd = -1;

    size_t reply_bytes = REPLY_BYTES + (size_t)world * ADDR_BYTES;
    unsigned char *reply = st == DSRT_STATUS_OK ? malloc(reply_bytes) : NULL;
    if (st == DSRT_STATUS_OK && !reply)
        st = dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "rank 0: rendezvous table for %d ranks",
                            world);
    if (st == DSRT_STATUS_OK) {
        put32(reply, TCP_MAGIC);
        put32(reply + 4, 0);
        put32(reply + 8, (uint32_t)world);
        memcpy(reply + REPLY_BYTES, table, (size_t)world * ADDR_BYTES);
        for (int r = 1; r < world && st == DSRT_STATUS_OK; r++) {
            int x = xfer(tt->fds[r], reply, reply_bytes, 1, deadline);
            if (x == XF_TIMEOUT)
                st = dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                    "rank 0: rendezvous timed out after %s s sending the table "
                                    "to rank %d",
                                    secs_text(dsrt_now() - t0, tb), r);
            else if (x != XF_OK)
                st = dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                    "rank 0: rank %d (at %s) closed its connection during the "
                                    "rendezvous: %s (its process exited or was killed)",
                                    r, addr_text(&from[r], a1), err_text(errno, eb));
        }
    }
    free(reply);
    free(table);
    free(from);
    return st;
}

/* Ranks 1..N-1: join at the master, receive the table (*table: free()). */
static dsrt_status join_master(tcp_transport *tt, const dsrt_tcp_options *o,
                               const struct addrinfo *ai, double t0, double deadline,
                               unsigned char **table)
{
    int me = tt->base.rank, world = tt->base.world;
    char eb[128], tb[32];
    *table = NULL;
    /* the master may not listen yet: retry, backing off to one try a second */
    int fd = -1, last = 0;
    for (double pause = 0.05;; pause = pause < 0.5 ? pause * 2 : 1.0) {
        for (const struct addrinfo *p = ai; p && fd < 0; p = p->ai_next) {
            fd = connect_by(p->ai_addr, p->ai_addrlen, deadline);
            if (fd < 0 && (errno != ETIMEDOUT || !last))
                last = errno; /* "refused" says more than our own deadline */
        }
        if (fd >= 0)
            break;
        double left = deadline - dsrt_now();
        if (left <= 0)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "rank %d: cannot reach the master (rank 0) at MASTER_ADDR=%s "
                                  "MASTER_PORT=%d within %s s (%s): is rank 0 running, with the "
                                  "same MASTER_ADDR and MASTER_PORT?",
                                  me, o->master_addr, o->master_port,
                                  secs_text(dsrt_now() - t0, tb), err_text(last, eb));
        pause_s(pause < left ? pause : left);
    }
    tt->fds[0] = fd;
    tune(fd);

    /* our listener, on the address the master sees us at */
    struct sockaddr_storage ls;
    socklen_t ll = sizeof ls;
    int lfd = -1;
    if (getsockname(fd, (struct sockaddr *)&ls, &ll) == 0) {
        if (ls.ss_family == AF_INET)
            ((struct sockaddr_in *)&ls)->sin_port = 0;
        else
            ((struct sockaddr_in6 *)&ls)->sin6_port = 0;
        lfd = socket(ls.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (lfd >= 0) {
        tt->listen_fd = lfd;
        ll = sizeof ls;
        if (bind(lfd, (struct sockaddr *)&ls, ll) < 0 || listen(lfd, SOMAXCONN) < 0 ||
            getsockname(lfd, (struct sockaddr *)&ls, &ll) < 0)
            lfd = -1;
    }
    if (lfd < 0)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "rank %d: cannot open a listening socket for the other ranks: %s",
                              me, err_text(errno, eb));

    unsigned char h[HELLO_BYTES], head[REPLY_BYTES];
    hello_put(h, me, world, &ls);
    int x = xfer(fd, h, sizeof h, 1, deadline);
    if (x == XF_OK)
        x = xfer(fd, head, sizeof head, 0, deadline);
    if (x == XF_TIMEOUT)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "rank %d: rendezvous timed out after %s s at MASTER_ADDR=%s "
                              "MASTER_PORT=%d waiting for all %d ranks to join (rank 0 is up: "
                              "another rank has not started, or was given another "
                              "MASTER_ADDR/MASTER_PORT)",
                              me, secs_text(dsrt_now() - t0, tb), o->master_addr,
                              o->master_port, world);
    if (x != XF_OK)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "rank %d: the master (rank 0 at MASTER_ADDR=%s MASTER_PORT=%d) "
                              "closed the connection during the rendezvous%s%s (it failed: see "
                              "its error)",
                              me, o->master_addr, o->master_port, x == XF_ERR ? ": " : "",
                              x == XF_ERR ? err_text(errno, eb) : "");
    if (get32(head) != TCP_MAGIC)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "rank %d: the process at MASTER_ADDR=%s MASTER_PORT=%d does not "
                              "speak dsrt's rendezvous: is MASTER_PORT used by something else?",
                              me, o->master_addr, o->master_port);
    if (get32(head + 4) != 0) {
        char reason[REASON_BYTES + 1] = "";
        if (xfer(fd, reason, REASON_BYTES, 0, deadline) != XF_OK)
            snprintf(reason, sizeof reason, "(no reason received)");
        reason[REASON_BYTES] = '\0';
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "rank %d: the master refused this process: %s", me, reason);
    }
    if ((int)get32(head + 8) != world) /* rank 0 checked this already */
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "rank %d: WORLD_SIZE=%d here but rank 0 has WORLD_SIZE=%d", me, world,
                              (int)get32(head + 8));
    unsigned char *tab = malloc((size_t)world * ADDR_BYTES);
    if (!tab)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "rank %d: rendezvous table", me);
    x = xfer(fd, tab, (size_t)world * ADDR_BYTES, 0, deadline);
    if (x != XF_OK) {
        free(tab);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "rank %d: the master (rank 0) %s while sending the rendezvous table",
                              me, x == XF_TIMEOUT ? "timed out" : "closed the connection");
    }
    *table = tab;
    return DSRT_STATUS_OK;
}

/* Rank j: connect to ranks 0 < i < j, accept ranks j < k < N. Connecting
 * first cannot deadlock: the kernel completes a connection to a listener
 * whose process has not called accept() yet (listen backlog). */
static dsrt_status mesh(tcp_transport *tt, const unsigned char *table, double t0, double deadline)
{
    int me = tt->base.rank, world = tt->base.world;
    char eb[128], tb[32], ab[64];
    unsigned char h[HELLO_BYTES];
    for (int i = 1; i < me; i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        if (addr_get(table + (size_t)i * ADDR_BYTES, &ss, &len) < 0)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "rank %d: the rendezvous table has no address for rank %d", me,
                                  i);
        int fd = connect_by((struct sockaddr *)&ss, len, deadline);
        if (fd < 0)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "rank %d: cannot connect to rank %d at %s during the rendezvous: "
                                  "%s",
                                  me, i, addr_text(&ss, ab), err_text(errno, eb));
        tt->fds[i] = fd;
        tune(fd);
        hello_put(h, me, world, NULL);
        if (xfer(fd, h, sizeof h, 1, deadline) != XF_OK)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "rank %d: rank %d closed its connection during the rendezvous "
                                  "(its process exited or was killed)",
                                  me, i);
    }
    for (int expect = world - 1 - me; expect > 0;) {
        char miss[128];
        if (wait_fd(tt->listen_fd, POLLIN, deadline) == XF_TIMEOUT)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "rank %d: rendezvous timed out after %s s waiting for rank %s to "
                                  "connect",
                                  me, secs_text(dsrt_now() - t0, tb),
                                  missing_text(tt, me + 1, miss));
        struct sockaddr_storage peer;
        int c = accept_nb(tt->listen_fd, &peer);
        if (c < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED)
                continue;
            return dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank %d: accept(): %s", me,
                                  err_text(errno, eb));
        }
        tune(c);
        if (xfer(c, h, sizeof h, 0, hello_deadline(deadline)) != XF_OK || get32(h) != TCP_MAGIC ||
            get32(h + 4) != TCP_VERSION) {
            close(c); /* a stranger, or gone: not counted */
            continue;
        }
        int k = (int)get32(h + 8), pw = (int)get32(h + 12);
        dsrt_status st = DSRT_STATUS_OK;
        if (pw != world)
            st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                "rank %d: rank %d (at %s) has WORLD_SIZE=%d but this rank has "
                                "WORLD_SIZE=%d",
                                me, k, addr_text(&peer, ab), pw, world);
        else if (k <= me || k >= world)
            st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                "rank %d: the process at %s connected as RANK=%d, not in (%d, %d)",
                                me, addr_text(&peer, ab), k, me, world);
        else if (tt->fds[k] >= 0)
            st = dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                "rank %d: two processes claim RANK=%d (the second at %s): every "
                                "rank must be given its own RANK",
                                me, k, addr_text(&peer, ab));
        if (st != DSRT_STATUS_OK) {
            close(c);
            return st;
        }
        tt->fds[k] = c;
        expect--;
    }
    close(tt->listen_fd);
    tt->listen_fd = -1;
    return DSRT_STATUS_OK;
}

static dsrt_status rendezvous(tcp_transport *tt, const dsrt_tcp_options *o)
{
    double t0 = dsrt_now(), deadline = t0 + o->timeout_s;
    struct addrinfo *ai = NULL;
    DSRT_TRY(resolve(o, &ai));
    dsrt_status st;
    if (tt->base.rank == 0) {
        st = master_side(tt, o, ai, t0, deadline);
    } else {
        unsigned char *table = NULL;
        st = join_master(tt, o, ai, t0, deadline, &table);
        if (st == DSRT_STATUS_OK)
            st = mesh(tt, table, t0, deadline);
        free(table);
    }
    freeaddrinfo(ai);
    return st;
}

/* ---------------------------------------------------------------- transfers */

/* p and every other peer whose connection is closed now (a poll with no
 * wait), in rank order, as "0, 1"; returns how many. */
static int closed_list(tcp_transport *tt, int p, char *list, size_t cap)
{
    int n = 0, count = 0;
    for (int q = 0; q < tt->base.world; q++) {
        if (q == tt->base.rank || q == p || tt->fds[q] < 0)
            continue;
        tt->pfd[n] = (struct pollfd){.fd = tt->fds[q], .events = POLLRDHUP};
        tt->pfd_rank[n++] = q;
    }
    if (n > 0 && poll(tt->pfd, (nfds_t)n, 0) < 0)
        n = 0;
    list[0] = 0;
    for (int q = 0, k = 0; q < tt->base.world; q++) {
        bool closed = q == p;
        if (k < n && tt->pfd_rank[k] == q)
            closed = closed || (tt->pfd[k++].revents & (POLLRDHUP | POLLHUP | POLLERR));
        size_t len = strlen(list);
        if (closed && len < cap - 16) {
            snprintf(list + len, cap - len, "%s%d", count ? ", " : "", q);
            count++;
        }
    }
    return count;
}

static dsrt_status peer_lost(tcp_transport *tt, int p, const char *what, int err)
{
    char eb[128];
    /* a reset or a broken pipe is the same event as an end of file: the
     * process is gone (the kernel resets when unread data was pending) */
    if (!err || err == ECONNRESET || err == EPIPE) {
        /* A rank that fails hangs up on everyone at once, so by the time this
         * rank looks, the one that died first and the ones that failed because
         * of it may all be closed: name them all (rank order; which went first
         * a socket cannot tell). */
        char list[256];
        if (closed_list(tt, p, list, sizeof list) > 1)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "rank %d: ranks %s closed their connections during %s (their processes "
                                  "exited or were killed; one that died can make the others fail and exit)",
                                  tt->base.rank, list, what);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "rank %d: rank %d closed its connection during %s (its process "
                              "exited or was killed)",
                              tt->base.rank, p, what);
    }
    return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                          "rank %d: the connection to rank %d failed during %s: %s (its process "
                          "exited or was killed, or its host went away)",
                          tt->base.rank, p, what, err_text(err, eb));
}

/* Read what is there of the frame from `p`: header, then payload into rbuf.
 * *done counts header bytes too. */
static dsrt_status pump_recv(tcp_transport *tt, int p, unsigned char hdr[8], void *rbuf,
                             size_t rbytes, size_t *done, const char *what)
{
    int fd = tt->fds[p];
    while (*done < 8 + rbytes) {
        int in_hdr = *done < 8;
        void *dst = in_hdr ? (void *)(hdr + *done) : (void *)((char *)rbuf + (*done - 8));
        size_t want = in_hdr ? 8 - *done : 8 + rbytes - *done;
        ssize_t k = recv(fd, dst, want, 0);
        if (k == 0)
            return peer_lost(tt, p, what, 0);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return DSRT_STATUS_OK;
            return peer_lost(tt, p, what, errno);
        }
        *done += (size_t)k;
        if (in_hdr && *done == 8) {
            uint64_t len = get64(hdr);
            if (len == GOODBYE)
                return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                      "rank %d: rank %d has finished and is shutting down while "
                                      "this rank waits for it in %s (the ranks ran different "
                                      "sequences of collectives)",
                                      tt->base.rank, p, what);
            if (len != rbytes)
                return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                      "rank %d: rank %d sent %llu bytes during %s where %zu were "
                                      "expected (the ranks are running different collectives: "
                                      "the same model and config on every rank?)",
                                      tt->base.rank, p, (unsigned long long)len, what, rbytes);
        }
        if ((size_t)k < want)
            return DSRT_STATUS_OK; /* drained for now */
    }
    return DSRT_STATUS_OK;
}

static dsrt_status pump_send(tcp_transport *tt, int p, const unsigned char hdr[8],
                             const void *sbuf, size_t sbytes, size_t *done, const char *what)
{
    int fd = tt->fds[p];
    while (*done < 8 + sbytes) {
        struct iovec iov[2];
        int n = 0;
        if (*done < 8)
            iov[n++] = (struct iovec){(void *)(hdr + *done), 8 - *done};
        size_t off = *done < 8 ? 0 : *done - 8;
        if (sbytes > off)
            iov[n++] = (struct iovec){(char *)sbuf + off, sbytes - off};
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)n;
        ssize_t k = sendmsg(fd, &m, MSG_NOSIGNAL); /* a dead peer: EPIPE, not SIGPIPE */
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return DSRT_STATUS_OK;
            return peer_lost(tt, p, what, errno);
        }
        *done += (size_t)k;
    }
    return DSRT_STATUS_OK;
}

static dsrt_status transfer(dsrt_transport *t, int to, const void *sbuf, size_t sbytes, int from,
                            void *rbuf, size_t rbytes, double deadline, const char *what)
{
    tcp_transport *tt = t->impl;
    double t0 = dsrt_now();
    char tb[32];
    if (!what)
        what = "a transfer";
    if (to < -1 || to >= t->world || from < -1 || from >= t->world)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "rank %d: %s: peer %d is not a rank of this world of %d", t->rank,
                              what, to < -1 || to >= t->world ? to : from, t->world);
    if (to == t->rank || from == t->rank) {
        /* a one-rank ring passes its block to itself */
        if (to != from || sbytes != rbytes)
            return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                                  "rank %d: %s: a transfer to itself must also be received from "
                                  "itself, with the same size (%zu sent, %zu received)",
                                  t->rank, what, sbytes, rbytes);
        if (sbytes && sbuf != rbuf)
            memmove(rbuf, sbuf, sbytes);
        return DSRT_STATUS_OK;
    }
    unsigned char shdr[8], rhdr[8];
    put64(shdr, sbytes);
    size_t sdone = 0, rdone = 0; /* header bytes included */
    size_t stotal = to >= 0 ? 8 + sbytes : 0, rtotal = from >= 0 ? 8 + rbytes : 0;
    while (sdone < stotal || rdone < rtotal) {
        double now = dsrt_now();
        if (now >= deadline)
            return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                                  "rank %d: %s timed out after %s s waiting for rank %d (a peer "
                                  "failed, hung, or is itself waiting on a failed rank)",
                                  t->rank, what, secs_text(deadline - t0, tb),
                                  rdone < rtotal ? from : to);
        /* every peer is polled: the two we move data with for data, all of
         * them for a hang-up (only POLLRDHUP asked for, so data waiting from
         * a third rank does not wake us) */
        int n = 0;
        for (int p = 0; p < t->world; p++) {
            if (p == t->rank)
                continue;
            short ev = POLLRDHUP;
            if (p == to && sdone < stotal)
                ev |= POLLOUT;
            if (p == from && rdone < rtotal)
                ev |= POLLIN;
            tt->pfd[n] = (struct pollfd){.fd = tt->fds[p], .events = ev};
            tt->pfd_rank[n++] = p;
        }
        int rc = poll(tt->pfd, (nfds_t)n, poll_ms(deadline - now));
        if (rc < 0 && errno != EINTR) {
            char eb[128];
            return dsrt_error_set(DSRT_STATUS_IO_ERROR, "rank %d: poll() during %s: %s", t->rank,
                                  what, err_text(errno, eb));
        }
        for (int k = 0; k < n && rc > 0; k++) {
            short re = tt->pfd[k].revents;
            int p = tt->pfd_rank[k];
            if (!re)
                continue;
            /* A healthy peer never closes first (destroy waits for the
             * goodbyes), so any hang-up is a failure, even from the peer we
             * are reading: what it still sent would not save the collective. */
            if (re & POLLERR) {
                int e = 0;
                socklen_t el = sizeof e;
                getsockopt(tt->fds[p], SOL_SOCKET, SO_ERROR, &e, &el);
                return peer_lost(tt, p, what, e);
            }
            if (re & (POLLRDHUP | POLLHUP)) {
                /* ...but first read what is there: a goodbye or a wrong
                 * length explains the hang-up better */
                if (p == from && rdone < rtotal)
                    DSRT_TRY(pump_recv(tt, p, rhdr, rbuf, rbytes, &rdone, what));
                return peer_lost(tt, p, what, 0);
            }
            if ((re & POLLIN) && p == from)
                DSRT_TRY(pump_recv(tt, p, rhdr, rbuf, rbytes, &rdone, what));
            if ((re & POLLOUT) && p == to)
                DSRT_TRY(pump_send(tt, p, shdr, sbuf, sbytes, &sdone, what));
        }
    }
    return DSRT_STATUS_OK;
}

static int tcp_closed_peer(dsrt_transport *t)
{
    tcp_transport *tt = t->impl;
    int n = 0;
    for (int p = 0; p < t->world; p++) {
        if (p == t->rank || tt->fds[p] < 0)
            continue;
        tt->pfd[n] = (struct pollfd){.fd = tt->fds[p], .events = POLLRDHUP};
        tt->pfd_rank[n++] = p;
    }
    if (poll(tt->pfd, (nfds_t)n, 0) <= 0)
        return -1;
    for (int k = 0; k < n; k++)
        if (tt->pfd[k].revents & (POLLRDHUP | POLLHUP | POLLERR))
            return tt->pfd_rank[k];
    return -1;
}

static dsrt_status tcp_peer_gone(dsrt_transport *t, int p, const char *what)
{
    ((tcp_transport *)t->impl)->broken = 1;
    return peer_lost(t->impl, p, what, 0);
}

static dsrt_status tcp_sendrecv(dsrt_transport *t, int to, const void *sbuf, size_t sbytes,
                                int from, void *rbuf, size_t rbytes, double deadline,
                                const char *what)
{
    dsrt_status st = transfer(t, to, sbuf, sbytes, from, rbuf, rbytes, deadline, what);
    /* after a failure midway, a goodbye would land inside a frame: destroy
     * then just closes, as after t->failed */
    if (st == DSRT_STATUS_IO_ERROR)
        ((tcp_transport *)t->impl)->broken = 1;
    return st;
}

/* ---------------------------------------------------------------- shutdown */

/* Send GOODBYE to every peer and wait for theirs (or their hang-up), up to
 * timeout_s; frames still unread are skipped. */
static void say_goodbye(tcp_transport *tt)
{
    int world = tt->base.world, me = tt->base.rank;
    struct peer_bye {
        unsigned char hdr[8];
        size_t sent, got; /* goodbye bytes sent, header bytes received */
        uint64_t skip;    /* payload bytes of an unread frame to drop */
        int done;         /* its goodbye, end of file or error seen */
    } *b = calloc((size_t)world, sizeof *b);
    if (!b)
        return;
    unsigned char bye[8];
    put64(bye, GOODBYE);
    double deadline = dsrt_now() + tt->timeout_s;
    for (;;) {
        int n = 0;
        for (int p = 0; p < world; p++) {
            if (p == me || (b[p].sent == 8 && b[p].done))
                continue;
            short ev = (short)((b[p].sent < 8 ? POLLOUT : 0) | (b[p].done ? 0 : POLLIN));
            tt->pfd[n] = (struct pollfd){.fd = tt->fds[p], .events = ev};
            tt->pfd_rank[n++] = p;
        }
        double left = deadline - dsrt_now();
        if (n == 0 || left <= 0)
            break;
        if (poll(tt->pfd, (nfds_t)n, poll_ms(left)) < 0 && errno != EINTR)
            break;
        for (int k = 0; k < n; k++) {
            struct peer_bye *q = &b[tt->pfd_rank[k]];
            int fd = tt->pfd[k].fd;
            short re = tt->pfd[k].revents;
            if ((re & (POLLOUT | POLLERR | POLLHUP)) && q->sent < 8) {
                ssize_t s = send(fd, bye + q->sent, 8 - q->sent, MSG_NOSIGNAL);
                if (s > 0)
                    q->sent += (size_t)s;
                else if (s < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    q->sent = 8, q->done = 1; /* gone: nothing more to say */
            }
            if (!(re & (POLLIN | POLLERR | POLLHUP | POLLRDHUP)) || q->done)
                continue;
            for (;;) {
                unsigned char junk[4096];
                ssize_t r;
                if (q->skip) {
                    size_t want = q->skip < sizeof junk ? (size_t)q->skip : sizeof junk;
                    r = recv(fd, junk, want, 0);
                    if (r > 0)
                        q->skip -= (uint64_t)r;
                } else {
                    r = recv(fd, q->hdr + q->got, 8 - q->got, 0);
                    if (r > 0 && (q->got += (size_t)r) == 8) {
                        uint64_t len = get64(q->hdr);
                        q->got = 0;
                        if (len == GOODBYE)
                            q->done = 1;
                        else
                            q->skip = len;
                    }
                }
                if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
                    q->sent = 8, q->done = 1;
                if (q->done || (r < 0 && errno != EINTR))
                    break;
            }
        }
    }
    free(b);
}

static void tcp_destroy(dsrt_transport *t)
{
    if (!t)
        return;
    tcp_transport *tt = t->impl;
    if (tt->ready && !tt->broken && !t->failed && t->world > 1)
        say_goodbye(tt);
    if (tt->fds)
        for (int p = 0; p < t->world; p++)
            if (tt->fds[p] >= 0)
                close(tt->fds[p]);
    if (tt->listen_fd >= 0)
        close(tt->listen_fd);
    free(tt->fds);
    free(tt->pfd);
    free(tt->pfd_rank);
    free(tt);
}

/* ---------------------------------------------------------------- create */

dsrt_status dsrt_transport_tcp_create(const dsrt_tcp_options *o, dsrt_transport **out)
{
    if (!out)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "tcp transport: out is NULL");
    *out = NULL;
    if (!o)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "tcp transport: options are NULL");
    /* the bound keeps table sizes and wire fields far from overflow */
    if (o->world < 1 || o->world > (1 << 20))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "distributed: WORLD_SIZE=%d is not in [1, %d]", o->world, 1 << 20);
    if (o->rank < 0 || o->rank >= o->world)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "distributed: RANK=%d is not in [0, %d) for WORLD_SIZE=%d", o->rank,
                              o->world, o->world);
    if (o->master_port < 1 || o->master_port > 65535)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "distributed: MASTER_PORT=%d is not a TCP port (1..65535)",
                              o->master_port);
    if (!o->master_addr || !*o->master_addr)
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT, "distributed: MASTER_ADDR is empty");
    if (!(o->timeout_s > 0))
        return dsrt_error_set(DSRT_STATUS_INVALID_ARGUMENT,
                              "distributed: the rendezvous timeout %g s is not positive",
                              o->timeout_s);

    tcp_transport *tt = calloc(1, sizeof *tt);
    if (!tt)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "tcp transport");
    dsrt_transport *t = &tt->base;
    t->name = "tcp";
    t->rank = o->rank;
    t->world = o->world;
    t->local_rank = o->local_rank;
    t->impl = tt;
    t->sendrecv = tcp_sendrecv;
    t->closed_peer = tcp_closed_peer;
    t->peer_gone = tcp_peer_gone;
    t->destroy = tcp_destroy;
    tt->listen_fd = -1;
    tt->timeout_s = o->timeout_s;
    tt->fds = malloc((size_t)o->world * sizeof *tt->fds);
    tt->pfd = calloc((size_t)o->world, sizeof *tt->pfd);
    tt->pfd_rank = calloc((size_t)o->world, sizeof *tt->pfd_rank);
    if (!tt->fds || !tt->pfd || !tt->pfd_rank) {
        free(tt->fds);
        tt->fds = NULL;
        tcp_destroy(t);
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "tcp transport for %d ranks", o->world);
    }
    for (int p = 0; p < o->world; p++)
        tt->fds[p] = -1;
    if (o->world > 1) {
        dsrt_status st = rendezvous(tt, o);
        if (st != DSRT_STATUS_OK) {
            tcp_destroy(t); /* half built: closes what is open, says no goodbye */
            return st;
        }
    }
    tt->ready = 1;
    *out = t;
    return DSRT_STATUS_OK;
}
