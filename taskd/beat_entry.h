/*
 * beat_entry.h - the beat's schedule: entries read from the `beat` section of taskd.conf, their
 * tick times and each tick's task id.
 *
 *   beat = { entries = ( { name = "tick"; task = "test.add"; args = "[1, 1]"; every = 10.0; },
 *                        { name = "nightly"; task = "report.build"; cron = "0 3 * * *";
 *                          timezone = "Europe/Berlin"; queue = "reports"; expires = 3600.0; } ); };
 *
 * Ticks are instants in Unix milliseconds. An `every` entry ticks at the multiples of its
 * period since the Unix epoch, so every instance computes the same ticks whenever it starts.
 */
#ifndef TASKD_BEAT_ENTRY_H
#define TASKD_BEAT_ENTRY_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>
#include <task/error.h>
#include "beat_cron.h"

enum beat_missed { BEAT_MISSED_ONCE = 0, BEAT_MISSED_SKIP };

struct beat_entry {
    char name[101];
    char task[256];
    json_object *args, *kwargs;  /* owned */
    int64_t every_ms;            /* 0: a cron entry */
    struct beat_cron cron;
    char cron_text[128];
    char zone[128];              /* "" = UTC */
    char queue[256];             /* "" = the task's route */
    int priority;                /* 0: not set */
    double expires_s;            /* 0: never */
    enum beat_missed missed;     /* ticks later than grace_ms: fire the newest once, or none */
    int64_t grace_ms;            /* a tick this late still fires (a failover, a restart) */
    /* Run time, kept across a reload by name (beat.c). */
    int64_t last_ms;             /* last tick fired (from the broker's store); valid if known */
    bool last_known;
    bool last_fired;             /* last_ms is a tick that was sent (else: when we started) */
    bool check_next;             /* just read from the store: ask the results stream whether the
                                  * next tick was sent already (beat.c) */
};

struct beat_schedule {
    struct beat_entry *v;        /* owned */
    int n;
    double token_rotate_s;       /* beat.token_rotate: the leader replaces its token this often,
                                  * inside the broker's consumer_timeout (beat_leader.h) */
};

/* Read the `beat` section of each file in `paths` (NULL-terminated; missing files are skipped;
 * a later file's section replaces an earlier one's). Errors name file:line and the option
 * ("taskd.conf:12: beat.entries[1].cron: field 2 (hour): ..."). Returns 0 or TASK_ECONFIG. */
int beat_schedule_load(struct beat_schedule *s, const char *const *paths, task_error *err);
void beat_schedule_free(struct beat_schedule *s);

/* The first tick of `e` strictly after `after_ms`; -1 when there is none. Changes TZ for a
 * cron entry (beat_cron.h). */
int64_t beat_entry_next(const struct beat_entry *e, int64_t after_ms);

/* What beat_entry_due() decided besides the ticks to send. */
struct beat_due {
    int64_t passed_ms;  /* the newest tick later than grace (-1: none was) */
    bool once;          /* ... and it is the first tick to send (missed = once) */
    int64_t next_ms;    /* the first tick after those to send (-1: none) */
};

#define BEAT_DUE_MAX 1000
#define BEAT_TOKEN_ROTATE_DEFAULT_S 300.0

/*
 * The ticks of `e` to send at now_ms when the last one sent was last_ms, in order, into
 * ticks[max]: ticks later than the entry's grace are missed: the newest of them is sent once
 * (missed = once) or none is (skip); every tick within grace is sent, late. At most `max`; the
 * rest come at the next call. A pure function (but for TZ): the missed policy is tested on it.
 */
int beat_entry_due(const struct beat_entry *e, int64_t last_ms, int64_t now_ms, int64_t *ticks,
                   int max, struct beat_due *due);

/* The task id of tick `tick_ms` of entry `name`: a UUIDv7 whose time field is the tick and
 * whose other bits are a hash of name and tick, so every instance sends a tick under the same
 * id (and task_lookup() starts reading the results stream at the tick). */
void beat_tick_id(const char *name, int64_t tick_ms, char out[37]);

/* "every 10s" or "cron 0 3 * * * Europe/Berlin" into buf. */
const char *beat_entry_describe(const struct beat_entry *e, char *buf, size_t size);

#endif
