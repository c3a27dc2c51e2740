/* test_beat_entry.c - the beat section of taskd.conf (errors name file:line and the entry),
 * tick times of `every` entries, and tick ids (deterministic, UUIDv7-shaped, time-ordered). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "beat_entry.h"

static char path[64];

static int load_text(const char *text, struct beat_schedule *s, task_error *err)
{
    snprintf(path, sizeof(path), "/tmp/test_beat_entry.%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    const char *paths[] = {"/nonexistent/taskd.conf", path, NULL};
    int rc = beat_schedule_load(s, paths, err);
    unlink(path);
    return rc;
}

static void loads_entries(void **state)
{
    (void)state;
    struct beat_schedule s;
    task_error err = {0};
    int rc = load_text("worker = { threads = 2; };\n"
                       "beat = { entries = (\n"
                       "  { name = \"tick\"; task = \"test.add\"; args = \"[1, 1]\"; every = 10; },\n"
                       "  { name = \"nightly\"; task = \"report.build\"; cron = \"0 3 * * *\";\n"
                       "    timezone = \"Europe/Berlin\"; queue = \"reports\"; expires = 3600.0;\n"
                       "    priority = 5; missed = \"skip\"; grace = 5.5; kwargs = \"{\\\"a\\\": 1}\"; }\n"
                       "); };\n", &s, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.v[0].every_ms, 10000);
    assert_int_equal(json_object_array_length(s.v[0].args), 2);
    assert_int_equal(s.v[0].missed, BEAT_MISSED_ONCE);
    assert_int_equal(s.v[0].grace_ms, 300000);
    assert_int_equal(s.v[1].every_ms, 0);
    assert_string_equal(s.v[1].zone, "Europe/Berlin");
    assert_string_equal(s.v[1].queue, "reports");
    assert_int_equal(s.v[1].priority, 5);
    assert_int_equal(s.v[1].missed, BEAT_MISSED_SKIP);
    assert_int_equal(s.v[1].grace_ms, 5500);
    assert_true(s.v[1].expires_s == 3600.0);
    /* 03:00 Berlin in January is 02:00 UTC. */
    assert_int_equal(beat_entry_next(&s.v[1], 1704067200000ll), 1704074400000ll);
    beat_schedule_free(&s);
}

static void errors_name_line(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; every = 1.0; },\n"
         "{ name = \"b\"; task = \"t\";\n cron = \"0 24 * * *\"; } ); };\n",
         ":3: beat.entries[1].cron: field 2 (hour)"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; } ); };", "exactly one of every"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; every = 1.0; cron = \"* * * * *\"; } ); };",
         "exactly one of every"},
        {"beat = { entries = ( { name = \"a b\"; task = \"t\"; every = 1.0; } ); };",
         "beat.entries[0].name"},
        {"beat = { entries = ( { task = \"t\"; every = 1.0; } ); };", "beat.entries[0].name"},
        {"beat = { entries = ( { name = \"a\"; every = 1.0; } ); };", "beat.entries[0].task"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; every = 0.01; } ); };", "every"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; every = 1.0; args = \"{}\"; } ); };",
         "beat.entries[0].args: expected a JSON array"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; every = 1.0; kwargs = \"[\"; } ); };",
         "kwargs"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; cron = \"* * * * *\";\n"
         "timezone = \"Mars/Olympus\"; } ); };", ":2: beat.entries[0].timezone: unknown time zone"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; every = 1.0; timezone = \"UTC\"; } ); };",
         "cron entries only"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; every = 1.0; priority = 10; } ); };",
         "priority"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; every = 1.0; missed = \"all\"; } ); };",
         "missed"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; every = 1.0; colour = 1; } ); };",
         "beat.entries[0].colour: unknown option"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; every = 1.0; },\n"
         "{ name = \"a\"; task = \"t\"; every = 2.0; } ); };", "\"a\" is taken by entry 0"},
        {"beat = { schedule = 1; };", "beat.schedule: unknown option"},
        {"beat = { entries = ( { name = \"a\"; task = \"t\"; every = \"1\"; } ); };",
         "expected a number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct beat_schedule s;
        task_error err = {0};
        if (load_text(cases[i].text, &s, &err) == 0)
            fail_msg("case %zu accepted", i);
        if (strstr(err.msg, cases[i].want) == NULL || strstr(err.msg, path) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\" or the file name", i, err.msg, cases[i].want);
        assert_int_equal(err.code, TASK_ECONFIG);
    }
}

static void every_ticks(void **state)
{
    (void)state;
    struct beat_entry e = {.every_ms = 1500};
    assert_int_equal(beat_entry_next(&e, 0), 1500);
    assert_int_equal(beat_entry_next(&e, 1499), 1500);
    assert_int_equal(beat_entry_next(&e, 1500), 3000);
    /* The same ticks whatever the starting point: instances agree. */
    e.every_ms = 10000;
    assert_int_equal(beat_entry_next(&e, 1796305919123ll), 1796305920000ll);
}

static void tick_ids(void **state)
{
    (void)state;
    char a[37], b[37], c[37], d[37];
    beat_tick_id("tick", 1796305920000ll, a);
    beat_tick_id("tick", 1796305920000ll, b);
    beat_tick_id("tick", 1796305921000ll, c);
    beat_tick_id("tock", 1796305920000ll, d);
    assert_string_equal(a, b);          /* deterministic */
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[14], '7');       /* version 7 */
    assert_non_null(strchr("89ab", a[19])); /* RFC 9562 variant */
    /* The time field is the tick, so ids sort by tick and lookups start there. */
    char hex[13];
    memcpy(hex, a, 8);
    memcpy(hex + 8, a + 9, 4);
    hex[12] = '\0';
    assert_int_equal(strtoll(hex, NULL, 16), 1796305920000ll);
    assert_true(strcmp(a, c) < 0);
}

/* Missed ticks: later than grace, the newest is sent once (or none: skip); within grace, every
 * tick is sent, late, in order. */
static void missed_policy(void **state)
{
    (void)state;
    struct beat_entry e = {.every_ms = 1000, .grace_ms = 3000, .missed = BEAT_MISSED_ONCE};
    int64_t t[BEAT_DUE_MAX];
    struct beat_due d;
    int n = beat_entry_due(&e, 10000, 20500, t, BEAT_DUE_MAX, &d);
    assert_int_equal(n, 4);
    assert_int_equal(t[0], 17000); /* the newest of 11000..17000, once */
    assert_int_equal(t[1], 18000);
    assert_int_equal(t[3], 20000);
    assert_int_equal(d.passed_ms, 17000);
    assert_true(d.once);
    assert_int_equal(d.next_ms, 21000);
    e.missed = BEAT_MISSED_SKIP;
    n = beat_entry_due(&e, 10000, 20500, t, BEAT_DUE_MAX, &d);
    assert_int_equal(n, 3);
    assert_int_equal(t[0], 18000);
    assert_int_equal(d.passed_ms, 17000);
    assert_false(d.once);
    /* Nothing missed: the one due tick. */
    n = beat_entry_due(&e, 19000, 20500, t, BEAT_DUE_MAX, &d);
    assert_int_equal(n, 1);
    assert_int_equal(t[0], 20000);
    assert_int_equal(d.passed_ms, -1);
    /* Nothing due yet. */
    n = beat_entry_due(&e, 20000, 20500, t, BEAT_DUE_MAX, &d);
    assert_int_equal(n, 0);
    assert_int_equal(d.next_ms, 21000);
    /* More than `max`: the first ones now, the rest at the next call. */
    e.missed = BEAT_MISSED_ONCE;
    n = beat_entry_due(&e, 10000, 20500, t, 2, &d);
    assert_int_equal(n, 2);
    assert_int_equal(t[1], 18000);
    assert_int_equal(d.next_ms, 19000);
    /* Cron, hourly, five hours down, grace 5 min: 04:00 once (01:00-03:00 dropped), 05:00
     * (2 min late) as usual. 2024-05-01 00:00 UTC is 1714521600. */
    struct beat_entry c = {.grace_ms = 300000, .missed = BEAT_MISSED_ONCE};
    char why[100];
    assert_int_equal(beat_cron_parse("0 * * * *", &c.cron, why, sizeof(why)), 0);
    n = beat_entry_due(&c, 1714521600000ll, (1714521600ll + 5 * 3600 + 120) * 1000, t,
                       BEAT_DUE_MAX, &d);
    assert_int_equal(n, 2);
    assert_int_equal(t[0], (1714521600ll + 4 * 3600) * 1000);
    assert_int_equal(t[1], (1714521600ll + 5 * 3600) * 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_entries), cmocka_unit_test(errors_name_line),
        cmocka_unit_test(every_ticks), cmocka_unit_test(tick_ids),
        cmocka_unit_test(missed_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
