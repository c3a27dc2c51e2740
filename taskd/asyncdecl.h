/*
 * asyncdecl.h - a set of broker declarations sent at once without waiting for their replies,
 * completed by the -ok frames the loop's frame dispatch reads later (supervisor.c on_frame).
 * Only the bookkeeping lives here, so its transitions are tested without a broker
 * (tests/unit/test_asyncdecl.c); the sending is the owner's (delay.c).
 *
 *   NONE --sent(n)--> PENDING --ok x n--> READY --forget--> NONE
 *     ^                  |                  |
 *     |               closed             closed
 *     |                  v                  v
 *     +--open_ok--- REOPENING <-------------+
 *
 * A refusal closes the declarations' own channel (AMQP answers nothing else); the owner answers
 * it, sends channel.open and waits for open-ok (REOPENING), and does not start again before
 * retry_at, so a declaration the broker keeps refusing is not sent in a tight loop.
 */
#ifndef TASKD_ASYNCDECL_H
#define TASKD_ASYNCDECL_H

#include <stdbool.h>
#include <stdint.h>

enum adecl_state { ADECL_NONE, ADECL_PENDING, ADECL_READY, ADECL_REOPENING };

/* What an -ok frame did. */
enum adecl_ok { ADECL_MORE, ADECL_NOW_READY, ADECL_STRAY };

struct adecl {
    enum adecl_state state;
    int oks_left;           /* PENDING: replies still to come */
    double retry_at;        /* task__now_mono(): no new start before it (after a refusal) */
    uint16_t refused;       /* the broker's reply code of the last refusal; 0: none */
    unsigned refusals;      /* in a row: the retry delay doubles with each, up to a minute */
};

/* May the owner send the declarations now (nothing under way, no refusal to wait out)? */
bool adecl_may_start(const struct adecl *a, double now);
/* The owner sent `n` declarations (each answers one -ok): PENDING, or READY for n == 0. */
void adecl_sent(struct adecl *a, int n);
/* One -ok frame on the declarations' channel. */
enum adecl_ok adecl_on_ok(struct adecl *a);
/* The broker closed the channel with `code`: REOPENING, and no new start for a while. */
void adecl_on_closed(struct adecl *a, uint16_t code, double now);
/* channel.open-ok after a close: NONE, to start again when next needed. True if expected. */
bool adecl_on_open_ok(struct adecl *a);
/* Something declared was lost (a returned message): declare again on next need. A set still
 * under way or being reopened is left as it is. */
void adecl_forget(struct adecl *a);
/* The connection is gone: nothing is declared on the next one. */
void adecl_reset(struct adecl *a);
/* The retry delay after `refusals` refusals in a row, in seconds. */
double adecl_backoff_s(unsigned refusals);

#endif
