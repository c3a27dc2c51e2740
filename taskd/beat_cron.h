/*
 * beat_cron.h - five-field crontab expressions and their next fire time in a time zone.
 *
 * Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or jan..dec), day of week
 * (0-7 or sun..sat, 0 and 7 are Sunday). Each is a comma list of `*`, `N`, `N-M`, each with an
 * optional `/STEP`. As in Vixie cron, when both day fields are restricted a day matching either
 * one fires. @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly are accepted.
 *
 * Times are wall-clock times of the process's time zone (TZ): beat_tz_use() sets it. The beat
 * runs in a process of its own, so changing TZ there changes no one else's local time.
 *
 * Daylight saving time (the rules are cron's, tested in tests/unit/test_beat_cron.c):
 *  - a wall time that does not exist (skipped by a spring-forward jump) fires once, at the
 *    first instant after the jump (02:30 on a day that jumps from 02:00 to 03:00 fires at
 *    03:00); several skipped wall times of one jump fire once together;
 *  - a wall time that exists twice (fall back) fires once, at its first occurrence.
 */
#ifndef TASKD_BEAT_CRON_H
#define TASKD_BEAT_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct beat_cron {
    uint64_t minute;  /* bit n: minute n */
    uint32_t hour;
    uint32_t dom;     /* bit n: day n (1..31) */
    uint16_t month;   /* bit n: month n (1..12) */
    uint8_t dow;      /* bit n: weekday n (0 = Sunday) */
    bool dom_any, dow_any; /* the field was `*` (or `*` with a step): see the OR rule above */
};

/* Parse `expr` into *out. Returns 0, or -1 with the reason ("field 2 (hour): 24 is out of
 * range 0-23") in why. */
int beat_cron_parse(const char *expr, struct beat_cron *out, char *why, size_t size);

/* The first fire time (Unix seconds) strictly after `after`, in the current time zone; -1 if
 * none within eight years (e.g. "0 0 31 2 *"). */
int64_t beat_cron_next(const struct beat_cron *c, int64_t after);

/* Use IANA zone `zone` ("Europe/Berlin"; NULL or "" is UTC) for local times from now on in this
 * process. Returns 0, or -1 when the zone has no file under /usr/share/zoneinfo. */
int beat_tz_use(const char *zone);

/* Does IANA zone `zone` exist (a file under /usr/share/zoneinfo, no "..")? */
bool beat_tz_valid(const char *zone);

#endif
