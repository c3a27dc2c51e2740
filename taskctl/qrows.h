/*
 * qrows.h - per-queue rows for taskctl queues and taskctl top, from the management API (mgmt.h)
 * or, without it, from passive declares (what AMQP can tell: ready and consumers).
 * A row: {"name", "ready", "unacked", "consumers", "publish_rate", "deliver_rate"}; what the
 * source cannot tell is null.
 */
#ifndef TASKCTL_QROWS_H
#define TASKCTL_QROWS_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

struct task__conn;

/* Rows for names[0..n) by passive declares on channel `ch` (reopened after a missing queue);
 * missing queues are appended to *missing (created on demand). */
json_object *qrows_peek(struct task__conn *c, uint16_t ch, char *const *names, int n,
                        json_object **missing);

/* One table line for `row` (NULL: the header), without a newline. */
void qrows_format(json_object *row, char *buf, size_t size);

#endif
