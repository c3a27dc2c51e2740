/*
 * msgcopy.h - what a copy of a task message carries over: taskd republishes a delivery's
 * message (a lease, a requeue that must not count against the task, a lease given back), and
 * the copy must keep the task's own headers but not the broker's counts of the old copy's
 * deliveries; the deliveries it already had go with it in x-taskd-delivery-count, so a task
 * that kills its worker is still seen as a crash loop after its copy comes back.
 */
#ifndef TASKD_MSGCOPY_H
#define TASKD_MSGCOPY_H

#include <stdbool.h>
#include "conn.h"

/* Is AMQP field name `k` exactly `name`? */
bool msgcopy_key_is(amqp_bytes_t k, const char *name);

/* Copy `in` to `out` without the broker's delivery counts (x-delivery-count, x-death) and our
 * lease sequence (x-taskd-lease), with `extra` (n entries, replacing headers of the same
 * names) appended. *kept is malloc'd and `out` points into it and into `in` (free *kept after
 * the publish). 0 or TASK_ENOMEM. */
int msgcopy_props(const amqp_basic_properties_t *in, const amqp_table_entry_t *extra, int n,
                  amqp_basic_properties_t *out, amqp_table_entry_t **kept);

/* How many times this message has been delivered, this delivery included: the broker's count
 * (a quorum queue's x-delivery-count, else the redelivered flag) plus what earlier copies had
 * (x-taskd-delivery-count). */
int delivery_count(const struct task__delivery *d);

#endif
