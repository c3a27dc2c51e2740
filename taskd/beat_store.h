/*
 * beat_store.h - the last fired tick of each entry, kept in the broker so that a failover or a
 * restart neither fires a tick again nor forgets one.
 *
 * One quorum queue per entry, taskd.beat.last.<entry>, with x-max-length=1 (the broker drops
 * the older message): it holds one message, {"entry", "tick_ms", "id", "by", "at"}. The leader
 * reads it (basic.get, then reject with requeue) when it starts leading, and publishes a new one
 * after each tick the broker confirmed. Only the leader writes; a reader never consumes it.
 *
 * The leader's state (entries, last and next runs, who leads) goes the same way to
 * taskd.beat.state for `taskctl beat`.
 */
#ifndef TASKD_BEAT_STORE_H
#define TASKD_BEAT_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include "conn.h"

#define BEAT_STORE_PREFIX "taskd.beat.last."
#define BEAT_STATE_QUEUE "taskd.beat.state"

/* The arguments of a quorum queue with one more, `key` = `v`, in e (the caller's storage). */
amqp_table_t beat_quorum_args(amqp_table_entry_t e[2], const char *key, amqp_field_value_t v);

/* Declare the one-message queue `name` on channel `ch`. */
int beat_store_declare(struct task__conn *c, uint16_t ch, const char *name);

/* Read the message of one-message queue `name` on `ch` without taking it: *body (malloc'd) or
 * NULL when the queue is empty. */
int beat_store_peek(struct task__conn *c, uint16_t ch, const char *name, char **body);

/* The last fired tick of `entry` from the store: *found false when none was ever stored. */
int beat_store_read(struct task__conn *c, uint16_t ch, const char *entry, int64_t *tick_ms,
                    bool *found);

/* The queue name of `entry`'s store. */
void beat_store_queue(const char *entry, char *buf, size_t size);

#endif
