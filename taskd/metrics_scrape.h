/*
 * metrics_scrape.h - the worker's side of GET /metrics: the endpoint's life, and what a scrape
 * samples of the worker (its gauges) beside the counters of metrics.h.
 */
#ifndef TASKD_METRICS_SCRAPE_H
#define TASKD_METRICS_SCRAPE_H

#include "worker.h"

/* Set up counting, and the HTTP endpoint when worker.metrics_listen is set. 0, or
 * TASK_ECONFIG after one error line when the address is bad or cannot be bound. */
int metrics_start(struct worker *w);
void metrics_stop(struct worker *w);

#endif
