/* stub_worker.c - see stub_worker.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "metrics.h"
#include "stub_worker.h"

struct stub_calls stub_calls;

struct worker *stub_worker_new(const char *hostname)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    snprintf(w->hostname, sizeof(w->hostname), "%s", hostname);
    if (task__replies_init(&w->revoked) != 0) {
        free(w);
        return NULL;
    }
    return w;
}

void stub_worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    task__replies_free(&w->revoked);
    free(w);
}

int pub_send(struct worker *w, struct job *job, const char *exchange, const char *rk,
             const amqp_basic_properties_t *props, const void *body, size_t len)
{
    (void)w, (void)job, (void)exchange, (void)props;
    stub_calls.replies++;
    snprintf(stub_calls.reply_rk, sizeof(stub_calls.reply_rk), "%s", rk);
    snprintf(stub_calls.reply_body, sizeof(stub_calls.reply_body), "%.*s", (int)len,
             (const char *)body);
    return 0;
}

void pool_revoke(struct worker *w, const char *id, bool terminate)
{
    (void)w, (void)id;
    stub_calls.revokes++;
    stub_calls.terminates += terminate;
}

int pool_running(const struct worker *w)
{
    (void)w;
    return 0;
}

int rate_set(struct worker *w, const char *name, const char *limit)
{
    (void)w, (void)name, (void)limit;
    stub_calls.rate_sets++;
    return 0;
}

void events_worker(struct worker *w, const char *type)
{
    (void)w, (void)type;
    stub_calls.heartbeats++;
}

void worker_request_shutdown(struct worker *w)
{
    (void)w;
    stub_calls.shutdowns++;
}

void metrics_control_rejected(struct metrics *m, int reason)
{
    (void)m;
    stub_calls.control_rejected++;
    stub_calls.last_reject_reason = reason;
}

void metrics_stream_rejected(struct metrics *m, unsigned n)
{
    (void)m;
    stub_calls.stream_rejected += n;
}
