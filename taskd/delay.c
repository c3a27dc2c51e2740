/* delay.c - see delay.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "declare.h"
#include "delay.h"
#include "log.h"
#include "msgcopy.h"
#include "publisher.h"
#include "worker.h"

static void level_name(int level, char *buf, size_t size)
{
    snprintf(buf, size, "taskd.delay.%d", DELAY_NAME_BASE + level);
}

/* A binding pattern for `level`: stars for the higher levels, then the bit, then '#'. */
static void pattern(int level, char bit, char *buf, size_t size)
{
    size_t n = 0;
    for (int i = DELAY_LEVELS - 1; i > level && n + 2 < size; i--) {
        buf[n++] = '*';
        buf[n++] = '.';
    }
    snprintf(buf + n, size - n, "%c.#", bit);
}

void delay_routing_key(uint64_t seconds, const char *queue, char *buf, size_t size)
{
    if (seconds >= (1ull << DELAY_LEVELS))
        seconds = (1ull << DELAY_LEVELS) - 1;
    size_t n = 0;
    for (int level = DELAY_LEVELS - 1; level >= 0 && n + 2 < size; level--) {
        buf[n++] = (seconds >> level) & 1 ? '1' : '0';
        buf[n++] = '.';
    }
    snprintf(buf + n, size - n, "%s", queue);
}

static int check(struct worker *w, const char *what)
{
    return task__conn_check(w->conn, amqp_get_rpc_reply(task__conn_amqp(w->conn)), what);
}

/* Sends one method on CH_DELAY without waiting for its -ok; counts it in *n. */
static int send(struct worker *w, amqp_method_number_t id, void *m, int *n)
{
    if (amqp_send_method(task__conn_amqp(w->conn), CH_DELAY, id, m) != AMQP_STATUS_OK)
        return task__conn_fail(w->conn, TASK_ECLOSED, "delay cascade: write failed");
    (*n)++;
    return 0;
}

static int send_exchange(struct worker *w, const char *name, int *n)
{
    amqp_exchange_declare_t m = {.exchange = amqp_cstring_bytes(name),
                                 .type = amqp_cstring_bytes("topic"), .durable = 1,
                                 .arguments = amqp_empty_table};
    return send(w, AMQP_EXCHANGE_DECLARE_METHOD, &m, n);
}

static int send_level(struct worker *w, int level, int *n)
{
    char name[40], next[40], pat[128];
    level_name(level, name, sizeof(name));
    if (level > 0)
        level_name(level - 1, next, sizeof(next));
    else
        snprintf(next, sizeof(next), "%s", DELAY_DELIVERY_EXCHANGE);
    int rc = send_exchange(w, name, n);
    /* Quorum queues dead-letter at least once: a classic queue's expiry move has no confirm,
     * and a broker killed in the middle of it lost a quarter of 3000 moving messages here. The
     * at-least-once strategy needs reject-publish (it holds a message its target refuses). */
    amqp_table_entry_t e[5] = {
        {.key = amqp_cstring_bytes("x-message-ttl"),
         .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = (int64_t)(1ll << level) * 1000}},
        {.key = amqp_cstring_bytes("x-dead-letter-exchange"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(next)}},
        {.key = amqp_cstring_bytes("x-queue-type"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("quorum")}},
        {.key = amqp_cstring_bytes("x-dead-letter-strategy"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8,
                   .value.bytes = amqp_cstring_bytes("at-least-once")}},
        {.key = amqp_cstring_bytes("x-overflow"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8,
                   .value.bytes = amqp_cstring_bytes("reject-publish")}},
    };
    amqp_queue_declare_t q = {.queue = amqp_cstring_bytes(name), .durable = 1,
                              .arguments = {.num_entries = 5, .entries = e}};
    if (rc == 0)
        rc = send(w, AMQP_QUEUE_DECLARE_METHOD, &q, n);
    pattern(level, '1', pat, sizeof(pat));
    amqp_queue_bind_t qb = {.queue = amqp_cstring_bytes(name),
                            .exchange = amqp_cstring_bytes(name),
                            .routing_key = amqp_cstring_bytes(pat),
                            .arguments = amqp_empty_table};
    if (rc == 0)
        rc = send(w, AMQP_QUEUE_BIND_METHOD, &qb, n);
    char pat0[128];
    pattern(level, '0', pat0, sizeof(pat0));
    amqp_exchange_bind_t eb = {.destination = amqp_cstring_bytes(next),
                               .source = amqp_cstring_bytes(name),
                               .routing_key = amqp_cstring_bytes(pat0),
                               .arguments = amqp_empty_table};
    if (rc == 0)
        rc = send(w, AMQP_EXCHANGE_BIND_METHOD, &eb, n);
    return rc;
}

int delay_start(struct worker *w)
{
    if (w->conn == NULL || !adecl_may_start(&w->delay, task__now_mono()))
        return 0;
    /* All ~113 declarations leave at once; their -oks come back in one round trip and are
     * counted by the loop (delay_on_frame). Waiting for each in turn blocked the loop for 113
     * round trips at the first countdown. */
    int n = 0;
    int rc = send_exchange(w, DELAY_DELIVERY_EXCHANGE, &n);
    for (int level = 0; rc == 0 && level < DELAY_LEVELS; level++)
        rc = send_level(w, level, &n);
    if (rc != 0) {
        log_event(LV_ERROR, rc, "delay_setup_failed", "detail=\"%s\"", task__conn_errmsg(w->conn));
        return rc; /* the connection is broken: the loop reconnects */
    }
    adecl_sent(&w->delay, n);
    w->delay_started = task__now_mono();
    log_event(LV_DEBUG, 0, "delay_setup_sent", "declarations=%d", n);
    return 0;
}

/* The broker's routing key and the message for a parked delivery, published tied to `job`. */
static int publish(struct worker *w, struct job *job, const struct task__delivery *d, double due)
{
    double left = due - task__now_wall();
    /* Rounded down: it comes back up to a second early and waits out the rest in memory. */
    uint64_t secs = left <= 0 ? 0 : (uint64_t)floor(left);
    char key[512];
    delay_routing_key(secs, d->queue, key, sizeof(key));
    /* Without the broker's own headers: RabbitMQ 3.10's at-least-once dead-lettering crashes
     * on an x-death it did not write (outside attack: [5, "a", null] from a client's headers=
     * stopped every countdown behind it), and a level would hold the message for ever. */
    amqp_basic_properties_t p;
    amqp_table_entry_t *kept;
    int rc = msgcopy_props(&d->msg.properties, NULL, 0, &p, &kept);
    if (rc != 0)
        return rc;
    /* Celery's expiration (from `expires`) would let the broker drop the task while it waits;
     * the expires header is checked when it comes back. */
    p._flags &= ~(amqp_flags_t)AMQP_BASIC_EXPIRATION_FLAG;
    p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.delivery_mode = 2;
    char top[40];
    level_name(DELAY_LEVELS - 1, top, sizeof(top));
    rc = pub_send(w, job, top, key, &p, d->msg.body.bytes, d->msg.body.len);
    free(kept);
    return rc;
}

/* A waiting park is over: its job settles once its publish (if any) is confirmed. */
static void release(struct worker *w, struct job *job)
{
    job->waits--;
    if (job->done && job->waits == 0)
        w->settled(w, job);
}

/* The cascade is declared: the parks that waited for it are published now. */
static void flush(struct worker *w)
{
    size_t n = w->ndwait;
    w->ndwait = 0;
    for (size_t i = 0; i < n; i++) {
        struct job *job = w->dwait[i].job;
        int rc = publish(w, job, &job->d, w->dwait[i].due);
        if (rc != 0) {
            job->nacked = true; /* back to its queue, not lost */
            log_event(LV_WARN, rc, "delay_failed", "task_id=%s action=requeue",
                      log_v(job->m.id));
        }
        release(w, job);
    }
}

/* The parks that waited go back to their queues (a refused cascade, a lost connection). */
static void requeue_waiting(struct worker *w, bool connected)
{
    size_t n = w->ndwait;
    w->ndwait = 0;
    for (size_t i = 0; i < n; i++) {
        struct job *job = w->dwait[i].job;
        if (!connected) {
            /* The broker requeues the delivery with the connection. */
            if (--job->waits == 0 && job->done)
                job_free(job);
            continue;
        }
        job->nacked = true;
        release(w, job);
    }
}

bool delay_on_frame(struct worker *w, const amqp_frame_t *f)
{
    if (f->channel != CH_DELAY || f->frame_type != AMQP_FRAME_METHOD)
        return false;
    if (f->payload.method.id == AMQP_CHANNEL_OPEN_OK_METHOD) {
        if (adecl_on_open_ok(&w->delay))
            log_event(LV_INFO, 0, "delay_channel_reopened", "retry_in_s=%.1f",
                      w->delay.retry_at - task__now_mono());
        return true;
    }
    if (adecl_on_ok(&w->delay) == ADECL_NOW_READY) {
        log_event(LV_INFO, 0, "delay_ready", "setup_ms=%.1f waiting=%zu",
                  (task__now_mono() - w->delay_started) * 1000, w->ndwait);
        flush(w);
    }
    return true;
}

void delay_on_closed(struct worker *w)
{
    /* task__conn_next_frame() answered the close and left its reason in the conn's error. */
    char why[300];
    snprintf(why, sizeof(why), "%s", task__conn_errmsg(w->conn));
    task__conn_clear_error(w->conn);
    int code = 0;
    const char *p = strstr(why, ": ");
    if (p != NULL)
        code = atoi(p + 2);
    adecl_on_closed(&w->delay, (uint16_t)code, task__now_mono());
    log_event(LV_ERROR, TASK_EBROKER, "delay_setup_failed", "detail=\"%s\" waiting=%zu "
              "action=\"requeue; declare again in %.0f s\"", why, w->ndwait,
              adecl_backoff_s(w->delay.refusals));
    requeue_waiting(w, true);
    amqp_channel_open_t o = {.out_of_band = amqp_empty_bytes};
    if (amqp_send_method(task__conn_amqp(w->conn), CH_DELAY, AMQP_CHANNEL_OPEN_METHOD, &o) !=
        AMQP_STATUS_OK)
        (void)task__conn_fail(w->conn, TASK_ECLOSED, "delay channel: write failed");
}

void delay_forget(struct worker *w)
{
    adecl_forget(&w->delay);
}

void delay_drop(struct worker *w)
{
    requeue_waiting(w, false);
    adecl_reset(&w->delay);
}

void delay_free(struct worker *w)
{
    free(w->dwait);
    w->dwait = NULL;
    w->dwait_cap = 0;
}

static void bind_key(const char *queue, char *key, size_t size)
{
    delay_routing_key(0, queue, key, size);
    /* Any bits, then this queue's name word for word. */
    for (char *p = key; p < key + 2 * DELAY_LEVELS; p += 2)
        *p = '*';
}

int delay_ask_bind(struct worker *w, const char *queue)
{
    char key[512];
    bind_key(queue, key, sizeof(key));
    amqp_exchange_declare_t x = {.exchange = amqp_cstring_bytes(DELAY_DELIVERY_EXCHANGE),
                                 .type = amqp_cstring_bytes("topic"), .durable = 1,
                                 .arguments = amqp_empty_table};
    amqp_queue_bind_t b = {.queue = amqp_cstring_bytes(queue),
                           .exchange = amqp_cstring_bytes(DELAY_DELIVERY_EXCHANGE),
                           .routing_key = amqp_cstring_bytes(key), .arguments = amqp_empty_table};
    int rc = task__conn_ask(w->conn, CH_DECLARE, AMQP_EXCHANGE_DECLARE_METHOD, &x,
                            "declare " DELAY_DELIVERY_EXCHANGE);
    if (rc == 0)
        rc = task__conn_ask(w->conn, CH_DECLARE, AMQP_QUEUE_BIND_METHOD, &b,
                            "bind queue to " DELAY_DELIVERY_EXCHANGE);
    return rc;
}

int delay_bind_queue(struct worker *w, const char *queue)
{
    amqp_connection_state_t st = task__conn_amqp(w->conn);
    amqp_exchange_declare(st, CH_DECLARE, amqp_cstring_bytes(DELAY_DELIVERY_EXCHANGE),
                          amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    int rc = check(w, "declare " DELAY_DELIVERY_EXCHANGE);
    char key[512];
    bind_key(queue, key, sizeof(key));
    if (rc == 0) {
        amqp_queue_bind(st, CH_DECLARE, amqp_cstring_bytes(queue),
                        amqp_cstring_bytes(DELAY_DELIVERY_EXCHANGE), amqp_cstring_bytes(key),
                        amqp_empty_table);
        rc = check(w, "bind queue to " DELAY_DELIVERY_EXCHANGE);
    }
    return rc;
}

bool delay_usable(const struct worker *w)
{
    return w->delay.state == ADECL_PENDING || w->delay.state == ADECL_READY ||
           adecl_may_start(&w->delay, task__now_mono());
}

int delay_park(struct worker *w, struct job *job, struct task__delivery *d, double due)
{
    if (w->delay.state == ADECL_READY)
        return publish(w, job, d, due);
    if (w->delay.state == ADECL_NONE) {
        if (!adecl_may_start(&w->delay, task__now_mono()))
            return TASK_EBROKER; /* refused lately: back to its queue, as before */
        int rc = delay_start(w);
        if (rc != 0)
            return rc;
    }
    /* Declared in a moment: the job waits here, owning its delivery, and is published when
     * the last -ok arrives (or requeued if the broker refuses). A publish now could overtake
     * the declarations on their channel and find no exchange. */
    if (w->ndwait == w->dwait_cap) {
        size_t cap = w->dwait_cap ? 2 * w->dwait_cap : 16;
        struct delay_wait *nw = realloc(w->dwait, cap * sizeof(*nw));
        if (nw == NULL)
            return TASK_ENOMEM;
        w->dwait = nw;
        w->dwait_cap = cap;
    }
    job->d = *d;
    memset(d, 0, sizeof(*d));
    w->dwait[w->ndwait++] = (struct delay_wait){.job = job, .due = due};
    job->waits++;
    return 0;
}
