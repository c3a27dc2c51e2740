/*
 * supervisor.c - the supervisor's event loop: poll() over the AMQP socket (after draining the
 * frames rabbitmq-c has already buffered, which poll() cannot see), a signalfd and the pool
 * children's sockets; the shutdown state machine (warm, then cold); reconnects.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include "autoscale.h"
#include "canvas_wait.h"
#include "chord.h"
#include "config_opts.h"
#include "consumer.h"
#include "control.h"
#include "delay.h"
#include "events.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "beat.h"
#include "metrics_http.h"
#include "metrics_scrape.h"
#include "msgauth.h"
#include "notify.h"
#include "orphan.h"
#include "outcome.h"
#include "pool.h"
#include "publisher.h"
#include "ratelimit.h"
#include "supervisor.h"
#include "window.h"
#include "tls.h"
#include "worker.h"

#define FRAMES_PER_TURN 512

static int block_signals(struct worker *w)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    w->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (w->sigfd < 0)
        return -errno;
    struct sigaction sa = {.sa_handler = SIG_IGN};
    if (sigaction(SIGPIPE, &sa, NULL) != 0)
        return -errno;
    return 0;
}

int worker_init(struct worker *w, task_config *cfg)
{
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    w->sigfd = -1;
    if (cfg->hostname != NULL && cfg->hostname[0] != '\0') {
        snprintf(w->hostname, sizeof(w->hostname), "%s", cfg->hostname);
    } else {
        char host[200] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(w->hostname, sizeof(w->hostname), "taskd%d@%s", (int)getpid(), host);
    }
    w->limits.max_body_bytes = (size_t)cfg->max_message_bytes;
    w->limits.max_depth = cfg->json_max_depth;
    srandom((unsigned)getpid() ^ (unsigned)task__now_wall());
    w->started = task__now_mono();
    int rc = task__replies_init(&w->revoked);
    if (rc == 0)
        rc = task__topo_init(&w->topo, cfg);
    if (rc == 0)
        rc = msgauth_init(w);
    if (rc == TASK_ECONFIG)
        return rc; /* logged; taskd exits 2 */
    if (rc == 0)
        rc = block_signals(w);
    if (rc != 0) {
        log_event(LV_ERROR, -rc, "signal_setup_failed", NULL);
        return rc;
    }
    rc = metrics_start(w); /* before forking: a port in use fails the start, not later */
    if (rc != 0)
        return rc;
    w->settled = outcome_settled;
    w->pool.hooks = (struct pool_hooks){
        .started = outcome_started,
        .progress = outcome_progress,
        .ended = outcome_child_ended,
        .revoked = outcome_revoked,
        .live = consumer_on_live,
    };
    rc = pool_start(w);
    if (rc != 0)
        return rc;
    /* Every child is polled, however many worker.pool_size asks for. */
    w->pfd = calloc((size_t)(2 + w->pool.cap + MHTTP_MAX_FDS), sizeof(*w->pfd));
    w->pfd_child = calloc((size_t)w->pool.cap, sizeof(*w->pfd_child));
    if (w->pfd == NULL || w->pfd_child == NULL)
        return -ENOMEM;
    w->win.confirm = w->cfg->confirm_window;
    pool_prefetch_follow(w); /* no connection yet: it only sets w->prefetch */
    return 0;
}

static int connect_broker(struct worker *w)
{
    char name[300];
    snprintf(name, sizeof(name), "taskd worker %s", w->hostname);
    struct task__tls_opts tls;
    task__tls_from_config(w->cfg, &tls);
    struct task__conn_opts o = {.urls = &w->cfg->broker_urls,
                                .connect_timeout_s = w->cfg->connect_timeout_s,
                                .heartbeat_s = w->cfg->heartbeat_s,
                                .name = name,
                                .tls = &tls};
    task_error err = {0};
    int rc = task__conn_open(&w->conn, &o, &err);
    if (rc != 0) {
        log_event(LV_ERROR, rc, "broker_connect_failed", "detail=\"%s\"", err.msg);
        return rc;
    }
    /* The setup's channels and declarations leave together and are answered together: one
     * round trip instead of some thirty (start to consuming is a target: <= 50 ms). */
    static const uint16_t chans[] = {CH_CONSUME, CH_PUBLISH, CH_DECLARE, CH_DELAY, CH_CANVAS};
    amqp_channel_open_t open = {.out_of_band = amqp_empty_bytes};
    amqp_confirm_select_t confirm = {0};
    for (size_t i = 0; rc == 0 && i < sizeof(chans) / sizeof(chans[0]); i++)
        rc = task__conn_ask(w->conn, chans[i], AMQP_CHANNEL_OPEN_METHOD, &open, "open channel");
    if (rc == 0)
        rc = task__conn_ask(w->conn, CH_PUBLISH, AMQP_CONFIRM_SELECT_METHOD, &confirm,
                            "confirm.select");
    if (rc == 0)
        rc = chord_start(w);
    if (rc == 0)
        rc = events_start(w);
    if (rc == 0)
        rc = control_ask(w);
    if (rc == 0)
        rc = consumer_ask(w);
    if (rc == 0)
        rc = task__conn_answers(w->conn);
    if (rc == 0)
        rc = consumer_start(w);
    if (rc == 0)
        rc = control_start(w);
    if (rc == 0)
        rc = consumer_declare_rest(w);
    if (rc == 0)
        rc = delay_start(w); /* completed by later frames: nothing waits for it here */
    if (rc != 0) {
        log_event(LV_ERROR, rc, "broker_setup_failed", "detail=\"%s\"",
                  task__conn_errmsg(w->conn));
        return rc;
    }
    log_event(LV_INFO, 0, "broker_connected", "broker=%s prefetch=%d",
              task__conn_where(w->conn), w->prefetch);
    if (pool_live(w) == 0)
        consumer_pause(w);
    return 0;
}

/* Forget everything tied to a lost connection: the broker requeues our unacked deliveries and
 * we run them again (at-least-once); results not yet confirmed may be published twice. */
static void drop_session(struct worker *w)
{
    for (size_t i = 0; i < w->pend_len; i++) {
        struct pending *p = &w->pend[(w->pend_head + i) % w->pend_cap];
        if (p->job != NULL && --p->job->waits == 0 && p->job->done)
            job_free(p->job);
        for (int k = 0; k < p->nbatch; k++)
            if (--p->batch[k]->waits == 0 && p->batch[k]->done)
                job_free(p->batch[k]);
        free(p->batch);
        p->job = NULL;
        p->batch = NULL;
        p->nbatch = 0;
    }
    for (unsigned i = 0; i < TASK__RESULTS_PARTITIONS; i++)
        for (int k = 0; k < w->batch[i].njobs; k++)
            if (--w->batch[i].jobs[k]->waits == 0 && w->batch[i].jobs[k]->done)
                job_free(w->batch[i].jobs[k]);
    pub_drop_batch(w);
    w->pend_len = 0;
    w->pend_head = 0;
    for (size_t i = 0; i < w->nheld; i++)
        task__delivery_free(&w->held[i].d);
    w->nheld = 0;
    pool_drop_jobs(w);
    lease_drop_unleased(w);
    job_free_chain(rate_take_waiting(w, INFINITY));
    if (w->blocked)
        w->blocked_total_s += task__now_mono() - w->blocked_since;
    w->blocked = false;
    consumer_forget_tags(w);
    w->inflight = 0;
    delay_drop(w);
    canvas_wait_drop(w);
    chord_drop(w);
    w->returned = false;
    w->paused = false;
    w->reconsume_at = 0;
    w->chord_ready = false;
    w->lease_ready = false;
    task__topo_forget(&w->topo);
    task__conn_close(w->conn);
    w->conn = NULL;
}

static void start_draining(struct worker *w)
{
    w->state = W_DRAINING;
    w->drain_deadline = task__now_mono() + w->cfg->shutdown_grace_s;
    notify_send("STOPPING=1");
    /* A blocked broker reads nothing: basic.cancel would wait out its call timeout and drop
     * the connection, and the outcomes of the tasks still running with it (outside attack:
     * exit 0 after 5 s, every running task run again by the next worker). */
    if (w->blocked)
        w->cancel_on_unblock = true;
    else
        consumer_cancel(w);
    /* What has not started goes back to the queue now; another worker will run it. */
    for (size_t i = 0; w->conn != NULL && i < w->nheld; i++)
        (void)task__conn_reject(w->conn, CH_CONSUME, w->held[i].d.tag, true);
    for (size_t i = 0; i < w->nheld; i++)
        task__delivery_free(&w->held[i].d);
    w->nheld = 0;
    consumer_requeue_waiting(w);
    log_event(LV_INFO, 0, "worker_draining", "running=%d grace_s=%g", pool_running(w),
              w->cfg->shutdown_grace_s);
}

/* A pidbox shutdown (control.c asks; the loop acts once the request is answered). */
static void shutdown_if_asked(struct worker *w)
{
    if (!w->shutdown_asked)
        return;
    w->shutdown_asked = false;
    if (w->state == W_RUNNING)
        start_draining(w);
}

static void stop_cold(struct worker *w, const char *why)
{
    log_event(LV_WARN, 0, "shutdown_cold", "reason=%s running=%d", why, pool_running(w));
    pool_stop(w, true);
    w->state = W_STOPPED;
}

static void warn_kept(const char *path, void *ud)
{
    (void)ud;
    log_event(LV_WARN, 0, "reload_needs_restart", "option=%s action=\"old value kept\"", path);
}

/* SIGHUP: a new config replaces the reloadable options only if it loads cleanly (nginx keeps
 * the old cycle the same way); the rest need a restart and keep their values. */
static void reload(struct worker *w)
{
    if (w->reload == NULL)
        return;
    task_error err = {0};
    task_config *next = w->reload(w->reload_ud, &err);
    if (next == NULL) {
        log_event(LV_ERROR, err.code, "reload_failed", "detail=\"%s\" action=\"old config kept\"",
                  err.msg);
        return;
    }
    int changed = task__config_reload(w->cfg, next, warn_kept, w);
    task_config_free(next);
    (void)log_set_level(w->cfg->log_level);
    w->limits.max_body_bytes = (size_t)w->cfg->max_message_bytes;
    w->limits.max_depth = w->cfg->json_max_depth;
    log_event(LV_INFO, 0, "config_reloaded", "changed=%d", changed);
}

static void on_signal(struct worker *w)
{
    struct signalfd_siginfo si;
    while (read(w->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        int sig = (int)si.ssi_signo;
        if (sig != SIGCHLD)
            beat_child_signal(sig); /* --beat: the scheduler reloads and stops with us */
        if (sig == SIGCHLD) {
            pool_reap(w);
        } else if (sig == SIGHUP) {
            reload(w);
        } else if (w->state == W_RUNNING) {
            log_event(LV_INFO, 0, "shutdown_warm", "signal=%s", sigabbrev_np(sig));
            start_draining(w);
        } else if (w->state == W_DRAINING) {
            stop_cold(w, "second signal");
        }
    }
}

static void on_frame(struct worker *w, amqp_frame_t *f)
{
    if (f->frame_type != AMQP_FRAME_METHOD || delay_on_frame(w, f) ||
        canvas_wait_on_frame(w, f) || chord_on_frame(w, f))
        return;
    switch (f->payload.method.id) {
    case AMQP_BASIC_DELIVER_METHOD: {
        struct task__delivery d;
        if (task__conn_read_delivery(w->conn, f, &d) != 0)
            return;
        if (d.channel != CH_CONSUME) {
            control_on_delivery(w, &d);
            task__delivery_free(&d);
            return;
        }
        if (w->state != W_RUNNING) {
            (void)task__conn_reject(w->conn, CH_CONSUME, d.tag, true);
            task__delivery_free(&d);
            return;
        }
        consumer_on_delivery(w, &d);
        return;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD: {
        const amqp_connection_blocked_t *b = f->payload.method.decoded;
        if (!w->blocked) {
            w->blocked = true;
            w->blocked_since = task__now_mono();
            w->n_blocked++;
        }
        char why[201];
        snprintf(why, sizeof(why), "%.*s", (int)(b->reason.len > 200 ? 200 : b->reason.len),
                 (const char *)b->reason.bytes);
        log_event(LV_WARN, 0, "broker_blocked", "reason=%s action=\"running tasks go on; their "
                  "outcomes wait here until the broker takes them\"", log_v(why));
        return;
    }
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        if (w->blocked) {
            double s = task__now_mono() - w->blocked_since;
            w->blocked_total_s += s;
            w->blocked = false;
            log_event(LV_INFO, 0, "broker_unblocked", "blocked_s=%.1f held=%zu", s, w->nheld);
            if (w->cancel_on_unblock && w->state == W_DRAINING)
                consumer_cancel(w);
            w->cancel_on_unblock = false;
            outcome_replay(w);
            pool_drain_backlog(w);
        }
        return;
    case AMQP_BASIC_RETURN_METHOD:
        /* Its header and body frames follow; on_frame skips them. */
        if (f->channel == CH_PUBLISH) {
            pub_on_return(w);
            delay_forget(w); /* its queues may be gone too: declared again at the next use */
        }
        return;
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *a = f->payload.method.decoded;
        pub_on_confirm(w, a->delivery_tag, a->multiple, false);
        return;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *n = f->payload.method.decoded;
        pub_on_confirm(w, n->delivery_tag, n->multiple, true);
        return;
    }
    case AMQP_BASIC_CANCEL_METHOD: {
        const amqp_basic_cancel_t *cn = f->payload.method.decoded;
        char tag[256];
        snprintf(tag, sizeof(tag), "%.*s", (int)cn->consumer_tag.len,
                 (const char *)cn->consumer_tag.bytes);
        if (f->channel == CH_CONSUME)
            consumer_lost(w, tag);
        return;
    }
    default:
        return;
    }
}

/* Handle frames until none is ready. Returns 0 or a negative code when the connection broke. */
static int pump(struct worker *w)
{
    for (int i = 0; i < FRAMES_PER_TURN; i++) {
        amqp_frame_t f;
        uint16_t closed = 0;
        int rc = task__conn_next_frame(w->conn, &f, 0, &closed);
        if (rc == 0)
            break;
        if (rc == TASK_EBROKER && closed == CH_DELAY && task__conn_alive(w->conn)) {
            delay_on_closed(w); /* a refusal of the cascade: that channel only */
            continue;
        }
        if (rc == TASK_EBROKER && closed == CH_CANVAS && task__conn_alive(w->conn)) {
            canvas_wait_on_closed(w); /* a follow-up's queue refused */
            continue;
        }
        if (rc == TASK_EBROKER && closed == CH_CHORD && task__conn_alive(w->conn)) {
            chord_on_closed(w); /* a lock held elsewhere (405), or a step refused */
            continue;
        }
        if (rc < 0) {
            log_event(LV_ERROR, rc, "broker_error", "detail=\"%s\"", task__conn_errmsg(w->conn));
            return rc;
        }
        on_frame(w, &f);
    }
    task__conn_release_buffers(w->conn);
    return 0;
}

static int min_timeout(int a, int b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

/* One turn of the loop. Returns 0, or a negative code when the connection broke. */
/* Once a second, while the broker takes our writes: leases of long tasks taken and renewed,
 * finished orphans whose redelivery never came published, and what waits here (held, backlog,
 * rate wait) past worker.give_back_after given back. */
static void every_second(struct worker *w)
{
    double now = task__now_mono();
    if (!task__conn_alive(w->conn) || w->blocked || now < w->second_at)
        return;
    w->second_at = now + 1;
    lease_tick(w, now);
    outcome_orphans_expired(w, orphan_take_expired(w));
    consumer_give_back(w, now - w->cfg->give_back_after_s);
}

static int turn_inner(struct worker *w)
{
    int timeout = min_timeout(consumer_next_due_ms(w), pool_next_deadline_ms(w));
    timeout = min_timeout(timeout, rate_next_ms(w));
    timeout = min_timeout(timeout, mhttp_next_ms(w->mhttp));
    timeout = min_timeout(timeout, pub_stream_next_ms(w));
    timeout = min_timeout(timeout, outcome_started_next_ms(w));
    timeout = min_timeout(timeout, 1000);
    struct pollfd *pfd = w->pfd;
    int *map = w->pfd_child;
    int n = 0;
    pfd[n++] = (struct pollfd){.fd = w->sigfd, .events = POLLIN};
    int amqp_idx = -1;
    if (w->conn != NULL) {
        amqp_idx = n;
        pfd[n++] = (struct pollfd){.fd = task__conn_fd(w->conn), .events = POLLIN};
    }
    int first_child = n;
    for (int i = 0; i < w->pool.n; i++) {
        if (w->pool.ch[i].pid > 0) {
            map[n - first_child] = i;
            short ev = POLLIN | (ipc_pending(&w->pool.ch[i].out) ? POLLOUT : 0);
            pfd[n++] = (struct pollfd){.fd = w->pool.ch[i].fd, .events = ev};
        }
    }
    int first_http = n;
    n += mhttp_pollfds(w->mhttp, pfd + n, MHTTP_MAX_FDS);
    if (w->conn != NULL && task__conn_has_buffered(w->conn))
        timeout = 0;
    int ready = poll(pfd, (nfds_t)n, timeout);
    if (ready < 0 && errno != EINTR)
        return -errno;
    /* What this turn publishes and acks leaves in as few packets as it fills (turn()). */
    task__conn_cork(w->conn, true);
    /* Also with nothing ready: it drops clients past their deadline. */
    mhttp_on_poll(w->mhttp, pfd + first_http, ready > 0 ? n - first_http : 0);
    for (int k = first_child; ready > 0 && k < first_http; k++) {
        if (pfd[k].revents & POLLOUT)
            pool_on_writable(w, map[k - first_child]);
        if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
            pool_on_readable(w, map[k - first_child]);
    }
    if (ready > 0 && (pfd[0].revents & POLLIN))
        on_signal(w);
    pool_check_limits(w);
    autoscale_tick(w);
    if (w->conn == NULL)
        return 0;
    every_second(w);
    (void)amqp_idx;
    /* Also with nothing readable: rabbitmq-c sends heartbeats only from inside its reads. */
    int rc = pump(w);
    if (rc != 0)
        return rc;
    shutdown_if_asked(w);
    consumer_release_due(w);
    consumer_reconsume(w);
    consumer_release_rate(w);
    window_turn(w);
    outcome_started_due(w);
    events_tick(w);
    pub_flush_stream(w);
    return 0;
}

/* One loop turn: wait for something (poll), then handle all of it. Writes to the broker are
 * corked while it is handled and go out together at its end: per task a result, a stream
 * record, an ack and a STARTED state are a handful of small frames, and one packet for many of
 * them costs the kernel and the broker much less than one each. */
static int turn(struct worker *w)
{
    int rc = turn_inner(w);
    pool_flush(w);
    task__conn_cork(w->conn, false);
    return rc;
}

static void sleep_backoff(struct worker *w, int attempt)
{
    double base = 0.2 * (1 << (attempt > 6 ? 6 : attempt));
    double s = base * (0.5 + 0.5 * ((double)random() / RAND_MAX));
    double until = task__now_mono() + s;
    /* Keep serving children and signals while the broker is away. */
    while (w->state != W_STOPPED && task__now_mono() < until)
        (void)turn(w);
}

/* The loop while draining: done when nothing runs and every result is confirmed (outcomes
 * held for a blocked broker wait for the unblock, up to the grace period). */
static bool drained(struct worker *w)
{
    return pool_idle(w) && (w->conn == NULL || (w->inflight == 0 && w->pend_len == 0 &&
                                                w->stashed == NULL));
}

int worker_run(struct worker *w)
{
    int attempt = 0;
    bool ready_sent = false;
    while (w->state != W_STOPPED) {
        if (w->conn == NULL && w->state == W_RUNNING) {
            int rc = connect_broker(w);
            /* A refusal at start is a configuration error; after a working session it is the
             * cluster changing under us (a queue's node down): keep retrying. */
            if (rc == TASK_EAUTH || rc == TASK_EINVAL || (rc == TASK_EBROKER && !ready_sent)) {
                drop_session(w);
                stop_cold(w, "broker refused");
                pool_reap(w);
                return rc;
            }
            if (rc != 0) {
                drop_session(w);
                sleep_backoff(w, attempt++);
                continue;
            }
            attempt = 0;
            log_event(LV_INFO, 0, "worker_ready", "hostname=%s queues=%d tasks=%d procs=%d "
                      "threads=%d", w->hostname, w->cfg->queues.n, task_registry_count(),
                      w->pool.n, w->pool.threads);
            events_worker(w, "worker-online");
            outcome_replay(w); /* leased tasks that ended while the broker was away */
            if (!ready_sent)
                notify_send("READY=1");
            ready_sent = true;
        }
        if (turn(w) != 0)
            drop_session(w);
        if (w->state == W_DRAINING) {
            if (drained(w) && w->stashed != NULL) {
                /* No broker to take them (nothing reconnects while draining): not a warm
                 * stop, whose exit status says every outcome was published. */
                stop_cold(w, "outcomes not published");
                break;
            }
            if (drained(w))
                break;
            if (task__now_mono() > w->drain_deadline)
                stop_cold(w, "grace period over");
        }
    }
    /* Warm: children finish (they are idle) and exit; cold: they were killed. */
    pool_stop(w, w->state == W_STOPPED);
    double until = task__now_mono() + 5;
    while (!pool_all_exited(w) && task__now_mono() < until) {
        usleep(10000);
        pool_reap(w);
    }
    if (w->conn != NULL) {
        events_worker(w, "worker-offline");
        drop_session(w);
    }
    log_event(LV_INFO, 0, "worker_stopped",
              "received=%llu succeeded=%llu failed=%llu retried=%llu quarantined=%llu",
              (unsigned long long)w->n_received, (unsigned long long)w->n_succeeded,
              (unsigned long long)w->n_failed, (unsigned long long)w->n_retried,
              (unsigned long long)w->n_quarantined);
    return 0;
}

void worker_free(struct worker *w)
{
    if (w->conn != NULL)
        drop_session(w);
    for (int i = 0; i < w->pool.n; i++) {
        if (w->pool.ch[i].pid > 0)
            kill(w->pool.ch[i].pid, SIGKILL);
        ipc_buf_free(&w->pool.ch[i].in);
        ipc_out_free(&w->pool.ch[i].out);
    }
    free(w->pool.ch);
    if (w->pool.crash != NULL)
        munmap(w->pool.crash, 2 * (size_t)w->pool.cap * sizeof(*w->pool.crash));
    lease_free(w);
    delay_free(w);
    canvas_wait_free(w);
    orphan_free(w);
    task__replies_free(&w->revoked);
    task__topo_free(&w->topo);
    msgauth_free(w);
    rate_free(w);
    free(w->pend);
    free(w->held);
    free(w->pfd);
    free(w->pfd_child);
    if (w->sigfd >= 0)
        close(w->sigfd);
    metrics_stop(w);
}
