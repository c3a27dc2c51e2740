/*
 * stub_worker.h - the worker functions that control.c and revoked.c call, replaced by recorders,
 * so their reading of pidbox requests and stream records runs without a broker or a pool (unit
 * tests and the fuzz targets link this instead of the rest of taskd).
 */
#ifndef STUB_WORKER_H
#define STUB_WORKER_H

#include "autoscale.h"
#include "consumer.h"
#include "control.h"
#include "events.h"
#include "pool.h"
#include "publisher.h"
#include "ratelimit.h"
#include "revoked.h"
#include "worker.h"

struct stub_calls {
    int replies;            /* pub_send() calls */
    char reply_rk[300];     /* the last one's routing key */
    char reply_body[4096];  /* and its body (cut) */
    int revokes;            /* pool_revoke() calls */
    int terminates;         /* of which with terminate */
    int rate_sets;
    int heartbeats;
    int pool_grows, pool_shrinks, pool_restarts; /* their n summed (restarts: calls) */
    int consumers_added, consumers_cancelled;
    int time_limits;
    int control_rejected;   /* metrics_control_rejected() calls */
    int last_reject_reason;
    unsigned stream_rejected;
};
extern struct stub_calls stub_calls;

/* A zeroed worker named `hostname`, with an empty revoked set, the default config, a pool of
 * no processes and no connection. */
struct worker *stub_worker_new(const char *hostname);
void stub_worker_free(struct worker *w);

#endif
