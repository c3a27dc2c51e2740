/*
 * worker.h - the supervisor's state (struct worker), shared by its modules: data only. Each
 * module's functions are in its own header (pool.h, publisher.h, consumer.h, outcome.h, ...);
 * the loop is supervisor.c.
 *
 * Channel 1 consumes the task queues (acks late); channel 2 publishes results, retries and
 * quarantined messages in confirm mode. A delivery is acked only after every message published
 * on its behalf has been confirmed by the broker (struct job counts them).
 */
#ifndef TASKD_WORKER_H
#define TASKD_WORKER_H

#include <stdbool.h>
#include <poll.h>
#include <stdint.h>
#include <task/config.h>
#include <task/task.h>
#include "asyncdecl.h"
#include "codec.h"
#include "conn.h"
#include "ipc.h"
#include "ipc_frame.h"
#include "job.h"
#include "msgcopy.h"
#include "replies.h"
#include "stream.h"
#include "topology.h"

#define CH_CONSUME 1
#define CH_PUBLISH 2
/* Declares made while running (canvas targets, the delay cascade): a refusal closes this channel,
 * not the publish channel, and it is answered and reopened at once (declare.h). */
#define CH_DECLARE 7
/* The delay cascade's declarations, sent without waiting; their -oks and a refusal's close are
 * read by the loop (delay.h). Its own channel, so no synchronous call is handed one of them. */
#define CH_DELAY 9
/* The same for follow-ups' target queues not declared yet (canvas_wait.h). */
#define CH_CANVAS 10
#define CH_CHORD 6

enum worker_state { W_RUNNING, W_DRAINING, W_STOPPED };

/* A pool child as the supervisor sees it. */
struct pchild {
    pid_t pid;              /* 0: not running */
    int fd;
    struct ipc_buf in;
    struct ipc_out out;     /* frames not written yet: this turn's, or the socket was full */
    bool stalled;           /* its socket was full: the rest waits for POLLOUT */
    int busy;
    int done_count;
    bool retiring;          /* finishing its jobs, then exiting (recycle or shutdown) */
    bool killed;            /* we sent it SIGKILL for one task (time limit, terminate) */
    double respawn_at;      /* pid 0: when to fork it again (task__now_mono()); 0: not due */
    double backoff;         /* the next respawn delay after a failed fork or a fatal exit */
    long rss_kb;
    struct job *running;
};

/* Slots pool_grow may add beyond worker.pool_size. */
#define POOL_GROW_MAX 64

struct worker;
struct delay_wait;
struct canvas_wait;
struct chord_op;

/* What the pool reports, set by the worker: the pool decides nothing about outcomes. */
struct pool_hooks {
    /* A child took the job. */
    void (*started)(struct worker *w, struct job *job);
    /* A PROGRESS update from its task (`meta` borrowed). */
    void (*progress)(struct worker *w, struct job *job, json_object *meta);
    /* The job left its child (takes it): STASH_DONE with the child's report (borrowed),
     * STASH_LOST or STASH_REQUEUE (a neighbour's fault) with NULL. */
    void (*ended)(struct worker *w, struct job *job, int how, const struct ipc_up *up);
    /* Revoked while it waited for a slot: it does not run (takes it). */
    void (*revoked)(struct worker *w, struct job *job, const char *why);
    /* No pool child is alive (false), or one is again (true). */
    void (*live)(struct worker *w, bool any);
};

struct pool {
    struct pool_hooks hooks;
    struct pchild *ch;      /* cap slots; [0, n) in use */
    int n, threads;
    int cap;                /* slots allocated (ch, crash) */
    int target;             /* slots to keep a child in: [target, n) are retiring (shrink) */
    struct joblist bl;      /* deliveries waiting for a free slot */
    int64_t next_jid;
    bool stopping;          /* do not respawn */
    bool cold;              /* children killed by us: their jobs go back to the queue */
    int64_t *crash;         /* shared with the children: [slot] the jid whose thread crashed,
                             * [cap + slot] the jid a one-thread child must cancel (SIGUSR1) */
};

/* Publishes awaiting a confirm, in sequence order. */
struct pending {
    uint64_t seq;
    struct job *job;        /* NULL: nothing to do on confirm */
    struct job **batch;     /* or: every job whose state is in one results-stream message */
    int nbatch;
    bool soft;              /* a nack does not requeue the job (a caller's reply queue) */
};

/* State records waiting to go to the results stream as one message (group commit: one
 * broker write per stream every few milliseconds instead of one per state change). */
struct stream_batch {
    char *body;             /* "[rec,rec,...", closed with ']' on flush */
    size_t len, cap;
    int count;
    double first_at;        /* task__now_mono() of its first record */
    struct job **jobs;      /* jobs whose ack waits for this batch's confirm */
    int njobs, cap_jobs;
};

/* A task held until its eta (until the broker-side delay cascade replaces it). */
struct held {
    double due;             /* wall-clock seconds */
    struct task__delivery d;
};

/* pidbox autoscale (autoscale.c); max 0: off, the pool keeps the size it is given. */
struct autoscaler {
    int min, max;           /* processes */
    double last_up;         /* task__now_mono() of the last growth (shrinking waits after it) */
    double next_check;
};

/* The delivery window's part for deliveries waiting only for confirms (window.h). */
struct window {
    int confirm;            /* now; starts at worker.confirm_window */
    int peak;               /* most deliveries waiting only for confirms at once, this second */
    int turns, starved;     /* loop turns this second, and those in which slots starved */
    int low_s;              /* seconds in a row at a quarter of `confirm` or less */
    double second_at;       /* task__now_mono() of the next resize */
    bool apply;             /* w->prefetch changed: ask the broker for it (consumer_refresh) */
    unsigned gen;           /* consumer tags made here (unique on CH_CONSUME) */
};

struct worker {
    task_config *cfg;
    struct task__conn *conn;
    /* The publisher's confirms settle jobs through this (outcome_settled): it knows nothing
     * of acks, leases or requeues. */
    void (*settled)(struct worker *w, struct job *job);
    enum worker_state state;
    bool shutdown_asked;    /* a pidbox shutdown: drain, as the first SIGTERM does */
    int sigfd;
    char hostname[256];
    struct task__limits limits;
    struct task__sec *sec;  /* message signing (msgauth.c); NULL: off */

    struct pending *pend;   /* ring buffer */
    size_t pend_head, pend_len, pend_cap;

    struct held *held;
    size_t nheld, held_cap;

    struct stream_batch batch[TASK__RESULTS_PARTITIONS]; /* one per results stream */
    double stream_flushed_at; /* task__now_mono() of the last batch published */
    int started_due;        /* running jobs whose STARTED may still be due (outcome.c) */
    double started_first;   /* the earliest start among them; INFINITY: scan again */
    bool results_rest;      /* results streams 1.. still to declare (consumer_declare_rest) */

    char *tags[32];         /* consumer tags, for basic.cancel on warm shutdown */
    char *tag_queues[32];   /* the queue each consumer tag reads (a delivery's identity) */
    char *old_tags[32];     /* the tag each replaced (consumer_refresh): deliveries sent before
                             * the broker took its cancel still carry it */
    int ntags;
    int prefetch;
    struct window win;
    int inflight;           /* deliveries not yet acked */
    struct pool pool;
    struct pollfd *pfd;     /* the loop's poll set: signals, broker, every child, /metrics */
    int *pfd_child;         /* pool slot of each child entry in pfd */
    struct task__replies revoked; /* revoked task ids (pidbox revoke) */
    struct adecl delay;     /* the delay cascade's declarations on this connection */
    double delay_started;   /* task__now_mono() they were sent */
    struct delay_wait *dwait; /* parks waiting for them (delay.c) */
    size_t ndwait, dwait_cap;
    struct canvas_wait *cwait; /* follow-ups waiting for their queue's declaration, in the
                                * order it was sent (canvas_wait.c) */
    size_t ncwait, cwait_cap;
    bool canvas_reopening;  /* CH_CANVAS was closed by a refusal: open-ok not in yet */
    bool returned;          /* a basic.return came: the next confirm counts as a nack */
    bool paused;            /* consumers cancelled: no live pool child to run anything */
    bool blocked;           /* connection.blocked: a broker alarm; we write nothing that can
                             * wait (outcomes are stashed, deliveries held) until unblocked */
    bool cancel_on_unblock; /* a warm stop began while blocked: cancel the consumers after */
    double blocked_since;   /* task__now_mono() */
    uint64_t n_blocked;     /* times the broker blocked us */
    double blocked_total_s; /* time spent blocked, over ended blocks */
    double reconsume_at;    /* task__now_mono() to consume again a queue the broker cancelled */
    bool chord_ready;       /* the chord channel (tx mode) is open on this connection */
    bool chord_closing;     /* we closed it after a failed step: close-ok, then reopen */
    struct chord_op *chords, *chords_tail; /* member ends under way, in turn (chord.c) */
    char chord_lock_left[310]; /* a lock a failed step held: deleted once reopened */
    bool lease_ready;       /* the lease channel (tx mode) is open on this connection */
    double second_at;       /* task__now_mono() of the next once-a-second tick (supervisor.c) */
    struct job *stashed;    /* leased jobs that ended with no broker: settled on reconnect */
    struct job *orphans;    /* orphans' outcomes waiting for their redelivery (orphan.h) */
    int norphans;
    char *lease_done[256];  /* ids of leased tasks that ended here lately (lease.c) */
    double lease_done_at[256];
    unsigned lease_done_next;
    struct task__topo topo; /* queue arguments, routes, queues declared on this connection */
    struct bucket *buckets; /* rate limits, by task name */
    int nbuckets;
    struct joblist rate;    /* jobs waiting for a rate-limit token */
    uint64_t n_delayed;
    double started;         /* task__now_mono() at start, for uptime */
    double last_heartbeat;  /* task__now_mono() of the last worker event */
    uint64_t clock;         /* Lamport clock of our events */
    task_config *(*reload)(void *ud, task_error *err); /* SIGHUP: build a fresh config */
    void *reload_ud;
    double drain_deadline;  /* warm shutdown turns cold after this (task__now_mono()) */
    uint64_t n_received, n_succeeded, n_failed, n_retried, n_quarantined;
    struct metrics *metrics; /* per-task counters for /metrics (metrics.h) */
    struct autoscaler autoscale;
    struct mhttp *mhttp;     /* the /metrics endpoint; NULL: worker.metrics_listen is off */
};

#endif
