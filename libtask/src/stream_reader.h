/*
 * stream_reader.h - the one reader of RabbitMQ streams: a consumer on a channel of its own from
 * an x-stream-offset, its window (basic.qos, widened by a new consumer from the next offset),
 * the offsets of its deliveries, acks (stream consumers get more only as they ack), cancel, and
 * the end-of-data marker: AMQP 0-9-1 has no end-of-stream signal, so a reader publishes a marker
 * record of its own and reads until it comes back; everything written before lies before it.
 *
 * The reader does not read frames itself: its user does (task__stream_replay_counted() on a connection
 * of its own, lookup.c through the client's dispatch) and hands it the deliveries of its
 * channel. What a record means is the user's; the reader says which deliveries are the read's.
 */
#ifndef TASK_STREAM_READER_H
#define TASK_STREAM_READER_H

#include <stdbool.h>
#include <stdint.h>
#include "conn.h"

/* x-stream-offset values. "first": the stream's first record. A timestamp: whole seconds, so
 * the read starts up to a second early. An offset: that message. Back from the broker's clock
 * ("Ns", rounded up to whole seconds, at least 1): unlike a timestamp it needs no agreement
 * between our clock and the broker's. buf holds the text of an interval. */
amqp_field_value_t task__stream_from_first(void);
amqp_field_value_t task__stream_from_time(double unix_s);
amqp_field_value_t task__stream_from_offset(int64_t offset);
amqp_field_value_t task__stream_from_ago(double back_s, char buf[32]);

/* The x-stream-offset header RabbitMQ puts on each message it delivers from a stream; -1 when
 * there is none. */
int64_t task__stream_offset_of(const amqp_basic_properties_t *p);

/* The window: a read starts with `start` messages in flight and moves to `wide` (a new consumer)
 * after `after` messages; wide == start: it never widens. */
struct task__stream_window {
    unsigned start, wide, after;
};

/* Ack now, `since_ack` deliveries after the last ack? After a quarter of the window, and
 * whenever nothing more is buffered (before the user waits). */
bool task__stream_ack_due(unsigned since_ack, unsigned prefetch, bool buffered);
/* Widen now, `read` messages into a read with `prefetch` in flight? */
bool task__stream_widen_due(const struct task__stream_window *w, unsigned read,
                            unsigned prefetch);

/* A marker record's text for `marker` (a uuid) into buf[80]; its length. */
int task__stream_marker_body(char buf[80], const char *marker);
/* Publish marker record `marker` to stream `name` on channel `ch` (any channel of c). */
int task__stream_publish_marker(struct task__conn *c, uint16_t ch, const char *name,
                                const char *marker);

/* task__stream_body() and task__stream_replay_counted(), this module's too, are declared in
 * internal.h, where taskd and the record tests find them. */

struct task__stream_reader {
    /* The channel, kept from one read to the next (opening, setting up and closing one cost a
     * read four round trips and the broker's reader teardown). */
    struct task__conn *conn;
    uint16_t ch;
    bool open;              /* ch is open */
    uint16_t qos;           /* its basic.qos, for the next consumer; 0: not set */
    uint64_t tag, acked;    /* its last delivery tag, and the last acked */
    /* The read in progress. */
    const char *stream;     /* borrowed */
    char *consumer;         /* consumer tag (malloc'd); NULL: none */
    struct task__stream_window window;
    unsigned prefetch;      /* the consumer's window */
    unsigned since_ack;
    unsigned read;          /* messages so far */
    bool widen;             /* time to move to the wide window */
    bool done;              /* set by the user: the rest of this read is not wanted */
    int64_t offset;         /* offset of the last message read; -1: none yet */
    int64_t first;          /* offset of the first message this read got; -1: none yet */
    int64_t stop_at;        /* the read's end: where an earlier read began; -1: none */
};

/* What a delivery is to the read. */
enum task__stream_take {
    TASK__STREAM_SKIP,      /* not the read's: an earlier consumer's, or after `done` */
    TASK__STREAM_END,       /* past stop_at: the read is complete (done is set) */
    TASK__STREAM_RECORD,    /* the read's next message: the user reads its body */
};

/* Reads and drains one frame queued on the connection, dispatching it (the reader's deliveries
 * to task__stream_reader_take()); > 0 handled, 0 none, < 0 an error. */
typedef int (*task__stream_pump_fn)(void *ud);

/* Set up a reader of channel `ch` on `c` (nothing is sent). */
void task__stream_reader_init(struct task__stream_reader *r, struct task__conn *c, uint16_t ch);
/* The connection was replaced by `c`: the channel is gone with the old one. */
void task__stream_reader_reset(struct task__stream_reader *r, struct task__conn *c);
/* Free what the reader holds (not the channel). */
void task__stream_reader_free(struct task__stream_reader *r);

/* Start a read of stream `name` (borrowed) from `from`: open the channel if it is not, set the
 * window's basic.qos if it changed, consume. 0, TASK_ENOTFOUND (no such stream: the channel
 * is gone, the connection error cleared) or a connection error. */
int task__stream_reader_start(struct task__stream_reader *r, const char *name,
                              amqp_field_value_t from, const struct task__stream_window *w);

/* A delivery on the reader's channel: acks as the window needs, notes its offset, and says
 * what it is to the read. */
enum task__stream_take task__stream_reader_take(struct task__stream_reader *r,
                                                const struct task__delivery *d);

/* The read's part of task__stream_reader_take(), for a delivery of the read's consumer at
 * stream offset `offset`: SKIP after done, END at stop_at, else RECORD; counts it and sets
 * widen, offset and first. */
enum task__stream_take task__stream_reader_note(struct task__stream_reader *r, int64_t offset);

/* When widen is set: cancel the narrow consumer (what the broker sent before its cancel-ok is
 * drained through pump, so it is still read) and, unless done, consume from the next offset
 * with the wide window. 0 or an error. */
int task__stream_reader_widen(struct task__stream_reader *r, task__stream_pump_fn pump,
                              void *ud);

/* Read again from `from` up to where this read began. 1: this read got nothing, so there is
 * nothing before it (no consumer then); 0 or an error. */
int task__stream_reader_before(struct task__stream_reader *r, amqp_field_value_t from,
                               task__stream_pump_fn pump, void *ud);

/* End a read: cancel its consumer without waiting (later deliveries carry the old tag and are
 * skipped) and ack what the channel was sent, keeping the channel; after a failure (rc != 0,
 * or the cancel fails) close the channel and drain what came meanwhile through pump. */
void task__stream_reader_end(struct task__stream_reader *r, int rc, task__stream_pump_fn pump,
                             void *ud);

/* Close the channel if it is open (a reader used once); 0 or the close's error. */
int task__stream_reader_close(struct task__stream_reader *r);

#endif
