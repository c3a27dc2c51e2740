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
    w->cfg = task_config_new();
    if (w->cfg == NULL || task__replies_init(&w->revoked) != 0) {
        task_config_free(w->cfg);
        free(w);
        return NULL;
    }
    w->pool.target = 1; /* as if one child ran: pool_shrink has nothing to take */
    return w;
}

void stub_worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    task__replies_free(&w->revoked);
    task_config_free(w->cfg);
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

int pool_grow(struct worker *w, int k)
{
    stub_calls.pool_grows += k;
    w->pool.target += k;
    return k;
}

int pool_shrink(struct worker *w, int k)
{
    int drop = k < w->pool.target - 1 ? k : w->pool.target - 1;
    stub_calls.pool_shrinks += drop;
    w->pool.target -= drop;
    return drop;
}

int pool_restart(struct worker *w)
{
    (void)w;
    stub_calls.pool_restarts++;
    return 0;
}

/* The stub consumes what worker.queues lists, as the real one does once connected. */
bool consumer_has_queue(const struct worker *w, const char *queue)
{
    for (int i = 0; i < w->cfg->queues.n; i++)
        if (strcmp(w->cfg->queues.v[i], queue) == 0)
            return true;
    return false;
}

int consumer_add_queue(struct worker *w, const char *queue)
{
    char list[1024];
    snprintf(list, sizeof(list), "%s", queue);
    for (int i = 0; i < w->cfg->queues.n; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), ",%s", w->cfg->queues.v[i]);
    stub_calls.consumers_added++;
    return task_config_set(w->cfg, "worker.queues", list, "stub", NULL);
}

int consumer_cancel_queue(struct worker *w, const char *queue)
{
    char list[1024] = "";
    for (int i = 0; i < w->cfg->queues.n; i++)
        if (strcmp(w->cfg->queues.v[i], queue) != 0)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", list[0] ? "," : "",
                     w->cfg->queues.v[i]);
    stub_calls.consumers_cancelled++;
    return task_config_set(w->cfg, "worker.queues", list, "stub", NULL);
}

int time_limit_set(struct worker *w, const char *name, double soft, double hard)
{
    (void)w, (void)name;
    if (!(soft >= 0 && hard >= 0))
        return TASK_EINVAL;
    stub_calls.time_limits++;
    return 0;
}

bool time_limit_get(const struct worker *w, const char *name, double *soft, double *hard)
{
    (void)w, (void)name, (void)soft, (void)hard;
    return false;
}

const char *rate_limit_text(struct worker *w, const char *name)
{
    (void)w, (void)name;
    return NULL;
}

json_object *metrics_totals(const struct metrics *m)
{
    (void)m;
    return json_object_new_object();
}

/* Enough of ratelimit.c's parser for control.c's checks: a number, optionally "/s|m|h". */
double rate_parse(const char *text)
{
    if (text == NULL || text[0] == '\0')
        return 0;
    char *end;
    double n = strtod(text, &end);
    if (end == text || !(n >= 0 && n <= 1e9))
        return -1;
    bool unit = end[0] == '/' && end[1] != '\0' && strchr("smh", end[1]) != NULL;
    return *end == '\0' || unit ? n : -1;
}
