/* delay.c - see delay.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "declare.h"
#include "delay.h"
#include "log.h"
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

static int declare_level(struct worker *w, int level)
{
    amqp_connection_state_t st = task__conn_amqp(w->conn);
    char name[40], next[40], pat[128];
    level_name(level, name, sizeof(name));
    if (level > 0)
        level_name(level - 1, next, sizeof(next));
    else
        snprintf(next, sizeof(next), "%s", DELAY_DELIVERY_EXCHANGE);
    amqp_exchange_declare(st, CH_DECLARE, amqp_cstring_bytes(name), amqp_cstring_bytes("topic"),
                          0, 1, 0, 0, amqp_empty_table);
    int rc = check(w, "declare delay exchange");
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
    amqp_table_t args = {.num_entries = 5, .entries = e};
    if (rc == 0)
        rc = task__conn_declare_queue(w->conn, CH_DECLARE, name, true, false, false, args);
    if (rc == 0) {
        pattern(level, '1', pat, sizeof(pat));
        amqp_queue_bind(st, CH_DECLARE, amqp_cstring_bytes(name), amqp_cstring_bytes(name),
                        amqp_cstring_bytes(pat), amqp_empty_table);
        rc = check(w, "bind delay queue");
    }
    if (rc == 0) {
        pattern(level, '0', pat, sizeof(pat));
        amqp_exchange_bind(st, CH_DECLARE, amqp_cstring_bytes(next), amqp_cstring_bytes(name),
                           amqp_cstring_bytes(pat), amqp_empty_table);
        rc = check(w, "bind delay exchange");
    }
    return rc;
}

int delay_declare(struct worker *w)
{
    if (w->delay_ready)
        return 0;
    amqp_exchange_declare(task__conn_amqp(w->conn), CH_DECLARE,
                          amqp_cstring_bytes(DELAY_DELIVERY_EXCHANGE), amqp_cstring_bytes("topic"),
                          0, 1, 0, 0, amqp_empty_table);
    int rc = check(w, "declare " DELAY_DELIVERY_EXCHANGE);
    for (int level = 0; rc == 0 && level < DELAY_LEVELS; level++)
        rc = declare_level(w, level);
    if (rc != 0) {
        log_event(LV_ERROR, rc, "delay_setup_failed", "detail=\"%s\"", task__conn_errmsg(w->conn));
        if (rc == TASK_EBROKER && declare_refused(w) != 0)
            return TASK_ECLOSED;
        return rc;
    }
    w->delay_ready = true;
    return 0;
}

int delay_bind_queue(struct worker *w, const char *queue)
{
    amqp_connection_state_t st = task__conn_amqp(w->conn);
    amqp_exchange_declare(st, CH_DECLARE, amqp_cstring_bytes(DELAY_DELIVERY_EXCHANGE),
                          amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    int rc = check(w, "declare " DELAY_DELIVERY_EXCHANGE);
    char key[512];
    delay_routing_key(0, queue, key, sizeof(key));
    /* Any bits, then this queue's name word for word. */
    for (char *p = key; p < key + 2 * DELAY_LEVELS; p += 2)
        *p = '*';
    if (rc == 0) {
        amqp_queue_bind(st, CH_DECLARE, amqp_cstring_bytes(queue),
                        amqp_cstring_bytes(DELAY_DELIVERY_EXCHANGE), amqp_cstring_bytes(key),
                        amqp_empty_table);
        rc = check(w, "bind queue to " DELAY_DELIVERY_EXCHANGE);
    }
    return rc;
}

int delay_park(struct worker *w, struct job *job, const struct task__delivery *d, double due)
{
    int rc = delay_declare(w);
    if (rc != 0)
        return rc;
    double left = due - task__now_wall();
    /* Rounded down: it comes back up to a second early and waits out the rest in memory. */
    uint64_t secs = left <= 0 ? 0 : (uint64_t)floor(left);
    char key[512];
    delay_routing_key(secs, d->queue, key, sizeof(key));
    amqp_basic_properties_t p = d->msg.properties;
    /* Celery's expiration (from `expires`) would let the broker drop the task while it waits;
     * the expires header is checked when it comes back. */
    p._flags &= ~(amqp_flags_t)AMQP_BASIC_EXPIRATION_FLAG;
    p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.delivery_mode = 2;
    char top[40];
    level_name(DELAY_LEVELS - 1, top, sizeof(top));
    return pub_send(w, job, top, key, &p, d->msg.body.bytes, d->msg.body.len);
}
