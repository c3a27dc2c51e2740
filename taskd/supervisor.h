/*
 * supervisor.h - the taskd worker: one supervisor process that owns the AMQP connection and runs
 * the event loop (supervisor.c); its state is struct worker (worker.h).
 */
#ifndef TASKD_SUPERVISOR_H
#define TASKD_SUPERVISOR_H

#include "worker.h"

int worker_init(struct worker *w, task_config *cfg);
int worker_run(struct worker *w);
void worker_free(struct worker *w);

#endif
