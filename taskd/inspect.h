/*
 * inspect.h - the answers to Celery's inspect commands (pidbox), in the shapes Celery 5.2's own
 * worker gives (celery/worker/control.py), built from the supervisor's state. Each returns a
 * new reference; NULL stands for Celery's None (the reply is {node: null}).
 */
#ifndef TASKD_INSPECT_H
#define TASKD_INSPECT_H

#include <json-c/json.h>

struct worker;

/* Tasks running in the pool (Request.info() each); `args` may ask {"safe": true}. */
json_object *inspect_active(struct worker *w, json_object *args);
/* Taken from the broker, not started: waiting for a pool slot or for a rate-limit token. */
json_object *inspect_reserved(const struct worker *w);
/* Held in the worker until their eta: [{eta, priority, request}]. Tasks due later than a second
 * wait in the broker's delay cascade instead and are nobody's until due (docs/flower.md). */
json_object *inspect_scheduled(const struct worker *w);
/* The queues consumed (or to be consumed again after a reconnect), as kombu's
 * Queue.as_dict(recurse=True). */
json_object *inspect_active_queues(const struct worker *w);
/* Sorted task names; with Celery's taskinfoitems (default exchange, routing_key, rate_limit)
 * a task with such attributes reads "name [rate_limit=10/s]". */
json_object *inspect_registered(struct worker *w, json_object *args);
json_object *inspect_stats(const struct worker *w);
/* The configuration: every taskd option by its path (secrets redacted), and the Celery setting
 * names that have a taskd equivalent. */
json_object *inspect_conf(const struct worker *w);
/* {id: [state, info]} for args.ids that are active or reserved here. */
json_object *inspect_query_task(struct worker *w, json_object *args);
json_object *inspect_clock(const struct worker *w);
json_object *inspect_report(const struct worker *w);
/* Mingle: merge args.revoked (a Celery peer's revoked ids) and answer ours with the clock;
 * NULL when args.from_node is this worker. */
json_object *inspect_hello(struct worker *w, json_object *args);

#endif
