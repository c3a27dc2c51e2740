/* beat.c - the scheduler's loop: connect, follow the leadership token, fire due ticks. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <task/client.h>
#include <json-c/json.h>
#include "beat.h"
#include "ended.h"
#include "beat_entry.h"
#include "beat_leader.h"
#include "beat_store.h"
#include "conn.h"
#include "internal.h"
#include "log.h"

#define BEAT_CH_GET 3
#define PROBE_EVERY_S 1.0      /* a leader asks the broker this often whether it still hears */
#define STATE_EVERY_S 1.0

static volatile sig_atomic_t got_stop, got_hup;
static pid_t child_pid;

struct beat {
    const struct beat_opts *o;
    struct beat_schedule sched;
    struct task__conn *conn;
    task_client *client;
    struct beat_leader l;
    double last_heard;     /* task__now_mono() of the last answer from the broker */
    double fence_s;        /* send only while last_heard is younger than this */
    double state_at, probe_at;
    int64_t *next_ms;      /* per entry: next tick, for the state */
    char hostname[256];
};

static void on_sig(int sig)
{
    if (sig == SIGHUP)
        got_hup = 1;
    else
        got_stop = 1;
}

static void install_signals(void)
{
    struct sigaction sa = {.sa_handler = on_sig};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigaction(SIGPIPE, &ign, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

int beat_check(const char *const *paths)
{
    struct beat_schedule s;
    task_error err = {0};
    if (beat_schedule_load(&s, paths, &err) != 0) {
        fprintf(stderr, "taskd: %s\n", err.msg);
        return -1;
    }
    if (s.n == 0)
        fprintf(stderr, "taskd: warning: --beat without entries (beat.entries in taskd.conf)\n");
    beat_schedule_free(&s);
    return 0;
}

static void disconnect(struct beat *b, const char *why)
{
    if (b->conn != NULL) {
        log_event(b->l.leading ? LV_WARN : LV_INFO, 0, "beat_disconnect", "leading=%d why=%s",
                  b->l.leading, log_v(why));
        task__conn_close(b->conn);
    }
    b->conn = NULL;
    memset(&b->l, 0, sizeof(b->l));
    for (int i = 0; i < b->sched.n; i++)
        b->sched.v[i].last_known = false; /* read again from the store when leading again */
}

static int connect_broker(struct beat *b)
{
    struct task__conn_opts co = {.urls = &b->o->cfg->broker_urls,
                                 .connect_timeout_s = b->o->cfg->connect_timeout_s,
                                 .heartbeat_s = b->o->cfg->heartbeat_s,
                                 .name = "taskd beat"};
    task_error err = {0};
    int rc = task__conn_open(&b->conn, &co, &err);
    if (rc != 0) {
        log_event(LV_WARN, rc, "beat_connect_failed", "detail=%s", log_v(err.msg));
        return rc;
    }
    rc = beat_leader_join(&b->l, b->conn);
    b->l.rotate_s = b->sched.token_rotate_s;
    if (rc == 0)
        rc = task__conn_channel_open(b->conn, BEAT_CH_GET);
    if (rc != 0) {
        log_event(LV_WARN, rc, "beat_join_failed", "detail=%s",
                  log_v(task__conn_errmsg(b->conn)));
        disconnect(b, "join failed");
        return rc;
    }
    b->last_heard = task__now_mono();
    log_event(LV_INFO, 0, "beat_standby", "broker=%s queue=%s", log_v(task__conn_where(b->conn)),
              BEAT_LEADER_QUEUE);
    return 0;
}

/* Handle one frame from the broker; *acked gets the confirm number of a basic.ack on
 * BEAT_CH_PUB. */
static int on_frame(struct beat *b, amqp_frame_t *f, uint64_t *acked)
{
    b->last_heard = task__now_mono();
    if (f->frame_type != AMQP_FRAME_METHOD)
        return 0;
    amqp_method_number_t id = f->payload.method.id;
    if (id == AMQP_BASIC_DELIVER_METHOD && f->channel == BEAT_CH_TOKEN) {
        struct task__delivery d;
        int rc = task__conn_read_delivery(b->conn, f, &d);
        if (rc != 0)
            return rc;
        bool was = b->l.leading;
        rc = beat_leader_on_token(&b->l, b->conn, d.tag);
        task__delivery_free(&d);
        if (rc == 0 && !was)
            log_event(LV_INFO, 0, "beat_leading", "hostname=%s", log_v(b->hostname));
        return rc;
    }
    if (id == AMQP_BASIC_ACK_METHOD && f->channel == BEAT_CH_PUB) {
        const amqp_basic_ack_t *a = f->payload.method.decoded;
        *acked = a->delivery_tag;
        return 0;
    }
    if (id == AMQP_BASIC_NACK_METHOD && f->channel == BEAT_CH_PUB)
        return task__conn_fail(b->conn, TASK_ENACK, "the broker refused a beat message");
    return 0;
}

/* Read frames for up to timeout_ms, or until the confirm of `seq` (0: none awaited). */
static int pump(struct beat *b, int timeout_ms, uint64_t seq)
{
    double until = task__now_mono() + timeout_ms / 1000.0;
    uint64_t acked = 0;
    for (;;) {
        int left = (int)((until - task__now_mono()) * 1000);
        if (left < 0)
            left = 0;
        amqp_frame_t f;
        uint16_t closed = 0;
        int rc = task__conn_next_frame(b->conn, &f, left, &closed);
        if (rc < 0)
            return rc;
        if (rc == 1 && (rc = on_frame(b, &f, &acked)) != 0)
            return rc;
        if (seq != 0 && acked >= seq)
            return 0;
        if (rc == 0 && left == 0 && !task__conn_has_buffered(b->conn))
            return seq != 0 ? TASK_ETIMEDOUT : 0;
        if (got_stop || (got_hup && seq == 0))
            return 0;
    }
}

static int publish_confirmed(struct beat *b, const char *queue, const char *body)
{
    uint64_t seq;
    int rc = beat_publish(&b->l, b->conn, queue, body, &seq);
    if (rc == 0)
        rc = pump(b, (int)(b->fence_s * 1000), seq);
    return rc;
}

static bool fenced(const struct beat *b)
{
    return task__now_mono() - b->last_heard >= b->fence_s;
}

static int load_last(struct beat *b, struct beat_entry *e, int64_t now_ms)
{
    bool found = false;
    int rc = beat_store_read(b->conn, BEAT_CH_GET, e->name, &e->last_ms, &found);
    if (rc != 0)
        return rc;
    if (!found)
        e->last_ms = now_ms; /* never fired anywhere: start with the next tick */
    e->last_known = true;
    e->last_fired = found;
    b->next_ms[e - b->sched.v] = 0; /* computed again from the stored tick */
    e->check_next = found;
    b->last_heard = task__now_mono();
    log_event(LV_INFO, 0, "beat_entry_loaded", "entry=%s last_tick_ms=%lld stored=%d",
              log_v(e->name), (long long)e->last_ms, found);
    return 0;
}

/* Store tick_ms as the entry's last (after the broker confirmed its task). */
static int record(struct beat *b, struct beat_entry *e, int64_t tick_ms, const char *id,
                  const char *event)
{
    json_object *rec = json_object_new_object();
    json_object_object_add(rec, "entry", json_object_new_string(e->name));
    json_object_object_add(rec, "tick_ms", json_object_new_int64(tick_ms));
    json_object_object_add(rec, "id", json_object_new_string(id));
    json_object_object_add(rec, "by", json_object_new_string(b->hostname));
    json_object_object_add(rec, "at", json_object_new_double(task__now_wall()));
    char q[300];
    beat_store_queue(e->name, q, sizeof(q));
    int rc = publish_confirmed(b, q, json_object_to_json_string(rec));
    json_object_put(rec);
    if (rc != 0)
        return rc;
    e->last_ms = tick_ms;
    e->last_fired = true;
    e->check_next = false;
    log_event(LV_INFO, 0, event, "entry=%s task=%s task_id=%s tick_ms=%lld late_ms=%lld",
              log_v(e->name), log_v(e->task), id, (long long)tick_ms,
              (long long)((int64_t)(task__now_wall() * 1000) - tick_ms));
    return 0;
}

/* The first tick after the stored one may have been sent by a leader that died before it
 * stored it: when the results stream has a state for its id, it was. (A copy still waiting in
 * its queue is not seen: the worker drops a second copy of an id that ended there.) */
static bool sent_before(struct beat *b, const struct beat_entry *e, const char *id)
{
    task_state st = TASK_STATE_PENDING;
    json_object *res = NULL;
    int rc = task_lookup(b->client, id, 0, &st, &res);
    json_object_put(res);
    if (rc != 0)
        log_event(LV_WARN, rc, "beat_lookup_failed", "entry=%s task_id=%s detail=%s",
                  log_v(e->name), id, log_v(task_client_errmsg(b->client)));
    return rc == 0 && st != TASK_STATE_PENDING;
}

static int fire(struct beat *b, struct beat_entry *e, int64_t tick_ms)
{
    if (fenced(b)) {
        log_event(LV_WARN, 0, "beat_fenced", "entry=%s silent_s=%.2f fence_s=%.2f",
                  log_v(e->name), task__now_mono() - b->last_heard, b->fence_s);
        return TASK_ETIMEDOUT;
    }
    char id[37];
    beat_tick_id(e->name, tick_ms, id);
    if (e->check_next && tick_ms == beat_entry_next(e, e->last_ms) && sent_before(b, e, id))
        return record(b, e, tick_ms, id, "beat_tick_already_sent");
    e->check_next = false;
    task_send_opts so = {.task_id = id, .priority = e->priority, .expires_s = e->expires_s,
                         .queue = e->queue[0] ? e->queue : NULL,
                         .parent_id = ENDED_BEAT_PARENT}; /* a copy of it is dropped (ended.h) */
    task_id got;
    int rc = task_send(b->client, e->task, e->args, e->kwargs, &so, &got);
    if (rc != 0) {
        log_event(LV_WARN, rc, "beat_send_failed", "entry=%s task_id=%s detail=%s",
                  log_v(e->name), id, log_v(task_client_errmsg(b->client)));
        return rc;
    }
    /* Recorded only once the broker has the task: dying in between sends this tick again from
     * the next leader, under the same id (the worker runs an id that ended once). */
    return record(b, e, tick_ms, id, "beat_tick_sent");
}

static int fire_entry(struct beat *b, struct beat_entry *e, int64_t now_ms, int64_t *next)
{
    static int64_t ticks[BEAT_DUE_MAX];
    struct beat_due due;
    int n = beat_entry_due(e, e->last_ms, now_ms, ticks, BEAT_DUE_MAX, &due);
    if (due.passed_ms > 0) {
        log_event(LV_INFO, 0, "beat_missed", "entry=%s policy=%s up_to_tick_ms=%lld sent_once=%d",
                  log_v(e->name), e->missed == BEAT_MISSED_ONCE ? "once" : "skip",
                  (long long)due.passed_ms, due.once);
        if (!due.once)
            e->last_ms = due.passed_ms; /* not stored: the next leader would skip them too */
    }
    for (int i = 0; i < n; i++) {
        int rc = fire(b, e, ticks[i]);
        if (rc != 0)
            return rc;
    }
    *next = due.next_ms;
    return 0;
}

static int fire_due(struct beat *b, int64_t *soonest)
{
    *soonest = -1;
    for (int i = 0; i < b->sched.n && !got_stop; i++) {
        struct beat_entry *e = &b->sched.v[i];
        int64_t now_ms = (int64_t)(task__now_wall() * 1000);
        int rc = e->last_known ? 0 : load_last(b, e, now_ms);
        /* next_ms was computed from the current last tick: not due, nothing to compute (a
         * cron entry's next time costs a search and a TZ switch). */
        bool waiting = e->last_known && b->next_ms[i] > now_ms;
        if (rc == 0 && !waiting)
            rc = fire_entry(b, e, now_ms, &b->next_ms[i]);
        if (rc != 0)
            return rc;
        if (b->next_ms[i] > 0 && (*soonest < 0 || b->next_ms[i] < *soonest))
            *soonest = b->next_ms[i];
    }
    return 0;
}

static void publish_state(struct beat *b)
{
    json_object *st = json_object_new_object(), *arr = json_object_new_array();
    json_object_object_add(st, "leader", json_object_new_string(b->hostname));
    json_object_object_add(st, "pid", json_object_new_int(getpid()));
    json_object_object_add(st, "leading_since", json_object_new_double(b->l.since_wall));
    json_object_object_add(st, "at", json_object_new_double(task__now_wall()));
    for (int i = 0; i < b->sched.n; i++) {
        const struct beat_entry *e = &b->sched.v[i];
        json_object *o = json_object_new_object();
        char sched[200], id[37] = "";
        json_object_object_add(o, "name", json_object_new_string(e->name));
        json_object_object_add(o, "task", json_object_new_string(e->task));
        json_object_object_add(o, "schedule",
                               json_object_new_string(beat_entry_describe(e, sched, sizeof(sched))));
        json_object_object_add(o, "queue", json_object_new_string(e->queue));
        if (e->last_known && e->last_fired) {
            beat_tick_id(e->name, e->last_ms, id);
            json_object_object_add(o, "last_run", json_object_new_double(e->last_ms / 1000.0));
            json_object_object_add(o, "last_id", json_object_new_string(id));
        }
        if (b->next_ms[i] > 0)
            json_object_object_add(o, "next_run", json_object_new_double(b->next_ms[i] / 1000.0));
        json_object_array_add(arr, o);
    }
    json_object_object_add(st, "entries", arr);
    int rc = beat_store_declare(b->conn, BEAT_CH_PUB, BEAT_STATE_QUEUE);
    uint64_t seq;
    if (rc == 0)
        rc = beat_publish(&b->l, b->conn, BEAT_STATE_QUEUE, json_object_to_json_string(st), &seq);
    json_object_put(st);
    if (rc != 0)
        log_event(LV_WARN, rc, "beat_state_failed", "detail=%s", log_v(task__conn_errmsg(b->conn)));
}

/* Keep what is known of the entries that stay (by name); new ones are read from the store. */
static void reload(struct beat *b)
{
    got_hup = 0;
    task_error err = {0};
    if (b->o->reload != NULL) {
        task_config *next = b->o->reload(b->o->reload_ud, &err);
        if (next == NULL) {
            log_event(LV_ERROR, err.code, "beat_reload_failed", "detail=%s action=\"old "
                      "schedule kept\"", log_v(err.msg));
            return;
        }
        task_config_free(next); /* only checked: the beat keeps its connection settings */
    }
    struct beat_schedule s;
    if (beat_schedule_load(&s, b->o->paths, &err) != 0) {
        log_event(LV_ERROR, err.code, "beat_reload_failed", "detail=%s action=\"old schedule "
                  "kept\"", log_v(err.msg));
        return;
    }
    int64_t *next = calloc((size_t)s.n + 1, sizeof(*next));
    if (next == NULL) {
        beat_schedule_free(&s);
        return;
    }
    for (int i = 0; i < s.n; i++) {
        for (int j = 0; j < b->sched.n; j++) {
            if (strcmp(s.v[i].name, b->sched.v[j].name) == 0) {
                s.v[i].last_ms = b->sched.v[j].last_ms;
                s.v[i].last_known = b->sched.v[j].last_known;
                s.v[i].last_fired = b->sched.v[j].last_fired;
            }
        }
    }
    beat_schedule_free(&b->sched);
    free(b->next_ms);
    b->sched = s;
    b->next_ms = next;
    b->l.rotate_s = s.token_rotate_s;
    log_event(LV_INFO, 0, "beat_reloaded", "entries=%d", s.n);
}

/* One turn of a leader: make sure the broker still answers, fire what is due, keep the token
 * and the state fresh. Returns how long to wait for the next turn (ms), or a TASK_E*. */
static int lead(struct beat *b, int *wait_ms)
{
    double now = task__now_mono();
    if (now >= b->probe_at) {
        b->probe_at = now + PROBE_EVERY_S;
        if (beat_leader_instances(b->conn) < 0)
            return task__conn_errcode(b->conn) ? task__conn_errcode(b->conn) : TASK_ECLOSED;
        b->last_heard = task__now_mono();
    }
    int64_t soonest;
    int rc = fire_due(b, &soonest);
    if (rc != 0)
        return rc;
    uint64_t seq, old = b->l.token_tag;
    rc = beat_leader_rotate(&b->l, b->conn, &seq);
    if (rc == 0 && seq != 0 && (rc = pump(b, (int)(b->fence_s * 1000), seq)) == 0) {
        rc = beat_leader_rotated(&b->l, b->conn, old);
        log_event(LV_INFO, rc, "beat_token_rotated", "queue=%s", BEAT_LEADER_QUEUE);
    }
    if (rc != 0)
        return rc;
    if (task__now_mono() >= b->state_at) {
        b->state_at = task__now_mono() + STATE_EVERY_S;
        publish_state(b);
    }
    *wait_ms = 200;
    if (soonest > 0) {
        int64_t ms = soonest - (int64_t)(task__now_wall() * 1000);
        *wait_ms = ms < 0 ? 0 : ms < 200 ? (int)ms : 200;
    }
    return 0;
}

static int make_client(struct beat *b)
{
    if (b->client != NULL)
        return 0;
    task_error err = {0};
    b->client = task_client_new(b->o->cfg, &err);
    if (b->client == NULL) {
        log_event(LV_WARN, err.code, "beat_client_failed", "detail=%s", log_v(err.msg));
        return err.code ? err.code : TASK_ECONNECT;
    }
    return 0;
}

static void setup(struct beat *b, const struct beat_opts *o)
{
    memset(b, 0, sizeof(*b));
    b->o = o;
    const task_config *cfg = o->cfg;
    if (cfg->hostname != NULL && cfg->hostname[0] != '\0') {
        snprintf(b->hostname, sizeof(b->hostname), "%s", cfg->hostname);
    } else {
        char host[200] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(b->hostname, sizeof(b->hostname), "beat%d@%s", (int)getpid(), host);
    }
    /* Half a heartbeat: the broker waits a whole one before it hands the token on. */
    b->fence_s = cfg->heartbeat_s > 0 ? cfg->heartbeat_s / 2.0 : 30.0;
    /* A send that retries past the fence could land after another leader sent the tick. */
    char v[32];
    snprintf(v, sizeof(v), "%.3f", b->fence_s / 2);
    task_error err = {0};
    if (cfg->send_timeout_s > b->fence_s / 2)
        (void)task_config_set(o->cfg, "client.send_timeout", v, "beat fence", &err);
}

int beat_run(const struct beat_opts *o)
{
    static struct beat b;
    setup(&b, o);
    task_error err = {0};
    if (beat_schedule_load(&b.sched, o->paths, &err) != 0) {
        fprintf(stderr, "taskd: %s\n", err.msg);
        return 2;
    }
    b.next_ms = calloc((size_t)b.sched.n + 1, sizeof(*b.next_ms));
    if (b.next_ms == NULL)
        return 2;
    install_signals();
    log_event(LV_INFO, 0, "beat_started", "hostname=%s entries=%d fence_s=%.1f",
              log_v(b.hostname), b.sched.n, b.fence_s);
    double backoff = 0.5;
    while (!got_stop) {
        if (got_hup)
            reload(&b);
        if (b.sched.n == 0) {
            /* Nothing to send: stay out of the election, or a leader with no entries would hold
             * the token while instances with entries wait (outside attack). */
            if (b.conn != NULL)
                disconnect(&b, "no entries");
            usleep(200000);
            continue;
        }
        if (b.conn == NULL && (connect_broker(&b) != 0 || make_client(&b) != 0)) {
            if (b.conn != NULL)
                disconnect(&b, "no client connection");
            usleep((useconds_t)(backoff * 1e6));
            backoff = backoff < 5 ? backoff * 2 : 5;
            continue;
        }
        backoff = 0.5;
        int wait_ms = 200, rc = 0;
        if (b.l.leading)
            rc = lead(&b, &wait_ms);
        if (rc == 0)
            rc = pump(&b, wait_ms, 0);
        if (rc != 0)
            disconnect(&b, task__conn_errmsg(b.conn)[0] ? task__conn_errmsg(b.conn)
                                                        : task_strerror(rc));
    }
    log_event(LV_INFO, 0, "beat_stopped", "hostname=%s leading=%d", log_v(b.hostname),
              b.l.leading);
    if (b.conn != NULL)
        task__conn_close(b.conn);
    task_client_free(b.client);
    beat_schedule_free(&b.sched);
    free(b.next_ms);
    return 0;
}

int beat_fork(const struct beat_opts *o)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid > 0) {
        child_pid = pid;
        log_event(LV_INFO, 0, "beat_forked", "pid=%d", (int)pid);
        return 0;
    }
    /* The beat must not outlive its worker (nor keep firing for a dead one). */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(0);
    _exit(beat_run(o));
}

void beat_child_reaped(pid_t pid, int status)
{
    if (child_pid <= 0 || pid != child_pid)
        return;
    child_pid = 0;
    if (WIFSIGNALED(status))
        log_event(LV_ERROR, 0, "beat_exited", "pid=%d signal=%s action=\"no scheduler here until "
                  "taskd restarts\"", (int)pid, sigabbrev_np(WTERMSIG(status)));
    else
        log_event(WEXITSTATUS(status) ? LV_ERROR : LV_INFO, 0, "beat_exited", "pid=%d status=%d",
                  (int)pid, WEXITSTATUS(status));
}

void beat_child_signal(int sig)
{
    if (child_pid > 0)
        (void)kill(child_pid, sig);
}
