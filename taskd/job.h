/*
 * job.h - one delivery from its receipt to its ack, and the lists that hold jobs while they
 * wait (the pool's backlog, the rate-limit wait list, kept outcomes). A job is only data: what
 * happens to it is decided by outcome.c.
 */
#ifndef TASKD_JOB_H
#define TASKD_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>
#include <task/task.h>
#include "codec.h"
#include "conn.h"

/* What a job ended with while its outcome could not be published (no connection, a broker
 * alarm) or while its connection was gone (an orphan): published later (outcome.c). */
enum { STASH_NONE, STASH_DONE, STASH_REQUEUE, STASH_LOST };

struct job {
    int64_t jid;            /* the pool's id for it */
    uint64_t dtag;          /* delivery tag on CH_CONSUME */
    int waits;              /* publishes not yet confirmed */
    bool nacked;            /* a publish was refused: requeue instead of ack */
    bool done;              /* all publishes made; ack when waits reaches 0 */
    bool orphan;            /* its connection is gone: drop the outcome, the broker redelivers */
    bool timed_out;         /* killed for its hard time limit */
    bool terminated;        /* killed by revoke --terminate */
    bool cancelled;         /* revoked while running: its child was asked to cancel it */
    struct task__delivery d; /* owned */
    struct task__msg m;      /* owned, decoded */
    const task_def *def;
    int child;              /* pool child running it; -1: none */
    double started;         /* task__now_mono() at dispatch */
    double hard_deadline;   /* task__now_mono() seconds; 0: none */
    struct job *next;       /* backlog, rate wait list, or the child's running list */
    double rate_due;        /* task__now_mono() when its rate-limit token is due */
    bool leased;            /* its message waits in its lease queue (lease.h), not unacked here */
    int lease_seq;          /* the copy in the lease queue now */
    double lease_renew_at;  /* task__now_mono() to renew the lease */
    int stash;              /* finished while the broker was away: STASH_* */
    json_object *stash_reply; /* what its child said (STASH_DONE), owned */
    double orphan_until;    /* an orphan's kept outcome waits for its redelivery until then */
    double lease_s;         /* the lease its queue was declared with (a reload does not change
                             * it); 0 with lease_kept: another worker's queue, TTL unknown */
    bool lease_kept;        /* its lease queue was declared with other arguments: renew often */
    bool lease_dangling;    /* a lapsed copy came back to it: delete its lease queue at the end */
    bool announced;         /* task-received sent already (at its eta hold or rate wait) */
    bool no_delivery;       /* its delivery died with an old connection: nothing to ack */
    bool final;             /* its own final state (SUCCESS, FAILURE, REVOKED) was published */
    bool started_due;       /* its STARTED waits for OUTCOME_STARTED_AFTER_S of running */
};

/* A FIFO of jobs linked through `next`. */
struct joblist {
    struct job *head, *tail;
    size_t n;
};

/* A job for delivery `dtag`; NULL when out of memory. The caller owns it (job_free). */
struct job *job_new(uint64_t dtag);
/* Frees the job, its delivery, message and kept reply. */
void job_free(struct job *job);

void joblist_push(struct joblist *l, struct job *job);
void joblist_push_front(struct joblist *l, struct job *job);
/* Unlink and return the first job, or NULL. */
struct job *joblist_pop(struct joblist *l);
/* Unlink the jobs received before `before` (task__now_mono(); INFINITY: all) and return them
 * as a chain through `next`, oldest first; the caller owns them. */
struct job *joblist_take_before(struct joblist *l, double before);
/* Free every job of a chain (job_free). */
void job_free_chain(struct job *chain);

#endif
