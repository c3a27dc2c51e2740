/* metrics_scrape.c - see metrics_scrape.h. */
#include "log.h"
#include "metrics.h"
#include "metrics_scrape.h"
#include "pool.h"

static void scrape(void *ud, struct mbuf *out)
{
    const struct worker *w = ud;
    long children = 0;
    for (int i = 0; i < w->pool.n; i++)
        children += w->pool.ch[i].pid > 0;
    struct metrics_gauges g = {
        .slots = (long)w->pool.n * w->pool.threads,
        .busy_slots = pool_running(w),
        .backlog = (long)w->pool.bl.n,
        .prefetch_limit = w->prefetch,
        /* Jobs (running, waiting for a slot or a rate token, awaiting confirms) and
         * deliveries held a moment for an eta under a second. */
        .prefetch_in_use = w->inflight + (long)w->nheld,
        .children = children,
        .broker_connected = w->conn != NULL,
        .broker_blocked = w->blocked,
        .blocked_count = (long)w->n_blocked,
        .blocked_seconds = w->blocked_total_s +
                           (w->blocked ? task__now_mono() - w->blocked_since : 0),
    };
    metrics_render(w->metrics, &g, out);
}

int metrics_start(struct worker *w)
{
    w->metrics = metrics_new();
    if (w->metrics == NULL)
        log_event(LV_WARN, TASK_ENOMEM, "metrics_disabled", NULL);
    const char *spec = w->cfg->metrics_listen;
    if (spec == NULL || spec[0] == '\0' || w->metrics == NULL)
        return 0;
    char what[300] = "";
    int rc = mhttp_open(&w->mhttp, spec, scrape, w, what, sizeof(what));
    if (rc != 0) {
        log_event(LV_ERROR, -rc, "metrics_listen_failed", "listen=%s step=\"%s\"", spec, what);
        return TASK_ECONFIG;
    }
    log_event(LV_INFO, 0, "metrics_listening", "addr=%s path=/metrics", mhttp_addr(w->mhttp));
    return 0;
}

void metrics_stop(struct worker *w)
{
    mhttp_free(w->mhttp);
    w->mhttp = NULL;
    metrics_free(w->metrics);
    w->metrics = NULL;
}
