/* window.c - the delivery window sized by Little's law (window.h). */
#include "autoscale.h"
#include "consumer.h"
#include "log.h"
#include "pool.h"
#include "window.h"

int window_next(int cur, int peak, int starved, int floor, int *low_s)
{
    if (floor <= 0) {
        *low_s = 0;
        return 0;
    }
    int cap = floor > WINDOW_CONFIRM_MAX ? floor : WINDOW_CONFIRM_MAX;
    if (cur < floor)
        cur = floor;
    if (starved >= WINDOW_STARVED_TURNS && peak * 2 >= cur && cur < cap) {
        *low_s = 0;
        return cur > cap / 2 ? cap : cur * 2;
    }
    if (peak * 4 > cur || cur <= floor) {
        *low_s = 0;
        return cur;
    }
    if (++*low_s < WINDOW_SHRINK_AFTER_S)
        return cur;
    *low_s = 0;
    return cur / 2 > floor ? cur / 2 : floor;
}

/* Deliveries held here that ended and wait only for their results' confirms, with `running`
 * tasks running. */
static int confirm_waiting(const struct worker *w, int running)
{
    long n = (long)w->inflight - running - (long)w->pool.bl.n - (long)w->rate.n;
    return n > 0 ? (int)n : 0;
}

/* Slots free, none waiting for one, and the broker sends no more: the window is what stops
 * them. (With several queues each consumer has the prefetch: this errs towards growing.) */
static bool starved(const struct worker *w, int running)
{
    int slots = w->pool.target * w->pool.threads;
    return running < slots && w->pool.bl.n == 0 && w->inflight + (long)w->nheld >= w->prefetch;
}

static void resize(struct worker *w, double now)
{
    struct window *win = &w->win;
    int next = window_next(win->confirm, win->peak, win->starved, w->cfg->confirm_window,
                           &win->low_s);
    if (next != win->confirm) {
        log_event(LV_INFO, 0, "window_resized", "confirm_window=%d from=%d confirm_waiting_peak=%d "
                  "starved_turns=%d", next, win->confirm, win->peak, win->starved);
        win->confirm = next;
        pool_prefetch_follow(w);
    }
    win->peak = 0;
    win->turns = win->starved = 0;
    win->second_at = now + 1;
}

void window_turn(struct worker *w)
{
    struct window *win = &w->win;
    int running = pool_running(w);
    int waiting = confirm_waiting(w, running);
    if (waiting > win->peak)
        win->peak = waiting;
    win->turns++;
    win->starved += starved(w, running);
    double now = task__now_mono();
    if (now >= win->second_at && w->state == W_RUNNING) /* not while draining */
        resize(w, now);
    if (!win->apply || !task__conn_alive(w->conn) || w->state != W_RUNNING || w->paused ||
        w->blocked)
        return;
    win->apply = false;
    int rc = consumer_refresh(w);
    if (rc != 0)
        log_event(LV_WARN, rc, "window_failed", "prefetch=%d detail=\"%s\"", w->prefetch,
                  task__conn_errmsg(w->conn));
}
