/* log.c - see log.h. The process's only logger; the level is set once at start-up (and on
 * SIGHUP), from the main thread, before task threads exist. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <task/error.h>
#include "log.h"

static enum log_level threshold = LV_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_set_level(const char *name)
{
    for (int i = 0; i <= LV_DEBUG; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            threshold = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_enabled(enum log_level lv)
{
    return lv <= threshold;
}

void log_event(enum log_level lv, int err, const char *event, const char *fmt, ...)
{
    if (lv > threshold)
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[lv], event);
    if (fmt != NULL && fmt[0] != '\0' && n > 0 && (size_t)n < sizeof(line) - 1) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if (n < 0 || (size_t)n >= sizeof(line))
        n = (int)sizeof(line) - 1;
    if (err != 0) {
        char errbuf[128];
        const char *text = err > 0 ? strerror_r(err, errbuf, sizeof(errbuf)) : task_strerror(err);
        int m = snprintf(line + n, sizeof(line) - (size_t)n, " err=\"%s\"", text);
        if (m > 0)
            n = (size_t)(n + m) < sizeof(line) ? n + m : (int)sizeof(line) - 1;
    }
    line[n] = '\n';
    fwrite(line, 1, (size_t)n + 1, stderr);
}
