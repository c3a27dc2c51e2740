/*
 * stream.h - durable RabbitMQ streams of JSON records (taskd.results, taskd.revoked): declare
 * one and append to it. Reading one, a replay up to "now" included, is stream_reader.h's.
 */
#ifndef TASK_STREAM_H
#define TASK_STREAM_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include "conn.h"

/*
 * The results streams. Each state record goes to one of TASK__RESULTS_PARTITIONS streams,
 * "taskd.results.<n>", n from a hash of the task id: a lookup reads only its id's stream, and
 * the broker hands out stream messages at some 20-40k/s (measured), so the records written in
 * its time window cost it a sixteenth. Segments are small because the broker finds a
 * timestamp's offset by scanning the segment's index from its start (0.5 us a chunk).
 */
#define TASK__RESULTS_BITS 6
#define TASK__RESULTS_PARTITIONS (1u << TASK__RESULTS_BITS)
#define TASK__RESULTS_PREFIX "taskd.results."
#define TASK__RESULTS_SEGMENT_BYTES 1000000

/* The partition of `id`: the top TASK__RESULTS_BITS bits of the 32-bit FNV-1a hash of its
 * bytes. */
unsigned task__results_partition(const char *id);

/* The name of results stream `partition` into name[32]; returns name. */
char *task__results_name(unsigned partition, char name[32]);

/* Declare the first results stream (x-max-age = max_age_s) on `ch` and wait. If it exists with
 * other arguments (an earlier retention), it is used as it is and so are the others, declared
 * here too: *kept counts them, and `ch` was reopened. Else *rest is set: declare the others
 * with task__results_declare_rest(). 0 or an error code. */
int task__results_declare(struct task__conn *c, uint16_t ch, double max_age_s, int *kept,
                          bool *rest);

/* Declare results streams 1.. on `ch` without waiting: creating them takes the broker ~13 ms
 * each, and it does so before anything sent on `ch` after this call, which waits meanwhile. */
int task__results_declare_rest(struct task__conn *c, uint16_t ch, double max_age_s);

/* Revoked task ids: {"task_id": ..., "revoked_at": ...} records (taskd, taskctl revoke). */
#define TASK__REVOKED_STREAM "taskd.revoked"

/* Properties of a persistent JSON record (stream records, markers, chord parts). */
amqp_basic_properties_t task__record_props(void);

/* Declare stream `name` (durable, x-max-age = max_age_s) on channel `ch`. One that exists with
 * other arguments (an earlier retention) is used as it is: *kept (may be NULL) is 1 then, and
 * `ch` was reopened, so declare before a confirm.select. 0 or an error code. */
int task__stream_declare(struct task__conn *c, uint16_t ch, const char *name, double max_age_s,
                         int *kept);

/* Append one record (`body`, JSON text) to stream `name` on `ch`, persistent; confirmed only if
 * the channel is in confirm mode. 0 or an error code. */
int task__stream_append(struct task__conn *c, uint16_t ch, const char *name, const char *body);

/* The same on a fresh channel `ch` in confirm mode, after declaring the stream (max_age_s),
 * waiting up to timeout_ms for the broker's confirm; the channel is closed afterwards. 0,
 * TASK_ETIMEDOUT, TASK_EBROKER (nacked) or an error code. For one-off writers (taskctl). */
int task__stream_append_confirmed(struct task__conn *c, uint16_t ch, const char *name,
                                  double max_age_s, const char *body, int timeout_ms);

#endif
