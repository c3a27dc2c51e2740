/*
 * ratelimit.h - per-task rate limits (a token bucket each; jobs wait in a list for their
 * token) and the per-task time limits set by pidbox time_limit.
 */
#ifndef TASKD_RATELIMIT_H
#define TASKD_RATELIMIT_H

#include "worker.h"

double rate_parse(const char *text);
int rate_set(struct worker *w, const char *name, const char *limit);
double rate_take(struct worker *w, const char *name);
/* The job waits `delay_s` for its token (joins the wait list; takes it). */
void rate_wait(struct worker *w, struct job *job, double delay_s);
/* Unlink the waiting jobs whose token is due, oldest first, and return them as a chain: the
 * caller starts them. NULL while the broker blocks us. */
struct job *rate_release(struct worker *w);
int rate_next_ms(const struct worker *w);
/* Unlink the waiting jobs received before `before` (task__now_mono(); INFINITY: all) and
 * return them as a chain; the caller owns them. */
struct job *rate_take_waiting(struct worker *w, double before);
void rate_free(struct worker *w);
/* The rate limit of task `name` as set ("10/s"), or NULL for none. */
const char *rate_limit_text(struct worker *w, const char *name);
/* pidbox time_limit: task `name` runs with these limits (seconds; 0: the worker's default, as
 * Celery's None) unless its message carries its own. 0, TASK_EINVAL or TASK_ENOMEM. */
int time_limit_set(struct worker *w, const char *name, double soft, double hard);
/* The limits time_limit_set() gave `name`: false when it gave none. */
bool time_limit_get(const struct worker *w, const char *name, double *soft, double *hard);

#endif
