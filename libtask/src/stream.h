/*
 * stream.h - durable RabbitMQ streams of JSON records (taskd.results, taskd.revoked): declare
 * one, append to it, and replay it synchronously up to "now". AMQP 0-9-1 has no end-of-stream
 * signal, so a replay publishes a marker record first and reads until the marker comes back:
 * everything written before the replay began lies before it.
 */
#ifndef TASK_STREAM_H
#define TASK_STREAM_H

#include <json-c/json.h>
#include <stdint.h>
#include "conn.h"

/* Revoked task ids: {"task_id": ..., "revoked_at": ...} records (taskd, taskctl revoke). */
#define TASK__REVOKED_STREAM "taskd.revoked"

/* Properties of a persistent JSON record (stream records, markers, chord parts). */
amqp_basic_properties_t task__record_props(void);

/* Declare stream `name` (durable, x-max-age = max_age_s) on channel `ch`. 0 or an error code. */
int task__stream_declare(struct task__conn *c, uint16_t ch, const char *name, double max_age_s);

/* Append one record (`body`, JSON text) to stream `name` on `ch`, persistent; confirmed only if
 * the channel is in confirm mode. 0 or an error code. */
int task__stream_append(struct task__conn *c, uint16_t ch, const char *name, const char *body);

/* The same on a fresh channel `ch` in confirm mode, after declaring the stream (max_age_s),
 * waiting up to timeout_ms for the broker's confirm; the channel is closed afterwards. 0,
 * TASK_ETIMEDOUT, TASK_EBROKER (nacked) or an error code. For one-off writers (taskctl). */
int task__stream_append_confirmed(struct task__conn *c, uint16_t ch, const char *name,
                                  double max_age_s, const char *body, int timeout_ms);

/* Called for each record (a JSON object; batches written as arrays are replayed one by one).
 * `rec` is borrowed. */
typedef void (*task__stream_fn)(json_object *rec, void *ud);

/*
 * task__stream_replay - open channel `ch`, read stream `name` from `since_s` (Unix seconds; 0:
 * from the first record) up to a marker of its own, calling fn for every record, then close the
 * channel. Returns 0, TASK_ETIMEDOUT (the marker did not come back within timeout_ms; records
 * read so far were delivered), or a connection error. Frames for other channels are dropped, so
 * call it before anything else consumes on the connection.
 */
int task__stream_replay(struct task__conn *c, uint16_t ch, const char *name, double since_s,
                        int timeout_ms, task__stream_fn fn, void *ud);

#endif
