/*
 * autoscale.h - pidbox autoscale and the prefetch window that follows the pool's size.
 */
#ifndef TASKD_AUTOSCALE_H
#define TASKD_AUTOSCALE_H

#include "worker.h"

/* Prefetch follows the pool's size (pool_grow/shrink, autoscale), as Celery's, plus the
 * window's confirm part (window.h); the loop asks the broker for a changed one. */
void pool_prefetch_follow(struct worker *w);
/* pidbox autoscale MAX MIN (0: keep the one set before): 0, or TASK_EINVAL (MIN < 1, MIN > MAX,
 * MAX beyond worker.pool_size + POOL_GROW_MAX). Resizes at once into the range. */
int autoscale_set(struct worker *w, int max, int min);
/* Once a loop turn: grow or shrink by demand when autoscale is on (acts once a second). */
void autoscale_tick(struct worker *w);
/* Tasks running or waiting for a slot or a rate-limit token (Celery's autoscaler "qty"). */
int autoscale_demand(const struct worker *w);
#endif
