/* Whole-file writes that never leave a half-written file under the final
 * name: a temporary file beside it, fsync, rename, fsync of the folder. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/internal.h"

dsrt_status dsrt_write_file_atomic(const char *path, const void *data, size_t len, const char *what)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp)
        return dsrt_error_set(DSRT_STATUS_OUT_OF_MEMORY, "%s: %s", what, path);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        dsrt_status st = dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: cannot create %s: %s", what, tmp,
                                        strerror(errno));
        free(tmp);
        return st;
    }
    const char *p = data;
    size_t left = len;
    int err = 0;
    while (left && !err) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            err = w < 0 ? errno : EIO;
        else
            p += w, left -= (size_t)w;
    }
    if (!err && fsync(fd))
        err = errno;
    if (close(fd) && !err)
        err = errno;
    if (!err && rename(tmp, path))
        err = errno;
    if (err) {
        unlink(tmp);
        free(tmp);
        return dsrt_error_set(DSRT_STATUS_IO_ERROR, "%s: cannot write %s: %s", what, path, strerror(err));
    }
    free(tmp);
    /* the rename itself reaches the disk with the folder */
    char *dir = dsrt_strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = ".";
        if (slash) {
            *slash = 0;
            d = *dir ? dir : "/";
        }
        int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd); /* some file systems refuse a folder's fsync: not an error */
            close(dfd);
        }
        free(dir);
    }
    return DSRT_STATUS_OK;
}
