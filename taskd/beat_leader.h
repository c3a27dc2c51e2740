/*
 * beat_leader.h - which beat instance fires: elected by the broker alone.
 *
 * Every instance consumes the quorum queue taskd.beat.leader, declared with
 * x-single-active-consumer (a classic queue would not hand over when the active consumer dies
 * on RabbitMQ 3.10, rabbitmq-server#5460). The queue holds a token message; only the active
 * consumer receives it, and it holds it unacked: the instance holding the token leads. When
 * its connection goes (crash, kill -9, broker-side heartbeat timeout) the broker requeues the
 * token to the next consumer, which then leads. The broker does not tell a consumer it became
 * active: the token is how it learns.
 *
 * The token is replaced (publish a new one, ack the old) every beat.token_rotate seconds, within
 * the broker's consumer_timeout (30 min by default), which would otherwise close the leader's
 * channel. Extra tokens (instances that started together each seed one) reach the leader too,
 * which acks all but the newest.
 *
 * All calls use channel BEAT_CH_TOKEN (consume) and BEAT_CH_PUB (declare, confirmed publish).
 */
#ifndef TASKD_BEAT_LEADER_H
#define TASKD_BEAT_LEADER_H

#include <stdbool.h>
#include <stdint.h>
#include "conn.h"

#define BEAT_LEADER_QUEUE "taskd.beat.leader"
#define BEAT_CH_TOKEN 1
#define BEAT_CH_PUB 2

struct beat_leader {
    bool leading;          /* a token reached us on this connection */
    uint64_t token_tag;    /* the token we hold (0: none right now, e.g. mid-rotation) */
    double token_at;       /* task__now_mono() when it arrived */
    double since_wall;     /* when we started leading (Unix s) */
    uint64_t pub_seq;      /* confirm sequence numbers on BEAT_CH_PUB */
    double rotate_s;       /* replace the token after holding it this long */
};

/* Open both channels, declare the queue, seed a token when the queue has neither one nor a
 * consumer, and start consuming. Returns 0 or a TASK_E* (detail on the conn). */
int beat_leader_join(struct beat_leader *l, struct task__conn *c);

/* A delivery on BEAT_CH_TOKEN: keep it (ack any older token). */
int beat_leader_on_token(struct beat_leader *l, struct task__conn *c, uint64_t tag);

/* Replace the token when it is due; publishes with a confirm: *seq gets the number to wait for
 * (0 when nothing was published). */
int beat_leader_rotate(struct beat_leader *l, struct task__conn *c, uint64_t *seq);

/* Ack the held token after the confirm of its replacement arrived. */
int beat_leader_rotated(struct beat_leader *l, struct task__conn *c, uint64_t old_tag);

/* How many instances are consumers of the leader queue (-1 on error). */
int beat_leader_instances(struct task__conn *c);

/* Publish `body` persistently to queue `queue` on BEAT_CH_PUB; *seq: its confirm number. */
int beat_publish(struct beat_leader *l, struct task__conn *c, const char *queue,
                 const char *body, uint64_t *seq);

#endif
