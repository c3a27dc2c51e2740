/* beat_entry.c - see beat_entry.h. */
#include <ctype.h>
#include <libconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "beat_entry.h"
#include "internal.h"

#define MAX_ENTRIES 1000

struct where {
    const char *file;
    unsigned line;
    int index;
};

static int bad(task_error *err, const struct where *w, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bad(task_error *err, const struct where *w, const char *key, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return task__fail(err, TASK_ECONFIG, "%s:%u: beat.entries[%d]%s%s: %s", w->file, w->line,
                      w->index, key[0] ? "." : "", key, msg);
}

static bool name_ok(const char *s)
{
    if (s[0] == '\0' || strlen(s) > 100)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
            return false;
    return true;
}

/* A string member `key` of group `g` (NULL when absent); wrong type is an error. */
static int get_str(config_setting_t *g, const char *key, const char **out, struct where *w,
                   task_error *err)
{
    config_setting_t *s = config_setting_get_member(g, key);
    *out = NULL;
    if (s == NULL)
        return 0;
    w->line = config_setting_source_line(s);
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return bad(err, w, key, "expected a string");
    *out = config_setting_get_string(s);
    return 0;
}

static int get_num(config_setting_t *g, const char *key, double *out, bool *present,
                   struct where *w, task_error *err)
{
    config_setting_t *s = config_setting_get_member(g, key);
    *present = s != NULL;
    if (s == NULL)
        return 0;
    w->line = config_setting_source_line(s);
    int t = config_setting_type(s);
    if (t == CONFIG_TYPE_FLOAT)
        *out = config_setting_get_float(s);
    else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
        *out = (double)config_setting_get_int64(s);
    else
        return bad(err, w, key, "expected a number");
    return 0;
}

static int get_json(config_setting_t *g, const char *key, json_type want, json_object **out,
                    struct where *w, task_error *err)
{
    const char *text;
    int rc = get_str(g, key, &text, w, err);
    if (rc != 0)
        return rc;
    *out = text != NULL ? json_tokener_parse(text)
                        : (want == json_type_array ? json_object_new_array()
                                                   : json_object_new_object());
    if (*out == NULL || !json_object_is_type(*out, want)) {
        json_object_put(*out);
        *out = NULL;
        return bad(err, w, key, "expected a JSON %s in a string, e.g. %s",
                   want == json_type_array ? "array" : "object",
                   want == json_type_array ? "\"[1, 2]\"" : "\"{\\\"k\\\": 1}\"");
    }
    return 0;
}

static int entry_schedule(config_setting_t *g, struct beat_entry *e, struct where *w,
                          task_error *err)
{
    double every = 0;
    bool has_every;
    const char *cron, *zone;
    int rc = get_num(g, "every", &every, &has_every, w, err);
    if (rc == 0)
        rc = get_str(g, "cron", &cron, w, err);
    if (rc == 0)
        rc = get_str(g, "timezone", &zone, w, err);
    if (rc != 0)
        return rc;
    if (has_every == (cron != NULL))
        return bad(err, w, "", "give exactly one of every (seconds) and cron");
    if (has_every) {
        if (!(every >= 0.1 && every <= 366 * 86400.0))
            return bad(err, w, "every", "%g is out of range 0.1..31622400 seconds", every);
        e->every_ms = (int64_t)llround(every * 1000);
        if (zone != NULL)
            return bad(err, w, "timezone", "applies to cron entries only");
        return 0;
    }
    char why[200];
    if (beat_cron_parse(cron, &e->cron, why, sizeof(why)) != 0)
        return bad(err, w, "cron", "%s", why);
    snprintf(e->cron_text, sizeof(e->cron_text), "%s", cron);
    if (zone != NULL && !beat_tz_valid(zone))
        return bad(err, w, "timezone", "unknown time zone \"%s\" (an IANA name such as "
                   "Europe/Berlin, from /usr/share/zoneinfo)", zone);
    snprintf(e->zone, sizeof(e->zone), "%s", zone != NULL ? zone : "");
    return 0;
}

static int entry_options(config_setting_t *g, struct beat_entry *e, struct where *w,
                         task_error *err)
{
    const char *queue, *missed;
    double prio = 0, expires = 0, grace = 300;
    bool has;
    int rc = get_str(g, "queue", &queue, w, err);
    if (rc == 0 && (rc = get_num(g, "priority", &prio, &has, w, err)) == 0 && has &&
        !(prio >= 0 && prio <= 9 && prio == floor(prio)))
        rc = bad(err, w, "priority", "%g is out of range 0..9", prio);
    if (rc == 0 && (rc = get_num(g, "expires", &expires, &has, w, err)) == 0 && has &&
        !(expires > 0))
        rc = bad(err, w, "expires", "must be a positive number of seconds");
    if (rc == 0 && (rc = get_num(g, "grace", &grace, &has, w, err)) == 0 &&
        !(grace >= 0 && grace <= 7 * 86400.0))
        rc = bad(err, w, "grace", "%g is out of range 0..604800 seconds", grace);
    if (rc == 0)
        rc = get_str(g, "missed", &missed, w, err);
    if (rc != 0)
        return rc;
    if (missed == NULL || strcmp(missed, "once") == 0)
        e->missed = BEAT_MISSED_ONCE;
    else if (strcmp(missed, "skip") == 0)
        e->missed = BEAT_MISSED_SKIP;
    else
        return bad(err, w, "missed", "\"%s\": expected \"once\" or \"skip\"", missed);
    snprintf(e->queue, sizeof(e->queue), "%s", queue != NULL ? queue : "");
    e->priority = (int)prio;
    e->expires_s = expires;
    e->grace_ms = (int64_t)llround(grace * 1000);
    return 0;
}

static const char *const known[] = {"name",     "task",    "args",    "kwargs", "every",
                                    "cron",     "timezone", "queue",  "priority", "expires",
                                    "missed",   "grace",   NULL};

static int load_entry(config_setting_t *g, struct beat_entry *e, struct where *w,
                      task_error *err)
{
    w->line = config_setting_source_line(g);
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return bad(err, w, "", "expected a group { name = ...; task = ...; ... }");
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        bool ok = false;
        for (int k = 0; known[k] && !ok; k++)
            ok = strcmp(config_setting_name(m), known[k]) == 0;
        w->line = config_setting_source_line(m);
        if (!ok)
            return bad(err, w, config_setting_name(m), "unknown option");
    }
    const char *name, *task;
    int rc = get_str(g, "name", &name, w, err);
    if (rc == 0 && (name == NULL || !name_ok(name)))
        rc = bad(err, w, "name", "required: 1 to 100 letters, digits, '.', '_' or '-'");
    if (rc == 0)
        rc = get_str(g, "task", &task, w, err);
    if (rc == 0 && (task == NULL || task[0] == '\0' || strlen(task) >= sizeof(e->task)))
        rc = bad(err, w, "task", "required: the task's name");
    if (rc != 0)
        return rc;
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->task, sizeof(e->task), "%s", task);
    rc = get_json(g, "args", json_type_array, &e->args, w, err);
    if (rc == 0)
        rc = get_json(g, "kwargs", json_type_object, &e->kwargs, w, err);
    if (rc == 0)
        rc = entry_schedule(g, e, w, err);
    if (rc == 0)
        rc = entry_options(g, e, w, err);
    return rc;
}

static int load_section(config_setting_t *beat, struct beat_schedule *s, const char *file,
                        task_error *err)
{
    struct where w = {file, config_setting_source_line(beat), -1};
    if (config_setting_type(beat) != CONFIG_TYPE_GROUP)
        return task__fail(err, TASK_ECONFIG, "%s:%u: beat: expected a section beat = { ... }",
                          file, w.line);
    for (int i = 0; i < config_setting_length(beat); i++) {
        config_setting_t *m = config_setting_get_elem(beat, (unsigned)i);
        const char *key = config_setting_name(m);
        unsigned line = config_setting_source_line(m);
        if (strcmp(key, "token_rotate") == 0) {
            int t = config_setting_type(m);
            double v = t == CONFIG_TYPE_FLOAT ? config_setting_get_float(m)
                       : t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64
                           ? (double)config_setting_get_int64(m) : -1;
            /* The broker's consumer_timeout is 30 min by default: stay well inside it. */
            if (!(v >= 1 && v <= 1500))
                return task__fail(err, TASK_ECONFIG, "%s:%u: beat.token_rotate: expected "
                                  "seconds in 1..1500", file, line);
            s->token_rotate_s = v;
        } else if (strcmp(key, "entries") != 0) {
            return task__fail(err, TASK_ECONFIG, "%s:%u: beat.%s: unknown option", file, line,
                              key);
        }
    }
    config_setting_t *list = config_setting_get_member(beat, "entries");
    if (list == NULL)
        return 0;
    if (!config_setting_is_list(list) && !config_setting_is_array(list))
        return task__fail(err, TASK_ECONFIG, "%s:%u: beat.entries: expected a list ( {...}, "
                          "{...} )", file, config_setting_source_line(list));
    int n = config_setting_length(list);
    if (n > MAX_ENTRIES)
        return task__fail(err, TASK_ECONFIG, "%s:%u: beat.entries: more than %d entries", file,
                          config_setting_source_line(list), MAX_ENTRIES);
    s->v = calloc((size_t)n + 1, sizeof(*s->v));
    if (s->v == NULL)
        return task__fail(err, TASK_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        w.index = i;
        int rc = load_entry(config_setting_get_elem(list, (unsigned)i), &s->v[i], &w, err);
        s->n = i + 1;
        if (rc != 0)
            return rc;
        for (int j = 0; j < i; j++)
            if (strcmp(s->v[j].name, s->v[i].name) == 0)
                return bad(err, &w, "name", "\"%s\" is taken by entry %d", s->v[i].name, j);
    }
    return 0;
}

int beat_schedule_load(struct beat_schedule *s, const char *const *paths, task_error *err)
{
    memset(s, 0, sizeof(*s));
    s->token_rotate_s = BEAT_TOKEN_ROTATE_DEFAULT_S;
    for (int p = 0; paths[p] != NULL; p++) {
        if (access(paths[p], F_OK) != 0)
            continue;
        config_t lc;
        config_init(&lc);
        int rc = 0;
        if (config_read_file(&lc, paths[p]) != CONFIG_TRUE) {
            rc = task__fail(err, TASK_ECONFIG, "%s:%d: %s", paths[p], config_error_line(&lc),
                            config_error_text(&lc));
        } else {
            config_setting_t *beat = config_lookup(&lc, "beat");
            if (beat != NULL) {
                beat_schedule_free(s);
                s->token_rotate_s = BEAT_TOKEN_ROTATE_DEFAULT_S;
                rc = load_section(beat, s, paths[p], err);
            }
        }
        config_destroy(&lc);
        if (rc != 0) {
            beat_schedule_free(s);
            return rc;
        }
    }
    return 0;
}

void beat_schedule_free(struct beat_schedule *s)
{
    for (int i = 0; i < s->n; i++) {
        json_object_put(s->v[i].args);
        json_object_put(s->v[i].kwargs);
    }
    free(s->v);
    memset(s, 0, sizeof(*s));
}

int64_t beat_entry_next(const struct beat_entry *e, int64_t after_ms)
{
    if (e->every_ms > 0) {
        int64_t k = after_ms >= 0 ? after_ms / e->every_ms : -1;
        return (k + 1) * e->every_ms;
    }
    if (beat_tz_use(e->zone) != 0)
        return -1;
    int64_t after_s = after_ms >= 0 ? after_ms / 1000 : -1;
    int64_t t = beat_cron_next(&e->cron, after_s);
    return t < 0 ? -1 : t * 1000;
}

/* The newest tick of `e` in (after, until], or -1. A cron entry looks back eight days at most. */
static int64_t newest_tick(const struct beat_entry *e, int64_t after, int64_t until)
{
    if (e->every_ms > 0) {
        int64_t t = until >= 0 ? until / e->every_ms * e->every_ms : -1;
        return t > after ? t : -1;
    }
    int64_t best = -1, from = after;
    if (until - from > 8 * 86400000ll)
        from = until - 8 * 86400000ll;
    for (int64_t t = beat_entry_next(e, from); t > 0 && t <= until; t = beat_entry_next(e, t))
        best = t;
    return best;
}

int beat_entry_due(const struct beat_entry *e, int64_t last_ms, int64_t now_ms, int64_t *ticks,
                   int max, struct beat_due *due)
{
    int n = 0;
    due->passed_ms = -1;
    due->once = false;
    int64_t t = beat_entry_next(e, last_ms), late_limit = now_ms - e->grace_ms;
    if (t > 0 && t <= late_limit) {
        due->passed_ms = newest_tick(e, last_ms, late_limit);
        if (due->passed_ms > 0 && e->missed == BEAT_MISSED_ONCE && n < max) {
            ticks[n++] = due->passed_ms;
            due->once = true;
        }
        t = beat_entry_next(e, due->passed_ms > 0 ? due->passed_ms : late_limit);
    }
    for (; t > 0 && t <= now_ms && n < max; t = beat_entry_next(e, t))
        ticks[n++] = t;
    due->next_ms = t;
    return n;
}

/* FNV-1a, 64 bits, from a chosen basis: two bases give two independent-enough halves. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void beat_tick_id(const char *name, int64_t tick_ms, char out[37])
{
    char key[160];
    int n = snprintf(key, sizeof(key), "taskd-beat\n%s\n%lld", name, (long long)tick_ms);
    uint64_t a = fnv1a(0xcbf29ce484222325ull, key, (size_t)n);
    uint64_t b = fnv1a(0x84222325cbf29ce4ull ^ a, key, (size_t)n);
    unsigned char u[16];
    uint64_t ms = (uint64_t)tick_ms;
    for (int i = 0; i < 6; i++)
        u[i] = (unsigned char)(ms >> (40 - 8 * i));
    u[6] = (unsigned char)(0x70 | ((a >> 8) & 0x0f)); /* version 7 */
    u[7] = (unsigned char)a;
    u[8] = (unsigned char)(0x80 | ((b >> 56) & 0x3f)); /* RFC 9562 variant */
    for (int i = 9; i < 16; i++)
        u[i] = (unsigned char)(b >> (8 * (15 - i)));
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
             u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
             u[14], u[15]);
}

const char *beat_entry_describe(const struct beat_entry *e, char *buf, size_t size)
{
    if (e->every_ms > 0)
        snprintf(buf, size, "every %gs", (double)e->every_ms / 1000);
    else
        snprintf(buf, size, "cron %s%s%s", e->cron_text, e->zone[0] ? " " : "",
                 e->zone[0] ? e->zone : "UTC");
    return buf;
}
