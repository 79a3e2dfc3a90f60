/* Whole-file checksums of a checkpoint (ckpt.h: ckpt_seal, ckpt_verify).
 *
 * HDF5 1.10 is not safe against corrupt metadata: a flipped byte can crash
 * its parser (SIGSEGV in H5HG_read) or leave its library state unclosable
 * ("infinite loop closing library"), before any of its own checksums speak.
 * So no checkpoint file reaches HDF5 unverified: each file gets a sidecar
 * "<file>.crc32c" at save ("crc32c <8 hex digits> size <bytes>\n", the
 * CRC-32C of the whole file), and a load checks every file against it first.
 *
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), with the SSE4.2
 * instruction where the processor has it and a table otherwise (the same
 * values either way). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/internal.h"
#include "ckpt/ckpt.h"

static uint32_t crc_table[8][256];

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

/* slicing-by-8 */
static uint32_t crc_soft(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
        n--;
    }
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^ crc_table[5][(w >> 16) & 0xff] ^
              crc_table[4][(w >> 24) & 0xff] ^ crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
    }
    while (n--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t n)
{
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        n--;
    }
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    while (n--)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

uint32_t ckpt_crc32c(uint32_t crc, const void *data, size_t n)
{
    static int mode = -1; /* 0 table, 1 SSE4.2 */
    if (mode < 0) {
        crc_table_init();
#if defined(__x86_64__)
        __builtin_cpu_init();
        mode = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
        mode = 0;
#endif
    }
    crc = ~crc;
#if defined(__x86_64__)
    if (mode == 1)
        return ~crc_hw(crc, data, n);
#endif
    return ~crc_soft(crc, data, n);
}

/* The CRC-32C and size of a whole file. */
static dsrt_status file_crc(const char *path, uint32_t *crc, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: cannot open it to check it: %s", path, strerror(errno));
    enum { BLOCK = 4 << 20 };
    unsigned char *buf = malloc(BLOCK);
    if (!buf) {
        close(fd);
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "%s: checksum buffer", path);
    }
    uint32_t c = 0;
    uint64_t total = 0;
    dsrt_status st = DSRT_STATUS_OK;
    for (;;) {
        ssize_t got = read(fd, buf, BLOCK);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        c = ckpt_crc32c(c, buf, (size_t)got);
        total += (uint64_t)got;
    }
    free(buf);
    close(fd);
    *crc = c;
    *size = total;
    return st;
}

static void sidecar_of(const char *path, char *out, size_t n) { snprintf(out, n, "%s%s", path, CKPT_SEAL_SUFFIX); }

dsrt_status ckpt_seal(const char *path)
{
    uint32_t crc;
    uint64_t size;
    DSRT_TRY(file_crc(path, &crc, &size));
    char side[4300];
    sidecar_of(path, side, sizeof side);
    FILE *f = fopen(side, "w");
    if (!f)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: cannot create it: %s", side, strerror(errno));
    int bad = fprintf(f, "crc32c %08" PRIx32 " size %" PRIu64 "\n", crc, size) < 0 || fflush(f) != 0 ||
              fsync(fileno(f)) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (bad)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: cannot write it: %s", side,
                              err == ENOSPC ? "no space left on device" : strerror(err));
    return DSRT_STATUS_OK;
}

dsrt_status ckpt_verify(const char *path, bool *sealed)
{
    *sealed = false;
    char side[4300];
    sidecar_of(path, side, sizeof side);
    FILE *f = fopen(side, "r");
    if (!f) {
        if (errno == ENOENT)
            return DSRT_STATUS_OK;
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: cannot read it: %s", side, strerror(errno));
    }
    char line[128] = "";
    char *got_line = fgets(line, sizeof line, f);
    fclose(f);
    uint32_t want;
    uint64_t want_size;
    if (!got_line || sscanf(line, "crc32c %8" SCNx32 " size %" SCNu64, &want, &want_size) != 2)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: not a checksum record (corrupt)", side);
    *sealed = true;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: %s (the checkpoint lists it in %s)", path, strerror(errno),
                              side);
    if ((uint64_t)sb.st_size != want_size)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "%s: corrupt: %lld bytes, but the save wrote %" PRIu64 " (truncated or extended)",
                              path, (long long)sb.st_size, want_size);
    uint32_t crc;
    uint64_t size;
    DSRT_TRY(file_crc(path, &crc, &size));
    if (crc != want || size != want_size)
        return dsrt_error_set(DSRT_STATUS_IO_ERROR,
                              "%s: corrupt: its CRC-32C is %08" PRIx32 ", the save recorded %08" PRIx32
                              " (a changed byte; HDF5 is not given the file)",
                              path, crc, want);
    return DSRT_STATUS_OK;
}
