/* The soak test's clock step of one host's programs (tests/lab/admin_host_faults.py).
 *
 * Preloaded into the admin service and the reaper, it adds an offset, read from the file
 * named by CLOCKSTEP_FILE (whole seconds, "+600" or "-600"; read again at most once a
 * second), to the wall clock only: clock_gettime(CLOCK_REALTIME*), gettimeofday() and
 * time(). The monotonic and boot clocks, and every sleep, stay true, as they do when a
 * host's wall clock is stepped. (libfaketime leaves them true only with
 * FAKETIME_DONT_FAKE_MONOTONIC, which makes Python's time.sleep fail with EINVAL.)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime(void) {
    static clock_gettime_fn real;
    if (!real) real = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    return real;
}

static long offset(void) {
    static long cached;
    static time_t read_at = -1;
    struct timespec now;
    if (real_clock_gettime()(CLOCK_MONOTONIC, &now) != 0) return cached;
    if (read_at >= 0 && now.tv_sec == read_at) return cached;
    read_at = now.tv_sec;
    const char *path = getenv("CLOCKSTEP_FILE");
    FILE *file = path ? fopen(path, "re") : NULL;
    if (file) {
        long seconds;
        if (fscanf(file, "%ld", &seconds) == 1) cached = seconds;
        fclose(file);
    }
    return cached;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int done = real_clock_gettime()(id, ts);
    if (done == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        ts->tv_sec += offset();
    }
    return done;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec now;
    int done = clock_gettime(CLOCK_REALTIME, &now);
    if (done == 0) {
        tv->tv_sec = now.tv_sec;
        tv->tv_usec = now.tv_nsec / 1000;
    }
    (void)tz;
    return done;
}

time_t time(time_t *out) {
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0) return (time_t)-1;
    if (out) *out = now.tv_sec;
    return now.tv_sec;
}
