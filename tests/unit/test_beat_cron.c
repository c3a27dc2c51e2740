/* test_beat_cron.c - crontab parsing, next fire times, and the daylight saving rules of
 * beat_cron.h (a skipped wall time fires once at the end of the jump; a repeated one fires once,
 * at its first occurrence). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "beat_cron.h"

static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm t = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                   .tm_min = mi};
    return (int64_t)timegm(&t);
}

static struct beat_cron parse_ok(const char *expr)
{
    struct beat_cron c;
    char why[200] = "";
    int rc = beat_cron_parse(expr, &c, why, sizeof(why));
    if (rc != 0)
        fail_msg("%s: %s", expr, why);
    return c;
}

static void parse_fields(void **state)
{
    (void)state;
    struct beat_cron c = parse_ok("*/15 3,5-7 1 jan-mar mon-fri");
    assert_true(c.minute == ((1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45)));
    assert_int_equal(c.hour, (1u << 3) | (1u << 5) | (1u << 6) | (1u << 7));
    assert_int_equal(c.dom, 1u << 1);
    assert_int_equal(c.month, (1u << 1) | (1u << 2) | (1u << 3));
    assert_int_equal(c.dow, 0x3e);
    assert_false(c.dom_any);
    assert_false(c.dow_any);
    c = parse_ok("0 0 * * 7");
    assert_int_equal(c.dow, 1u); /* 7 is Sunday */
    c = parse_ok("5/20 * * * *");
    assert_true(c.minute == ((1ull << 5) | (1ull << 25) | (1ull << 45)));
    c = parse_ok("@daily");
    assert_true(c.minute == 1ull && c.hour == 1u);
}

static void parse_errors(void **state)
{
    (void)state;
    const char *bad[] = {"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *",
                         "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *",
                         "a * * * *", "1,,2 * * * *", "* * * foo *", "1- * * * *",
                         "*/ * * * *", "1000 * * * *"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct beat_cron c;
        char why[200] = "";
        if (beat_cron_parse(bad[i], &c, why, sizeof(why)) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_true(why[0] != '\0');
    }
    char why[200];
    struct beat_cron c;
    assert_int_equal(beat_cron_parse("* 24 * * *", &c, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "field 2 (hour)"));
}

static void next_utc(void **state)
{
    (void)state;
    assert_int_equal(beat_tz_use("UTC"), 0);
    struct beat_cron c = parse_ok("0 3 * * *");
    assert_int_equal(beat_cron_next(&c, utc(2024, 5, 1, 2, 59)), utc(2024, 5, 1, 3, 0));
    assert_int_equal(beat_cron_next(&c, utc(2024, 5, 1, 3, 0)), utc(2024, 5, 2, 3, 0));
    c = parse_ok("* * * * *");
    assert_int_equal(beat_cron_next(&c, utc(2024, 12, 31, 23, 59)), utc(2025, 1, 1, 0, 0));
    c = parse_ok("0 0 29 2 *"); /* next leap day */
    assert_int_equal(beat_cron_next(&c, utc(2024, 3, 1, 0, 0)), utc(2028, 2, 29, 0, 0));
    c = parse_ok("0 0 31 2 *");
    assert_int_equal(beat_cron_next(&c, utc(2024, 3, 1, 0, 0)), -1);
    /* Both day fields restricted: either matches (1st of the month or a Monday). */
    c = parse_ok("0 12 1 * mon");
    assert_int_equal(beat_cron_next(&c, utc(2024, 5, 1, 12, 0)), utc(2024, 5, 6, 12, 0));
    assert_int_equal(beat_cron_next(&c, utc(2024, 5, 27, 12, 0)), utc(2024, 6, 1, 12, 0));
    /* One restricted: both must match (Fridays in June). */
    c = parse_ok("0 0 * 6 fri");
    assert_int_equal(beat_cron_next(&c, utc(2024, 1, 1, 0, 0)), utc(2024, 6, 7, 0, 0));
}

static void next_in_zone(void **state)
{
    (void)state;
    assert_int_equal(beat_tz_use("Europe/Berlin"), 0);
    struct beat_cron c = parse_ok("0 3 * * *");
    /* 03:00 CEST is 01:00 UTC in summer, 03:00 CET is 02:00 UTC in winter. */
    assert_int_equal(beat_cron_next(&c, utc(2024, 7, 1, 0, 0)), utc(2024, 7, 1, 1, 0));
    assert_int_equal(beat_cron_next(&c, utc(2024, 1, 1, 0, 0)), utc(2024, 1, 1, 2, 0));
    assert_int_equal(beat_tz_use("America/New_York"), 0);
    assert_int_equal(beat_cron_next(&c, utc(2024, 1, 1, 0, 0)), utc(2024, 1, 1, 8, 0));
    assert_int_equal(beat_tz_use("Nowhere/Atlantis"), -1);
    assert_false(beat_tz_valid("../../etc/passwd"));
    assert_true(beat_tz_valid("Europe/Berlin"));
}

/* Berlin, 2024-03-31: clocks jump from 02:00 CET (01:00 UTC) to 03:00 CEST. */
static void dst_spring_forward(void **state)
{
    (void)state;
    assert_int_equal(beat_tz_use("Europe/Berlin"), 0);
    struct beat_cron c = parse_ok("30 2 * * *");
    /* 02:30 does not exist that day: it fires once at 03:00 CEST = 01:00 UTC ... */
    assert_int_equal(beat_cron_next(&c, utc(2024, 3, 30, 12, 0)), utc(2024, 3, 31, 1, 0));
    /* ... and the next one is the normal 02:30 CEST of the day after. */
    assert_int_equal(beat_cron_next(&c, utc(2024, 3, 31, 1, 0)), utc(2024, 4, 1, 0, 30));
    /* Four skipped wall times of one jump fire once, together, then 03:00 as usual. */
    c = parse_ok("*/15 2,3 * * *");
    assert_int_equal(beat_cron_next(&c, utc(2024, 3, 31, 0, 59)), utc(2024, 3, 31, 1, 0));
    assert_int_equal(beat_cron_next(&c, utc(2024, 3, 31, 1, 0)), utc(2024, 3, 31, 1, 15));
    /* An hourly entry has no hour 02:00 that day: 01:00 CET then 03:00 CEST, one hour apart. */
    c = parse_ok("0 * * * *");
    assert_int_equal(beat_cron_next(&c, utc(2024, 3, 31, 0, 0)), utc(2024, 3, 31, 1, 0));
    assert_int_equal(beat_cron_next(&c, utc(2024, 3, 31, 1, 0)), utc(2024, 3, 31, 2, 0));
}

/* Berlin, 2024-10-27: clocks go back from 03:00 CEST (01:00 UTC) to 02:00 CET. */
static void dst_fall_back(void **state)
{
    (void)state;
    assert_int_equal(beat_tz_use("Europe/Berlin"), 0);
    struct beat_cron c = parse_ok("30 2 * * *");
    /* 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET): it fires the first
     * time only. */
    assert_int_equal(beat_cron_next(&c, utc(2024, 10, 26, 12, 0)), utc(2024, 10, 27, 0, 30));
    assert_int_equal(beat_cron_next(&c, utc(2024, 10, 27, 0, 30)), utc(2024, 10, 28, 1, 30));
    /* From inside the repeated hour (01:10 UTC = 02:10 CET, second pass) nothing fires
     * again until the next day. */
    assert_int_equal(beat_cron_next(&c, utc(2024, 10, 27, 1, 10)), utc(2024, 10, 28, 1, 30));
    /* Every 30 minutes: 02:00 and 02:30 of the first pass, then 03:00 CET; the second pass
     * of the 02 hour does not fire. */
    c = parse_ok("*/30 * * * *");
    assert_int_equal(beat_cron_next(&c, utc(2024, 10, 27, 0, 0)), utc(2024, 10, 27, 0, 30));
    assert_int_equal(beat_cron_next(&c, utc(2024, 10, 27, 0, 30)), utc(2024, 10, 27, 2, 0));
}

/* Sydney goes forward in October (southern hemisphere): 2024-10-06 02:00 AEST -> 03:00 AEDT. */
static void dst_southern(void **state)
{
    (void)state;
    assert_int_equal(beat_tz_use("Australia/Sydney"), 0);
    struct beat_cron c = parse_ok("30 2 * * *");
    /* 03:00 AEDT = 16:00 UTC the day before. */
    assert_int_equal(beat_cron_next(&c, utc(2024, 10, 5, 12, 0)), utc(2024, 10, 5, 16, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_fields),       cmocka_unit_test(parse_errors),
        cmocka_unit_test(next_utc),           cmocka_unit_test(next_in_zone),
        cmocka_unit_test(dst_spring_forward), cmocka_unit_test(dst_fall_back),
        cmocka_unit_test(dst_southern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
