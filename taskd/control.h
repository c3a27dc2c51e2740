/*
 * control.h - pidbox remote control: the worker's answers to Celery's control and inspect
 * commands (the request itself is read by control_req.h).
 */
#ifndef TASKD_CONTROL_H
#define TASKD_CONTROL_H

#include "worker.h"

/* The pidbox's channel, exchanges, queue and binding, asked with the setup (task__conn_ask). */
int control_ask(struct worker *w);
/* After the setup's answers: consume the pidbox queue. */
int control_start(struct worker *w);
void control_on_delivery(struct worker *w, struct task__delivery *d);

#endif
