/*
 * events.h - Celery's event stream (celeryev): worker and task events.
 */
#ifndef TASKD_EVENTS_H
#define TASKD_EVENTS_H

#include "worker.h"

int events_start(struct worker *w); /* asked with the setup (task__conn_ask) */
void events_worker(struct worker *w, const char *type);   /* worker-online/heartbeat/offline */
void events_tick(struct worker *w);                        /* heartbeat when due */
/* A task event; `extra` (new reference, may be NULL) is merged into it and released. */
void events_task(struct worker *w, const char *type, const struct job *job, json_object *extra);
/* The same for a message that has no job yet (held for its eta). */
void events_task_msg(struct worker *w, const char *type, const struct task__msg *m);

#endif
