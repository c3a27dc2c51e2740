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
#include <stdint.h>
#include <task/config.h>
#include <task/task.h>
#include "codec.h"
#include "conn.h"

#define CH_CONSUME 1
#define CH_PUBLISH 2

enum worker_state { W_RUNNING, W_DRAINING, W_STOPPED };

/* One delivery, from receipt to ack. */
struct job {
    uint64_t dtag;          /* delivery tag on CH_CONSUME */
    int waits;              /* publishes not yet confirmed */
    bool nacked;            /* a publish was refused: requeue instead of ack */
    bool done;              /* all publishes made; ack when waits reaches 0 */
};

/* Publishes awaiting a confirm, in sequence order. */
struct pending {
    uint64_t seq;
    struct job *job;        /* NULL: nothing to do on confirm */
};

/* A task held until its eta (until the broker-side delay cascade replaces it). */
struct held {
    double due;             /* wall-clock seconds */
    struct task__delivery d;
};

struct worker {
    task_config *cfg;
    struct task__conn *conn;
    enum worker_state state;
    int sigfd;
    char hostname[256];
    struct task__limits limits;

    struct pending *pend;   /* ring buffer */
    size_t pend_head, pend_len, pend_cap;

    struct held *held;
    size_t nheld, held_cap;

    char *tags[32];         /* consumer tags, for basic.cancel on warm shutdown */
    int ntags;
    int prefetch;
    int inflight;           /* deliveries not yet acked */
    uint64_t n_received, n_succeeded, n_failed, n_retried, n_quarantined;
};

/* worker.c */
int worker_init(struct worker *w, task_config *cfg);
int worker_run(struct worker *w);
void worker_free(struct worker *w);

/* publisher.c: publish on CH_PUBLISH, tying the confirm to `job` (may be NULL). */
int pub_send(struct worker *w, struct job *job, const char *exchange, const char *rk,
             const amqp_basic_properties_t *props, const void *body, size_t len);
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

/* runner.c: run a decoded task message; publishes its outcome for `job`. */
void run_task(struct worker *w, struct job *job, struct task__delivery *d, struct task__msg *m);

/* runner.c: times this message was delivered (quorum x-delivery-count, else redelivered). */
int delivery_count(const struct task__delivery *d);

/* consumer.c */
int consumer_start(struct worker *w);
void consumer_on_delivery(struct worker *w, struct task__delivery *d);
void consumer_release_due(struct worker *w);
int consumer_next_due_ms(const struct worker *w);

#endif
