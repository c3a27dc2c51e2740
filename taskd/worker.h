/*
 * worker.h - the taskd worker: one supervisor process that owns the AMQP connection.
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
#include "codec.h"
#include "conn.h"
#include "ipc.h"
#include "msgcopy.h"
#include "replies.h"
#include "stream.h"
#include "topology.h"

#define CH_CONSUME 1
#define CH_PUBLISH 2
/* Declares made while running (canvas targets, the delay cascade): a refusal closes this channel,
 * not the publish channel, and it is answered and reopened at once (worker_ensure_queue). */
#define CH_DECLARE 7

enum worker_state { W_RUNNING, W_DRAINING, W_STOPPED };

/* One delivery, from receipt to ack. */
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
    int stash;              /* finished while the broker was away (lease.h): STASH_* */
    json_object *stash_reply; /* what its child said (STASH_DONE), owned */
    double orphan_until;    /* an orphan's kept outcome waits for its redelivery until then */
    double lease_s;         /* the lease its queue was declared with (a reload does not change
                             * it); 0 with lease_kept: another worker's queue, TTL unknown */
    bool lease_kept;        /* its lease queue was declared with other arguments: renew often */
    bool lease_dangling;    /* a lapsed copy came back to it: delete its lease queue at the end */
    bool announced;         /* task-received sent already (at its eta hold or rate wait) */
};

/* A pool child as the supervisor sees it. */
struct pchild {
    pid_t pid;              /* 0: not running */
    int fd;
    struct ipc_buf in;
    struct ipc_out out;     /* frames the child has not read yet (the socket was full) */
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

struct pool {
    struct pchild *ch;      /* cap slots; [0, n) in use */
    int n, threads;
    int cap;                /* slots allocated (ch, crash) */
    int target;             /* slots to keep a child in: [target, n) are retiring (shrink) */
    struct job *bl_head, *bl_tail; /* deliveries waiting for a free slot */
    size_t backlog;
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
 * broker write per event-loop turn instead of one per state change). */
struct stream_batch {
    char *body;             /* "[rec,rec,...", closed with ']' on flush */
    size_t len, cap;
    int count;
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

struct worker {
    task_config *cfg;
    struct task__conn *conn;
    enum worker_state state;
    int sigfd;
    char hostname[256];
    struct task__limits limits;
    struct task__sec *sec;  /* message signing (msgauth.c); NULL: off */

    struct pending *pend;   /* ring buffer */
    size_t pend_head, pend_len, pend_cap;

    struct held *held;
    size_t nheld, held_cap;

    struct stream_batch batch[TASK__RESULTS_PARTITIONS]; /* one per results stream */
    bool results_rest;      /* results streams 1.. still to declare (consumer_declare_rest) */

    char *tags[32];         /* consumer tags, for basic.cancel on warm shutdown */
    char *tag_queues[32];   /* the queue each consumer tag reads (a delivery's identity) */
    int ntags;
    int prefetch;
    int inflight;           /* deliveries not yet acked */
    struct pool pool;
    struct pollfd *pfd;     /* the loop's poll set: signals, broker, every child, /metrics */
    int *pfd_child;         /* pool slot of each child entry in pfd */
    struct task__replies revoked; /* revoked task ids (pidbox revoke) */
    bool delay_ready;       /* the delay cascade is declared on this connection */
    bool returned;          /* a basic.return came: the next confirm counts as a nack */
    bool paused;            /* consumers cancelled: no live pool child to run anything */
    bool blocked;           /* connection.blocked: a broker alarm; we write nothing that can
                             * wait (outcomes are stashed, deliveries held) until unblocked */
    double blocked_since;   /* task__now_mono() */
    uint64_t n_blocked;     /* times the broker blocked us */
    double blocked_total_s; /* time spent blocked, over ended blocks */
    double reconsume_at;    /* task__now_mono() to consume again a queue the broker cancelled */
    bool chord_ready;       /* the chord channel (tx mode) is open on this connection */
    bool lease_ready;       /* the lease channel (tx mode) is open on this connection */
    double lease_tick_at;   /* task__now_mono() of the next look for long-held deliveries */
    struct job *stashed;    /* leased jobs that ended with no broker: settled on reconnect */
    struct job *orphans;    /* orphans' outcomes waiting for their redelivery (orphan.h) */
    int norphans;
    char *lease_done[256];  /* ids of leased tasks that ended here lately (lease.c) */
    double lease_done_at[256];
    unsigned lease_done_next;
    struct task__topo topo; /* queue arguments, routes, queues declared on this connection */
    struct bucket *buckets; /* rate limits, by task name */
    int nbuckets;
    struct job *rate_head, *rate_tail; /* jobs waiting for a rate-limit token */
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

/* worker.c */
int worker_init(struct worker *w, task_config *cfg);
int worker_run(struct worker *w);
void worker_free(struct worker *w);

/* publisher.c: publish on CH_PUBLISH, tying the confirm to `job` (may be NULL). */
int pub_send(struct worker *w, struct job *job, const char *exchange, const char *rk,
             const amqp_basic_properties_t *props, const void *body, size_t len);
/* The same, mandatory: for a message the task's fate depends on (retry, follow-up, parking,
 * quarantine). If no queue takes it, the broker returns it and the job is requeued, not acked. */
int pub_send_mandatory(struct worker *w, struct job *job, const char *exchange, const char *rk,
                       const amqp_basic_properties_t *props, const void *body, size_t len);
/* basic.return on CH_PUBLISH: the next confirm covers a message no queue took. */
void pub_on_return(struct worker *w);
/* Publish the batched results-stream records (call once per loop turn). */
void pub_flush_stream(struct worker *w);
/* Forget a batch whose connection is gone. */
void pub_drop_batch(struct worker *w);
/* Handle basic.ack / basic.nack frames from CH_PUBLISH. */
void pub_on_confirm(struct worker *w, uint64_t tag, bool multiple, bool nack);
/* The job has made all its publishes: ack now if nothing is outstanding. */
void job_finish(struct worker *w, struct job *job);
/* Publish a state message for task `m` (reply_to, correlation) if it wants results. */
int pub_result(struct worker *w, struct job *job, const struct task__msg *m, const char *status,
               json_object *result, const char *traceback, int delivery_count);

/* quarantine.c: copy the delivery to the dead queue with the reason; answer the caller. */
void quarantine(struct worker *w, struct task__delivery *d, const struct task__msg *partial,
                enum task__bad reason, const char *detail);

/* runner.c: hand a decoded task to the pool; publish what comes back. */
void runner_start(struct worker *w, struct job *job);
/* The pool handed the job to a child: STARTED (worker.track_started) and task-started. */
void runner_started(struct worker *w, struct job *job);
void runner_done(struct worker *w, struct job *job, json_object *reply);
void runner_progress(struct worker *w, struct job *job, json_object *meta);
/* The child running `job` died: WorkerLostError, or TimeLimitExceeded when it was killed. */
void runner_lost(struct worker *w, struct job *job);
/* Not the task's fault (a neighbour's crash or kill): put a fresh copy of its message back in
 * its queue (the old one is acked once the copy is confirmed), so that the broker's delivery
 * count (a quorum queue's delivery-limit) and our requeue_on_crash do not count it. */
void runner_requeue_fresh(struct worker *w, struct job *job, const char *reason);
/* A job that ends REVOKED (`why`: "revoked" or "expired") without a result of its own. */
void runner_revoked(struct worker *w, struct job *job, const char *why);
/* A job that waited (backlog, rate limit, eta) past worker.lease_after: a fresh copy goes to the
 * tail of its queue, the delivery is acked once it is confirmed (lease.h). */
void runner_give_back(struct worker *w, struct job *job);
struct job *job_new(struct worker *w, uint64_t dtag);
void job_free(struct job *job);

/* canvas.c: follow-up messages of a finished task (link, chain, link_error). */
void canvas_on_success(struct worker *w, struct job *job, json_object *result);
/* The task failed with `type` (`module`) and `message`: its link_error callbacks run, and the
 * rest of its chain fails with the same exception. */
void canvas_on_failure(struct worker *w, struct job *job, const char *type, const char *module,
                       const char *message);
/* Encode signature `sig` with `first` prepended to its args; *target gets its queue. 0 or
 * TASK_EINVAL (unusable signature, logged) or another TASK_E*. */
int canvas_encode(struct worker *w, struct job *job, json_object *sig, json_object *first,
                  json_object *chain_rest, const char *why, struct task__wire *wire,
                  const char **target);
/* canvas_encode() returned TASK_EBROKER with the connection alive: the broker refused the
 * target queue. `sig` (and `chain_rest`) end FAILURE QueueRefused, tied to the job's ack. */
void canvas_refused(struct worker *w, struct job *job, json_object *sig, json_object *chain_rest,
                    const char *target, const char *why);
/* A chord's callback cannot run: publish FAILURE (ChordError) for it, tied to the job's ack. */
int canvas_chord_error(struct worker *w, struct job *job, const char *member_id,
                       json_object *member_exc);

/* chord.c: a chord header member ended (SUCCESS, FAILURE, REVOKED): count it in the broker and
 * fire the callback when it is the last. 0 or a TASK_E* (then requeue the member). */
int chord_part_done(struct worker *w, struct job *job, const char *status, json_object *result);

/* control.c: pidbox remote control */
int control_start(struct worker *w);
void control_on_delivery(struct worker *w, struct task__delivery *d);
/* revoked set (revoked.c) */
#define CH_REVOKED 5
/* Read taskd.revoked back into the set (on connect, before consuming). 0 or an error code. */
int revoked_load(struct worker *w);
/* Add `id` to the set and append it to taskd.revoked, so the revoke survives restarts. */
void revoked_persist(struct worker *w, const char *id);
void revoked_add(struct worker *w, const char *id);
bool revoked_has(struct worker *w, const char *id);
json_object *revoked_list(struct worker *w);
/* Declare `queue` as Celery declares task queues, once per connection: a message published to
 * a queue that does not exist yet would be dropped by the broker. On CH_DECLARE: a refusal
 * (TASK_EBROKER, the broker's reason in the conn's error) is answered and the channel reopened,
 * so the worker goes on. */
int worker_ensure_queue(struct worker *w, const char *queue);
/* Reopen CH_DECLARE after a refusal (answered). 0 or the connection's error. */
int worker_declare_refused(struct worker *w);
/* Begin a warm shutdown (as the first SIGTERM does). */
void worker_request_shutdown(struct worker *w);

/* events.c: celeryev */
int events_start(struct worker *w);
void events_worker(struct worker *w, const char *type);   /* worker-online/heartbeat/offline */
void events_tick(struct worker *w);                        /* heartbeat when due */
/* A task event; `extra` (new reference, may be NULL) is merged into it and released. */
void events_task(struct worker *w, const char *type, const struct job *job, json_object *extra);
/* The same for a message that has no job yet (held for its eta). */
void events_task_msg(struct worker *w, const char *type, const struct task__msg *m);

/* ratelimit.c */
double rate_parse(const char *text);
int rate_set(struct worker *w, const char *name, const char *limit);
double rate_take(struct worker *w, const char *name);
void rate_wait(struct worker *w, struct job *job, double delay_s);
void rate_release(struct worker *w);
int rate_next_ms(const struct worker *w);
void rate_drop(struct worker *w, bool requeue);
void rate_free(struct worker *w);
/* Give back the jobs waiting for a token that were received before `before` (mono). */
void rate_give_back(struct worker *w, double before);
/* The rate limit of task `name` as set ("10/s"), or NULL for none. */
const char *rate_limit_text(struct worker *w, const char *name);
/* pidbox time_limit: task `name` runs with these limits (seconds; 0: the worker's default, as
 * Celery's None) unless its message carries its own. 0, TASK_EINVAL or TASK_ENOMEM. */
int time_limit_set(struct worker *w, const char *name, double soft, double hard);
/* The limits time_limit_set() gave `name`: false when it gave none. */
bool time_limit_get(const struct worker *w, const char *name, double *soft, double *hard);

/* pool.c */
int pool_start(struct worker *w);
void pool_submit(struct worker *w, struct job *job);
/* Hand waiting jobs to free slots (after a child reports, or the broker unblocks us). */
void pool_drain_backlog(struct worker *w);
void pool_on_readable(struct worker *w, int i);
/* The child's socket takes more: write what waits for it. */
void pool_on_writable(struct worker *w, int i);
void pool_reap(struct worker *w);
void pool_check_limits(struct worker *w);
int pool_next_deadline_ms(const struct worker *w);
bool pool_idle(const struct worker *w);
/* Pool children alive now. */
int pool_live(const struct worker *w);
int pool_running(const struct worker *w);
/* Warm: children finish their jobs and exit. Cold: SIGKILL. */
void pool_stop(struct worker *w, bool cold);
bool pool_all_exited(const struct worker *w);
/* A revoke of task `id` that is running: --terminate kills its child (it ends REVOKED, its
 * neighbours are requeued); without, its child is asked to cancel it (task_cancelled()). */
void pool_revoke(struct worker *w, const char *id, bool terminate);
/* Forget the jobs of a lost connection (running ones become orphans). */
void pool_drop_jobs(struct worker *w);
/* Give waiting (not yet running) jobs back to the broker. */
void pool_requeue_backlog(struct worker *w);
/* Give back the backlog's jobs received before `before` (task__now_mono()). */
void pool_give_back(struct worker *w, double before);
/* pidbox pool_grow / pool_shrink: fork `k` more children (up to POOL_GROW_MAX beyond the
 * configured size) or retire `k` (after their running tasks; one always stays). The number
 * added or removed, or TASK_EINVAL (k < 1, stopping). */
int pool_grow(struct worker *w, int k);
int pool_shrink(struct worker *w, int k);
/* autoscale.c: prefetch follows the pool's size (pool_grow/shrink, autoscale), as Celery's. */
void pool_prefetch_follow(struct worker *w);
/* pidbox autoscale MAX MIN (0: keep the one set before): 0, or TASK_EINVAL (MIN < 1, MIN > MAX,
 * MAX beyond worker.pool_size + POOL_GROW_MAX). Resizes at once into the range. */
int autoscale_set(struct worker *w, int max, int min);
/* Once a loop turn: grow or shrink by demand when autoscale is on (acts once a second). */
void autoscale_tick(struct worker *w);
/* Tasks running or waiting for a slot or a rate-limit token (Celery's autoscaler "qty"). */
int autoscale_demand(const struct worker *w);
/* pidbox pool_restart: every child finishes its tasks, exits and is replaced by a fresh fork.
 * The number of children recycled, or TASK_EINVAL (stopping). */
int pool_restart(struct worker *w);


/* consumer.c */
int consumer_start(struct worker *w);
/* Declare results streams 1.. on CH_PUBLISH without waiting, last in the connection's setup: a
 * fresh broker takes ~13 ms to create each, and a call waiting on CH_PUBLISH would wait for
 * them all. Results published on CH_PUBLISH come after them. */
int consumer_declare_rest(struct worker *w);
void consumer_on_delivery(struct worker *w, struct task__delivery *d);
/* The broker cancelled consumer `tag` (its queue was deleted): consume it again soon. */
void consumer_lost(struct worker *w, const char *tag);
/* Declare and consume again the queues whose consumers the broker cancelled (when due). */
void consumer_reconsume(struct worker *w);
/* Cancel every consumer (basic.cancel); deliveries already here stay ours. */
void consumer_cancel(struct worker *w);
/* No pool child is alive: stop consuming and give back what waits; resume when one is. */
void consumer_pause(struct worker *w);
void consumer_resume(struct worker *w);
void consumer_release_due(struct worker *w);
int consumer_next_due_ms(const struct worker *w);
/* Give back the deliveries held for their eta that were received before `before` (mono). */
void consumer_give_back(struct worker *w, double before);
/* pidbox add_consumer / cancel_consumer: consume `queue` too (declared as the configured ones
 * are), or stop consuming it. worker.queues follows, so a reconnect keeps the change. 0,
 * TASK_EINVAL (33rd queue, a comma in the name), TASK_ENOTFOUND (cancel: not consumed) or the
 * connection's error. */
int consumer_add_queue(struct worker *w, const char *queue);
int consumer_cancel_queue(struct worker *w, const char *queue);
bool consumer_has_queue(const struct worker *w, const char *queue);

#endif
