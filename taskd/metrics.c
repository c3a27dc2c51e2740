/*
 * metrics.c - the counters and histogram behind GET /metrics, and their rendering in the
 * Prometheus text exposition format 0.0.4. Series are keyed by task name in a sorted array:
 * names come from the registry (unknown names are quarantined before they are counted), so
 * the label set stays as small as the set of loaded tasks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <task/task.h>
#include "codec.h"
#include "control_req.h"
#include "log.h"
#include "metrics.h"
#include "stream.h"

/* Upper bounds in seconds: from quick CPU tasks up to the hour-long HTTP jobs taskd is for. */
static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

struct series {
    char *task;
    uint64_t received;
    uint64_t outcome[MO_COUNT];
    uint64_t bucket[NBUCKETS]; /* not cumulative: runs that fell in (bucket[i-1], bucket[i]] */
    uint64_t runs;
    double runtime_sum;
};

struct metrics {
    struct series *s;
    size_t n, cap;
    uint64_t rejected[TASK_BAD__COUNT];
    uint64_t control_rejected[CONTROL_BAD__COUNT];
    uint64_t stream_rejected;
    double start_wall;
};

/* Index of `task`, or where it would go (and *found false). */
static size_t find(const struct metrics *m, const char *task, bool *found)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->s[mid].task, task);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static struct series *series_for(struct metrics *m, const char *task)
{
    if (m == NULL || task == NULL)
        return NULL;
    bool found;
    size_t i = find(m, task, &found);
    if (found)
        return &m->s[i];
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 32;
        struct series *s = realloc(m->s, cap * sizeof(*s));
        if (s == NULL)
            return NULL;
        m->s = s;
        m->cap = cap;
    }
    char *name = strdup(task);
    if (name == NULL)
        return NULL;
    memmove(&m->s[i + 1], &m->s[i], (m->n - i) * sizeof(*m->s));
    m->s[i] = (struct series){.task = name};
    m->n++;
    return &m->s[i];
}

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->start_wall = task__now_wall();
    /* Zero series up front: a rate() over a counter that appears mid-way misses its first runs. */
    for (int i = 0; i < task_registry_count(); i++)
        (void)series_for(m, task_registry_at(i)->name);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        free(m->s[i].task);
    free(m->s);
    free(m);
}

void metrics_received(struct metrics *m, const char *task)
{
    struct series *s = series_for(m, task);
    if (s != NULL)
        s->received++;
}

json_object *metrics_totals(const struct metrics *m)
{
    json_object *o = json_object_new_object();
    for (size_t i = 0; m != NULL && i < m->n; i++)
        if (m->s[i].received > 0)
            json_object_object_add(o, m->s[i].task,
                                   json_object_new_int64((int64_t)m->s[i].received));
    return o;
}

void metrics_outcome(struct metrics *m, const char *task, enum metrics_outcome o)
{
    struct series *s = series_for(m, task);
    if (s != NULL && o >= 0 && o < MO_COUNT)
        s->outcome[o]++;
}

void metrics_runtime(struct metrics *m, const char *task, double seconds)
{
    struct series *s = series_for(m, task);
    if (s == NULL)
        return;
    if (seconds < 0)
        seconds = 0;
    size_t b = 0;
    while (b < NBUCKETS && seconds > buckets[b])
        b++;
    if (b < NBUCKETS)
        s->bucket[b]++;
    s->runs++;
    s->runtime_sum += seconds;
}

void metrics_rejected(struct metrics *m, int reason)
{
    if (m != NULL && reason > TASK_BAD_NONE && reason < TASK_BAD__COUNT)
        m->rejected[reason]++;
}

void metrics_control_rejected(struct metrics *m, int reason)
{
    if (m != NULL && reason > CONTROL_BAD_NONE && reason < CONTROL_BAD__COUNT)
        m->control_rejected[reason]++;
}

void metrics_stream_rejected(struct metrics *m, unsigned n)
{
    if (m != NULL)
        m->stream_rejected += n;
}

static void header(struct mbuf *out, const char *name, const char *type, const char *help)
{
    mbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void task_label(struct mbuf *out, const char *name, const struct series *s)
{
    mbuf_printf(out, "%s{task=\"", name);
    mbuf_label_value(out, s->task);
    mbuf_printf(out, "\"}");
}

static const struct {
    const char *name, *help;
    int outcome; /* -1: received */
} counters[] = {
    {"taskd_tasks_received_total", "Task deliveries accepted to run (a retry is received again).",
     -1},
    {"taskd_tasks_succeeded_total", "Task runs that ended SUCCESS.", MO_SUCCEEDED},
    {"taskd_tasks_failed_total", "Task runs that ended FAILURE (also lost children, time limits).",
     MO_FAILED},
    {"taskd_tasks_retried_total", "Task runs that ended in a retry (re-published for later).",
     MO_RETRIED},
    {"taskd_tasks_revoked_total", "Tasks that ended REVOKED (revoked, expired or terminated).",
     MO_REVOKED},
};

static void render_counters(const struct metrics *m, struct mbuf *out)
{
    for (size_t c = 0; c < sizeof(counters) / sizeof(counters[0]); c++) {
        header(out, counters[c].name, "counter", counters[c].help);
        for (size_t i = 0; i < m->n; i++) {
            const struct series *s = &m->s[i];
            task_label(out, counters[c].name, s);
            int o = counters[c].outcome;
            mbuf_printf(out, " %llu\n",
                        (unsigned long long)(o < 0 ? s->received : s->outcome[o]));
        }
    }
    header(out, "taskd_tasks_rejected_total", "counter",
           "Messages quarantined to the dead queue as bad input, by reason.");
    for (int r = TASK_BAD_NONE + 1; r < TASK_BAD__COUNT; r++)
        mbuf_printf(out, "taskd_tasks_rejected_total{reason=\"%s\"} %llu\n",
                    task__bad_slug((enum task__bad)r), (unsigned long long)m->rejected[r]);
    header(out, "taskd_control_rejected_total", "counter",
           "Remote control (pidbox) requests refused as malformed, by reason.");
    for (int r = CONTROL_BAD_NONE + 1; r < CONTROL_BAD__COUNT; r++)
        mbuf_printf(out, "taskd_control_rejected_total{reason=\"%s\"} %llu\n",
                    control_bad_slug((enum control_bad)r),
                    (unsigned long long)m->control_rejected[r]);
    header(out, "taskd_stream_records_rejected_total", "counter",
           "Records skipped as malformed while reading a stream back, by stream.");
    mbuf_printf(out, "taskd_stream_records_rejected_total{stream=\"" TASK__REVOKED_STREAM
                     "\"} %llu\n",
                (unsigned long long)m->stream_rejected);
}

static void render_histogram(const struct metrics *m, struct mbuf *out)
{
    const char *name = "taskd_task_runtime_seconds";
    header(out, name, "histogram",
           "Task run time, from dispatch to a child until the supervisor has its outcome.");
    for (size_t i = 0; i < m->n; i++) {
        const struct series *s = &m->s[i];
        uint64_t cum = 0;
        for (size_t b = 0; b < NBUCKETS; b++) {
            cum += s->bucket[b];
            mbuf_printf(out, "%s_bucket{task=\"", name);
            mbuf_label_value(out, s->task);
            mbuf_printf(out, "\",le=\"%g\"} %llu\n", buckets[b], (unsigned long long)cum);
        }
        mbuf_printf(out, "%s_bucket{task=\"", name);
        mbuf_label_value(out, s->task);
        mbuf_printf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)s->runs);
        task_label(out, "taskd_task_runtime_seconds_sum", s);
        mbuf_printf(out, " %.9g\n", s->runtime_sum);
        task_label(out, "taskd_task_runtime_seconds_count", s);
        mbuf_printf(out, " %llu\n", (unsigned long long)s->runs);
    }
}

static void gauge(struct mbuf *out, const char *name, const char *help, long value)
{
    header(out, name, "gauge", help);
    mbuf_printf(out, "%s %ld\n", name, value);
}

void metrics_render(const struct metrics *m, const struct metrics_gauges *g, struct mbuf *out)
{
    render_counters(m, out);
    render_histogram(m, out);
    gauge(out, "taskd_slots", "Task slots: pool processes x threads per process.", g->slots);
    gauge(out, "taskd_busy_slots", "Slots running a task now.", g->busy_slots);
    gauge(out, "taskd_backlog", "Tasks received and waiting for a free slot.", g->backlog);
    gauge(out, "taskd_prefetch_limit", "Prefetch count asked of the broker (basic.qos).",
          g->prefetch_limit);
    gauge(out, "taskd_prefetch_in_use", "Deliveries received and not yet acked.",
          g->prefetch_in_use);
    gauge(out, "taskd_children", "Pool child processes alive.", g->children);
    gauge(out, "taskd_broker_connected", "1 while the worker has a broker connection.",
          g->broker_connected ? 1 : 0);
    gauge(out, "taskd_broker_blocked", "1 while the broker blocks the worker's connection (a "
          "memory or disk alarm): outcomes wait in the worker.", g->broker_blocked ? 1 : 0);
    header(out, "taskd_broker_blocked_total", "counter", "Times the broker blocked the worker.");
    mbuf_printf(out, "taskd_broker_blocked_total %ld\n", g->blocked_count);
    header(out, "taskd_broker_blocked_seconds_total", "counter",
           "Time the worker's connection spent blocked by the broker.");
    mbuf_printf(out, "taskd_broker_blocked_seconds_total %.3f\n", g->blocked_seconds);
    header(out, "process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
    mbuf_printf(out, "process_start_time_seconds %.3f\n", m->start_wall);
}
