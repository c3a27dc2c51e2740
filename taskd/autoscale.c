/*
 * autoscale.c - pidbox autoscale: Celery's autoscaler for the taskd pool. Once asked
 * (`celery control autoscale MAX MIN`), the pool keeps between MIN and MAX processes: it grows
 * at once to the demand (tasks running, waiting for a slot or for a rate-limit token) and
 * shrinks towards it after KEEPALIVE_S without growing, checked once a second, as Celery's
 * Autoscaler does. Also the prefetch that follows the pool's size (pool_grow, pool_shrink).
 */
#include "autoscale.h"
#include "log.h"
#include "pool.h"
#include "worker.h"

#define KEEPALIVE_S 30.0  /* Celery's AUTOSCALE_KEEPALIVE default */
#define INTERVAL_S 1.0

void pool_prefetch_follow(struct worker *w)
{
    int mult = w->cfg->prefetch_multiplier > 0 ? w->cfg->prefetch_multiplier : 4;
    long prefetch = (long)w->pool.target * w->pool.threads * mult + w->win.confirm;
    prefetch = prefetch > 65535 ? 65535 : prefetch;
    /* basic.qos binds consumers made after it: the loop makes new ones (window.c). */
    if (prefetch != w->prefetch)
        w->win.apply = true;
    w->prefetch = (int)prefetch;
}

/* Celery's qty: requests the worker holds that want a process (running or waiting for one). */
int autoscale_demand(const struct worker *w)
{
    long n = pool_running(w) + (long)w->pool.bl.n + (long)w->rate.n;
    return n > 1000000 ? 1000000 : (int)n;
}

/* Grow or shrink the pool to `procs` processes (slots of `threads` tasks each). */
static void resize(struct worker *w, int procs, const char *why)
{
    int now = w->pool.target;
    int rc = procs > now ? pool_grow(w, procs - now) : procs < now ? pool_shrink(w, now - procs) : 0;
    if (rc > 0) {
        pool_prefetch_follow(w);
        log_event(LV_INFO, 0, "autoscale", "reason=%s processes=%d demand=%d", why,
                  w->pool.target, autoscale_demand(w));
    }
}

int autoscale_set(struct worker *w, int max, int min)
{
    struct autoscaler *a = &w->autoscale;
    int hi = max > 0 ? max : a->max, lo = min > 0 ? min : (a->min > 0 ? a->min : 1);
    if (hi < 1 || lo < 1 || lo > hi || hi > w->pool.cap)
        return TASK_EINVAL;
    a->max = hi;
    a->min = lo;
    a->last_up = task__now_mono(); /* a first shrink waits KEEPALIVE_S from now */
    if (w->pool.target > hi)
        resize(w, hi, "max");
    else if (w->pool.target < lo)
        resize(w, lo, "min");
    return 0;
}

void autoscale_tick(struct worker *w)
{
    struct autoscaler *a = &w->autoscale;
    double now = task__now_mono();
    if (a->max == 0 || now < a->next_check || w->state != W_RUNNING)
        return;
    a->next_check = now + INTERVAL_S;
    /* Demand counts tasks; a process runs `threads` of them. */
    int threads = w->pool.threads > 0 ? w->pool.threads : 1;
    int want = (autoscale_demand(w) + threads - 1) / threads;
    int procs = w->pool.target;
    if ((want < a->max ? want : a->max) > procs) {
        resize(w, want < a->max ? want : a->max, "demand");
        a->last_up = now;
        return;
    }
    int floor = want > a->min ? want : a->min;
    if (floor < procs && now - a->last_up > KEEPALIVE_S)
        resize(w, floor, "idle");
}
