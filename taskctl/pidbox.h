/*
 * pidbox.h - Celery's remote-control protocol from the caller's side: broadcast a method on the
 * celery.pidbox fanout exchange, collect the replies on reply.celery.pidbox matched by ticket.
 * taskd and Python Celery workers answer alike. Several methods can be asked at once (taskctl
 * top asks stats and active in one window); each gets its own ticket.
 */
#ifndef TASKCTL_PIDBOX_H
#define TASKCTL_PIDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

struct task__conn;

struct pidbox {
    struct task__conn *c;  /* borrowed; channel 1 is the pidbox's */
    char oid[37];
};

struct pidbox_req {
    const char *method;
    json_object *arguments;  /* given away (may be NULL: {}) */
    json_object *destination; /* given away: an array of node names; NULL: every worker */
    json_object *replies;    /* out: {node: reply}; the caller puts it */
    char ticket[37];         /* set by pidbox_ask */
};

/* Declare this caller's reply queue on channel 1 of `c` and consume it. 0, or -1 with a one-line
 * message in err. */
int pidbox_open(struct pidbox *p, struct task__conn *c, char *err, size_t errsize);

/*
 * pidbox_ask - broadcast every request of reqs[0..n), then collect replies for timeout_s.
 * `stop` (may be NULL) is asked about every 50 ms and ends the wait early when it returns true.
 * Returns 0 (also when nobody answered), 1 when stop() ended it, -1 on a broker error (err).
 */
int pidbox_ask(struct pidbox *p, struct pidbox_req *reqs, int n, double timeout_s,
               bool (*stop)(void *), void *ud, char *err, size_t errsize);

#endif
