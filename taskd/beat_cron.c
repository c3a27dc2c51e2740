/* beat_cron.c - see beat_cron.h. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "beat_cron.h"

#define ZONEINFO "/usr/share/zoneinfo/"
#define SEARCH_DAYS (8 * 366) /* Feb 29 on a given weekday comes back within this */

struct field {
    const char *name;
    int lo, hi;
    const char *const *names; /* names[i] stands for lo + i */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct field fields[5] = {
    {"minute", 0, 59, NULL},         {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},   {"month", 1, 12, month_names},
    {"day of week", 0, 7, dow_names},
};

/* A number or a name at *p; advances *p. -1 when there is neither. */
static int atom(const char **p, const struct field *f)
{
    if (isdigit((unsigned char)**p)) {
        char *end;
        long v = strtol(*p, &end, 10);
        if (end - *p > 3)
            return -2;
        *p = end;
        return (int)v;
    }
    for (int i = 0; f->names != NULL && f->names[i] != NULL; i++) {
        if (strncasecmp(*p, f->names[i], 3) == 0 && !isalpha((unsigned char)(*p)[3])) {
            *p += 3;
            return f->lo + i;
        }
    }
    return -1;
}

/* One comma-separated item of field `f` (index fi) into *bits. */
static int item(const char **p, int fi, uint64_t *bits, bool *star, char *why, size_t size)
{
    const struct field *f = &fields[fi];
    int lo = f->lo, hi = f->hi, step = 1;
    if (**p == '*') {
        (*p)++;
        *star = true;
    } else {
        lo = atom(p, f);
        if (lo < 0) {
            snprintf(why, size, "field %d (%s): expected a number, a name or *", fi + 1, f->name);
            return -1;
        }
        hi = lo;
        if (**p == '-') {
            (*p)++;
            hi = atom(p, f);
            if (hi < 0) {
                snprintf(why, size, "field %d (%s): range without an end", fi + 1, f->name);
                return -1;
            }
        } else if (**p == '/') {
            hi = f->hi; /* "N/STEP": from N to the end */
        }
    }
    if (**p == '/') {
        (*p)++;
        const char *q = *p;
        step = atom(p, &(struct field){"step", 1, 999, NULL});
        if (step <= 0 || *p == q) {
            snprintf(why, size, "field %d (%s): the step must be a positive number", fi + 1,
                     f->name);
            return -1;
        }
    }
    if (lo == hi && (lo < f->lo || lo > f->hi)) {
        snprintf(why, size, "field %d (%s): %d is out of range %d-%d", fi + 1, f->name, lo,
                 f->lo, f->hi);
        return -1;
    }
    if (lo < f->lo || hi > f->hi || lo > hi) {
        snprintf(why, size, "field %d (%s): %d-%d is out of range %d-%d", fi + 1, f->name, lo,
                 hi, f->lo, f->hi);
        return -1;
    }
    for (int v = lo; v <= hi; v += step)
        *bits |= 1ull << v;
    return 0;
}

static int parse_field(const char *text, int fi, uint64_t *bits, bool *star, char *why,
                       size_t size)
{
    const char *p = text;
    *bits = 0;
    *star = false;
    for (;;) {
        if (item(&p, fi, bits, star, why, size) != 0)
            return -1;
        if (*p == '\0')
            return 0;
        if (*p != ',') {
            snprintf(why, size, "field %d (%s): unexpected '%c' in \"%s\"", fi + 1,
                     fields[fi].name, *p, text);
            return -1;
        }
        p++;
    }
}

static const char *macro(const char *expr)
{
    static const char *const m[][2] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (strcmp(expr, m[i][0]) == 0)
            return m[i][1];
    return expr;
}

int beat_cron_parse(const char *expr, struct beat_cron *out, char *why, size_t size)
{
    char buf[256], *parts[6], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", macro(expr));
    int n = 0;
    for (char *t = strtok_r(buf, " \t", &save); t != NULL; t = strtok_r(NULL, " \t", &save))
        if (n < 6)
            parts[n++] = t;
        else
            n++;
    if (n != 5) {
        snprintf(why, size, "expected 5 fields (minute hour day-of-month month day-of-week), "
                 "got %d", n);
        return -1;
    }
    uint64_t bits[5];
    bool star[5];
    for (int i = 0; i < 5; i++)
        if (parse_field(parts[i], i, &bits[i], &star[i], why, size) != 0)
            return -1;
    memset(out, 0, sizeof(*out));
    out->minute = bits[0];
    out->hour = (uint32_t)bits[1];
    out->dom = (uint32_t)bits[2];
    out->month = (uint16_t)bits[3];
    out->dow = (uint8_t)((bits[4] & 0x7f) | (bits[4] >> 7)); /* 7 is Sunday too */
    out->dom_any = star[2];
    out->dow_any = star[4];
    return 0;
}

static long offset_at(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm lt;
    localtime_r(&tt, &lt);
    return lt.tm_gmtoff;
}

/* The instant of wall time `base` (wall clock as if it were UTC) in the current zone: the
 * earlier of two (fall back), or the end of the jump when it does not exist (spring forward). */
static int64_t wall_to_instant(int64_t base)
{
    long offs[3] = {offset_at(base - 86400), offset_at(base), offset_at(base + 86400)};
    int64_t best = INT64_MAX;
    for (int i = 0; i < 3; i++) {
        int64_t t = base - offs[i];
        if (offset_at(t) == offs[i] && t < best)
            best = t;
    }
    if (best != INT64_MAX)
        return best;
    /* In a gap: the offset grows from offs[0] to offs[2] at an instant in (lo, hi]. */
    int64_t lo = base - offs[2], hi = base - offs[0];
    long before = offset_at(lo);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (offset_at(mid) == before)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

static bool day_matches(const struct beat_cron *c, const struct tm *d)
{
    if (!(c->month & (1u << (d->tm_mon + 1))))
        return false;
    bool dom = (c->dom >> d->tm_mday) & 1u, dow = (c->dow >> d->tm_wday) & 1u;
    if (c->dom_any || c->dow_any)
        return dom && dow;
    return dom || dow;
}

int64_t beat_cron_next(const struct beat_cron *c, int64_t after)
{
    time_t a = (time_t)after;
    struct tm lt;
    localtime_r(&a, &lt);
    /* Day 0 is the local date of `after`; a wall time well before `after`'s cannot map past
     * it (offsets change by hours at most), so those are skipped without a look-up. */
    struct tm day0 = {.tm_year = lt.tm_year, .tm_mon = lt.tm_mon, .tm_mday = lt.tm_mday};
    int64_t start = (int64_t)timegm(&day0);
    int64_t after_wall = after + lt.tm_gmtoff;
    for (int d = -1; d <= SEARCH_DAYS; d++) {
        int64_t midnight = start + (int64_t)d * 86400;
        time_t mt = (time_t)midnight;
        struct tm dt;
        gmtime_r(&mt, &dt);
        if (!day_matches(c, &dt))
            continue;
        for (int h = 0; h < 24; h++) {
            if (!((c->hour >> h) & 1u))
                continue;
            for (int m = 0; m < 60; m++) {
                if (!((c->minute >> m) & 1ull))
                    continue;
                int64_t wall = midnight + h * 3600 + m * 60;
                if (wall < after_wall - 6 * 3600) /* no zone moves its offset further */
                    continue;
                int64_t t = wall_to_instant(wall);
                if (t > after)
                    return t;
            }
        }
    }
    return -1;
}

bool beat_tz_valid(const char *zone)
{
    if (zone == NULL || zone[0] == '\0')
        return true;
    if (zone[0] == '/' || strstr(zone, "..") != NULL || strlen(zone) > 200)
        return false;
    char path[256];
    snprintf(path, sizeof(path), ZONEINFO "%s", zone);
    return access(path, R_OK) == 0;
}

int beat_tz_use(const char *zone)
{
    if (!beat_tz_valid(zone))
        return -1;
    char tz[256];
    snprintf(tz, sizeof(tz), ":%s", zone != NULL && zone[0] ? zone : "UTC");
    if (setenv("TZ", tz, 1) != 0)
        return -1;
    tzset();
    return 0;
}
