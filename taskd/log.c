/* log.c - see log.h. The process's only logger; the level is set once at start-up (and on
 * SIGHUP), from the main thread, before task threads exist. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <task/error.h>
#include "internal.h"
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

/* Bytes of the printable UTF-8 character at p, or 0 when p starts a byte to escape. C1 controls
 * and U+2028/U+2029 count as line breaks to some log viewers, so they are escaped too. */
static size_t printable_seq(const unsigned char *p)
{
    unsigned c = p[0];
    size_t n = c >= 0xf0 && c < 0xf8   ? 4
               : c >= 0xe0 && c < 0xf0 ? 3
               : c >= 0xc0 && c < 0xe0 ? 2
                                       : 0;
    for (size_t k = 1; k < n; k++)
        if (p[k] == '\0')
            return 0;
    if (n == 0 || !task__utf8_check((const char *)p, n, false))
        return 0;
    if ((c == 0xc2 && p[1] < 0xa0) || (c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)))
        return 0;
    return n;
}

/* The escaped form of the character at p into esc[8]: its length; *adv: bytes consumed. */
static size_t piece(const unsigned char *p, char esc[8], size_t *adv)
{
    static const char hex[] = "0123456789abcdef";
    unsigned c = p[0];
    *adv = 1;
    if (c == '"' || c == '\\') {
        esc[0] = '\\';
        esc[1] = (char)c;
        return 2;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
        esc[0] = '\\';
        esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        return 2;
    }
    if (c >= 0x20 && c < 0x7f) {
        esc[0] = (char)c;
        return 1;
    }
    size_t n = c >= 0x80 ? printable_seq(p) : 0;
    if (n > 0) {
        memcpy(esc, p, n);
        *adv = n;
        return n;
    }
    esc[0] = '\\';
    esc[1] = 'x';
    esc[2] = hex[c >> 4];
    esc[3] = hex[c & 15];
    return 4;
}

static bool needs_quotes(const unsigned char *p)
{
    if (*p == '\0')
        return true;
    while (*p != '\0') {
        char esc[8];
        size_t adv;
        if (*p == ' ' || *p == '=' || piece(p, esc, &adv) != adv || esc[0] != (char)*p)
            return true;
        p += adv;
    }
    return false;
}

char *log_escape(const char *value, char *buf, size_t size)
{
    const unsigned char *p = (const unsigned char *)(value != NULL ? value : "");
    bool quote = needs_quotes(p);
    size_t total = 0;
    for (const unsigned char *q = p; *q != '\0';) {
        char esc[8];
        size_t adv;
        total += piece(q, esc, &adv);
        q += adv;
    }
    /* Room for the text between the quotes: the rest is NUL, quotes, and "..." when cut. */
    size_t room = size - 1 - (quote ? 2 : 0);
    size_t limit = total <= room ? room : room - 3;
    size_t o = 0;
    if (quote)
        buf[o++] = '"';
    while (*p != '\0') {
        char esc[8];
        size_t adv, n = piece(p, esc, &adv);
        if (o - (quote ? 1 : 0) + n > limit)
            break;
        memcpy(buf + o, esc, n);
        o += n;
        p += adv;
    }
    if (*p != '\0') {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    if (quote)
        buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

const char *log_v(const char *value)
{
    static __thread char slots[LOG_V_SLOTS][LOG_V_MAX + 3];
    static __thread unsigned next;
    char *buf = slots[next++ % LOG_V_SLOTS];
    return log_escape(value, buf, LOG_V_MAX + 3);
}
