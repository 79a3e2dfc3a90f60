/* The host's log sink. The library never writes to stdout/stderr itself:
 * every diagnostic goes through the callback installed with api->log_set(). */
#include <pthread.h>
#include <stdio.h>

#include "base/internal.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static dsrt_log_fn log_fn;
static void *log_user;
static dsrt_log_level log_min = DSRT_LOG_INFO;

void dsrt_log_install(dsrt_log_fn fn, void *user_data, dsrt_log_level min_level)
{
    pthread_mutex_lock(&log_lock);
    log_fn = fn;
    log_user = user_data;
    log_min = min_level;
    pthread_mutex_unlock(&log_lock);
}

bool dsrt_log_enabled(dsrt_log_level level)
{
    pthread_mutex_lock(&log_lock);
    bool on = log_fn && level >= log_min;
    pthread_mutex_unlock(&log_lock);
    return on;
}

void dsrt_log(dsrt_log_level level, const char *fmt, ...)
{
    if (!dsrt_log_enabled(level))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* Held during the call so that log_set() cannot swap the sink out from
     * under a message in flight; the header forbids re-entering dsrt. */
    pthread_mutex_lock(&log_lock);
    if (log_fn && level >= log_min)
        log_fn(log_user, level, line);
    pthread_mutex_unlock(&log_lock);
}
