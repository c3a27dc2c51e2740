/*
 * metrics.h - what taskd counts for Prometheus: per-task counters and a runtime histogram,
 * plus gauges read from the supervisor's state when scraped. Counting happens where the
 * supervisor already learns an outcome (no IPC of its own); the text is the Prometheus text
 * exposition format 0.0.4. Only the supervisor's thread touches any of it.
 */
#ifndef TASKD_METRICS_H
#define TASKD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include "metrics_http.h" /* struct mbuf */

/* What happened to one delivery of a task. A retry is a new delivery: received again. */
enum metrics_outcome { MO_SUCCEEDED, MO_FAILED, MO_RETRIED, MO_REVOKED, MO_COUNT };

struct metrics;

/* Gauges, sampled from the worker when scraped. */
struct metrics_gauges {
    long slots;            /* processes x threads */
    long busy_slots;       /* tasks running in children */
    long backlog;          /* received, waiting for a free slot */
    long prefetch_limit;   /* basic.qos prefetch count */
    long prefetch_in_use;  /* deliveries received and not yet acked */
    long children;         /* pool processes alive */
    bool broker_connected;
    bool broker_blocked;   /* connection.blocked: a broker resource alarm */
    long blocked_count;    /* times blocked since start */
    double blocked_seconds; /* time spent blocked since start */
};

/* New, with a zero series for every task registered so far (NULL when out of memory). The
 * process start time is taken now. */
struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Each accepts m == NULL (metrics could not be allocated) and does nothing. `task` is
 * borrowed; callers pass registered names only, which bounds the label set. */
void metrics_received(struct metrics *m, const char *task);
/* {task: deliveries received to run} for the tasks received at least once (Celery's stats
 * "total"); a new reference, {} when m is NULL. */
struct json_object;
struct json_object *metrics_totals(const struct metrics *m);
void metrics_outcome(struct metrics *m, const char *task, enum metrics_outcome o);
void metrics_runtime(struct metrics *m, const char *task, double seconds);
/* A message quarantined as bad input; `reason` is an enum task__bad (a fixed set of slugs). */
void metrics_rejected(struct metrics *m, int reason);
/* A pidbox request refused as malformed; `reason` is an enum control_bad (control.h). */
void metrics_control_rejected(struct metrics *m, int reason);
/* `n` records of the taskd.revoked stream skipped as malformed while reading it back. */
void metrics_stream_rejected(struct metrics *m, unsigned n);

/* Append the whole exposition to `out`. */
void metrics_render(const struct metrics *m, const struct metrics_gauges *g, struct mbuf *out);

#endif
