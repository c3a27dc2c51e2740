/* canvas_wait.c - see canvas_wait.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "canvas.h"
#include "canvas_wait.h"
#include "log.h"
#include "publisher.h"
#include "worker.h"

struct canvas_wait {
    struct job *job;           /* its waits counts this follow-up; NULL: declare only */
    struct task__wire *wire;   /* owned; NULL: declare only */
    canvas_ready_fn ready;     /* declare only: told when answered */
    char *target;
    json_object *sig, *chain_rest; /* references */
    char why[16];
    int oks_left;              /* declarations not answered yet; -1: not sent (channel closed) */
    canvas_refused_fn refused;
};

static void entry_free(struct canvas_wait *e)
{
    if (e->wire != NULL)
        task__wire_free(e->wire);
    free(e->wire);
    free(e->target);
    json_object_put(e->sig);
    json_object_put(e->chain_rest);
}

static void release(struct worker *w, struct job *job)
{
    if (job == NULL)
        return;
    job->waits--;
    if (job->done && job->waits == 0)
        w->settled(w, job);
}

/* Send the declarations of entry i; on a broken connection the loop drops the session. */
static void send_declare(struct worker *w, struct canvas_wait *e)
{
    if (task__topo_send_declare(&w->topo, w->conn, CH_CANVAS, e->target) == 0)
        e->oks_left = TASK__TOPO_SEND_OKS;
}

static int grow(struct worker *w)
{
    if (w->ncwait == w->cwait_cap) {
        size_t cap = w->cwait_cap ? 2 * w->cwait_cap : 8;
        struct canvas_wait *nw = realloc(w->cwait, cap * sizeof(*nw));
        if (nw == NULL)
            return TASK_ENOMEM;
        w->cwait = nw;
        w->cwait_cap = cap;
    }
    return 0;
}

int canvas_wait_declare(struct worker *w, const char *target, canvas_ready_fn ready)
{
    char *t = grow(w) == 0 ? strdup(target) : NULL;
    if (t == NULL)
        return TASK_ENOMEM;
    struct canvas_wait *e = &w->cwait[w->ncwait++];
    *e = (struct canvas_wait){.target = t, .ready = ready, .oks_left = -1};
    snprintf(e->why, sizeof(e->why), "declare");
    if (!w->canvas_reopening)
        send_declare(w, e);
    return 0;
}

int canvas_wait_add(struct worker *w, struct job *job, struct task__wire *wire,
                    const char *target, json_object *sig, json_object *chain_rest,
                    const char *why, canvas_refused_fn refused)
{
    char *t = grow(w) == 0 ? strdup(target) : NULL;
    if (t == NULL)
        return TASK_ENOMEM;
    struct canvas_wait *e = &w->cwait[w->ncwait];
    *e = (struct canvas_wait){.job = job, .wire = wire, .target = t, .refused = refused,
                              .sig = json_object_get(sig),
                              .chain_rest = json_object_get(chain_rest), .oks_left = -1};
    snprintf(e->why, sizeof(e->why), "%s", why);
    if (!w->canvas_reopening)
        send_declare(w, e);
    w->ncwait++;
    job->waits++;
    log_event(LV_DEBUG, 0, "canvas_declaring", "task_id=%s why=%s queue=%s", log_v(job->m.id),
              why, log_v(target));
    return 0;
}

static void pop_head(struct worker *w)
{
    memmove(w->cwait, w->cwait + 1, (w->ncwait - 1) * sizeof(*w->cwait));
    w->ncwait--;
}

/* The head's queue is declared: publish it. */
static void publish_head(struct worker *w)
{
    struct canvas_wait e = w->cwait[0];
    pop_head(w);
    (void)task__topo_note_declared(&w->topo, e.target);
    if (e.wire == NULL) {
        e.ready(w, e.target);
        entry_free(&e);
        return;
    }
    int rc = pub_send_mandatory(w, e.job, "", e.target, &e.wire->props, e.wire->body,
                                e.wire->body_len);
    if (rc != 0) {
        e.job->nacked = true; /* requeue the parent rather than lose the follow-up */
        log_event(LV_ERROR, rc, "canvas_publish_failed", "task_id=%s why=%s",
                  log_v(e.job->m.id), e.why);
    } else {
        log_event(LV_DEBUG, 0, "canvas_sent", "task_id=%s why=%s queue=%s", log_v(e.job->m.id),
                  e.why, log_v(e.target));
    }
    struct job *job = e.job;
    entry_free(&e);
    release(w, job);
}

bool canvas_wait_on_frame(struct worker *w, const amqp_frame_t *f)
{
    if (f->channel != CH_CANVAS || f->frame_type != AMQP_FRAME_METHOD)
        return false;
    if (f->payload.method.id == AMQP_CHANNEL_OPEN_OK_METHOD) {
        w->canvas_reopening = false;
        for (size_t i = 0; i < w->ncwait; i++)
            send_declare(w, &w->cwait[i]);
        return true;
    }
    /* Replies come in the order the declarations went: they are the head's. */
    if (w->ncwait == 0 || w->cwait[0].oks_left <= 0) {
        log_event(LV_WARN, 0, "canvas_stray_reply", "method=0x%08x",
                  (unsigned)f->payload.method.id);
        return true;
    }
    if (--w->cwait[0].oks_left == 0)
        publish_head(w);
    return true;
}

void canvas_wait_on_closed(struct worker *w)
{
    /* The broker answers methods in order and ignores those after the refused one: the
     * refusal is the head's; the others were not looked at and go again after the reopen. */
    if (w->ncwait > 0 && w->cwait[0].oks_left > 0) {
        struct canvas_wait e = w->cwait[0];
        pop_head(w);
        if (e.wire == NULL) {
            log_event(LV_WARN, TASK_EBROKER, "canvas_declare_refused", "queue=%s detail=\"%s\"",
                      log_v(e.target), task__conn_errmsg(w->conn));
            task__conn_clear_error(w->conn);
            e.ready(w, e.target);
        } else {
            e.refused(w, e.job, e.sig, e.chain_rest, e.target, e.why); /* clears the error */
        }
        struct job *job = e.job;
        entry_free(&e);
        release(w, job);
    } else {
        log_event(LV_ERROR, TASK_EBROKER, "canvas_channel_closed", "detail=\"%s\"",
                  task__conn_errmsg(w->conn));
        task__conn_clear_error(w->conn);
    }
    for (size_t i = 0; i < w->ncwait; i++)
        w->cwait[i].oks_left = -1;
    w->canvas_reopening = true;
    amqp_channel_open_t o = {.out_of_band = amqp_empty_bytes};
    if (amqp_send_method(task__conn_amqp(w->conn), CH_CANVAS, AMQP_CHANNEL_OPEN_METHOD, &o) !=
        AMQP_STATUS_OK)
        (void)task__conn_fail(w->conn, TASK_ECLOSED, "canvas channel: write failed");
}

void canvas_wait_drop(struct worker *w)
{
    for (size_t i = 0; i < w->ncwait; i++) {
        struct job *job = w->cwait[i].job;
        entry_free(&w->cwait[i]);
        if (job != NULL && --job->waits == 0 && job->done)
            job_free(job);
    }
    w->ncwait = 0;
    w->canvas_reopening = false;
}

void canvas_wait_free(struct worker *w)
{
    free(w->cwait);
    w->cwait = NULL;
    w->cwait_cap = 0;
}
