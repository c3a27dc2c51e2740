/*
 * canvas.c - what happens after a task: link callbacks and the next step of a chain on success,
 * link_error callbacks on failure, sent as new task messages the way a Celery worker sends them
 * (celery-protocol.md 3.3): the result prepended to the callback's args (unless immutable),
 * parent_id = the finished task, root_id inherited, task_id/reply_to from the signature's
 * options. Each message is tied to the finished task's ack, so none is lost. Chords: chord.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "canvas.h"
#include "canvas_sig.h"
#include "canvas_wait.h"
#include "declare.h"
#include "log.h"
#include "publisher.h"
#include "signing.h"
#include "worker.h"

/* Encode signature `sig` as a task message with `first` (borrowed, may be NULL) prepended to
 * its args. On 0, *wire holds the message and *target (borrowed) its queue, declared when
 * `declare` (a round trip when it is new on this connection), else maybe not. */
static int encode(struct worker *w, struct job *job, json_object *sig, json_object *first,
                  json_object *chain_rest, const char *why, struct task__wire *wire,
                  const char **target, bool declare)
{
    struct canvas_call call;
    const char *bad = NULL;
    if (canvas_sig_read(sig, first, task__now_wall(), &call, &bad) != 0) {
        log_event(LV_WARN, 0, "canvas_skipped", "task_id=%s why=%s reason=%s", log_v(job->m.id),
                  why, log_v(bad));
        return TASK_EINVAL;
    }
    char id[37];
    const char *tid = call.task_id;
    if (tid == NULL) {
        task__uuid7(id);
        tid = id; /* the wire keeps its own copy */
    }
    const char *name = call.name, *queue = call.queue;
    struct task__msg m = {
        .lang = "c", .task = (char *)name, .id = (char *)tid,
        .root_id = job->m.root_id ? job->m.root_id : job->m.id, .parent_id = job->m.id,
        .correlation_id = (char *)tid,
        .reply_to = (char *)(call.reply_to ? call.reply_to : job->m.reply_to),
        .delivery_mode = 2, .args = call.args, .kwargs = call.kwargs, .chain = chain_rest,
        .eta = call.eta, .expires = call.expires, .callbacks = call.link,
        .errbacks = call.link_error, .chord = call.chord, .group = (char *)call.group_id,
        .group_index = call.group_index,
    };
    task_error err = {0};
    /* Celery's order: the signature's queue, then routes; else the parent's queue. */
    *target = queue ? queue : task__topo_route(&w->topo, name, job->d.queue);
    int rc = declare ? declare_queue(w, *target) : 0;
    if (rc == 0)
        rc = task__msg_encode(&m, wire, &err);
    if (rc == 0 && (rc = task__wire_seal(w->sec, wire, &err)) != 0)
        task__wire_free(wire);
    canvas_call_clear(&call);
    return rc;
}

int canvas_target(struct worker *w, const struct job *job, json_object *sig, char *out,
                  size_t size)
{
    struct canvas_call call;
    const char *bad = NULL;
    if (canvas_sig_read(sig, NULL, task__now_wall(), &call, &bad) != 0)
        return TASK_EINVAL;
    const char *t = call.queue ? call.queue : task__topo_route(&w->topo, call.name, job->d.queue);
    int n = snprintf(out, size, "%s", t ? t : "");
    canvas_call_clear(&call);
    return n > 0 && (size_t)n < size ? 0 : TASK_EINVAL;
}

int canvas_encode(struct worker *w, struct job *job, json_object *sig, json_object *first,
                  json_object *chain_rest, const char *why, struct task__wire *wire,
                  const char **target)
{
    return encode(w, job, sig, first, chain_rest, why, wire, target, true);
}

/* Publish FAILURE for the task signature `sig` would have started (if it names an id someone
 * can wait for), tied to the job's ack. */
static int fail_signature(struct worker *w, struct job *job, json_object *sig, const char *type,
                          const char *module, const char *text)
{
    struct canvas_call call;
    const char *bad;
    if (canvas_sig_read(sig, NULL, 0, &call, &bad) != 0)
        return 0; /* unreadable: it names no id anyone could wait for */
    int rc = 0;
    if (call.task_id != NULL) { /* nobody can wait for a task without an id */
        struct task__msg m = {
            .task = (char *)call.name, .id = (char *)call.task_id,
            .correlation_id = (char *)call.task_id, .group_index = -1,
            .reply_to = (char *)(call.reply_to ? call.reply_to : job->m.reply_to),
        };
        json_object *exc = task__exc_new(type, text, module);
        rc = pub_result(w, job, &m, "FAILURE", exc, NULL, 1);
        json_object_put(exc);
    }
    canvas_call_clear(&call);
    return rc;
}

void canvas_refused(struct worker *w, struct job *job, json_object *sig, json_object *chain_rest,
                    const char *target, const char *why)
{
    /* The broker refused its queue (406: other arguments, 403): it would refuse it again on
     * every redelivery. The follow-up (and the chain after it) fails, with the reason. */
    char text[400];
    snprintf(text, sizeof(text), "queue '%s' refused by the broker: %s", target ? target : "?",
             task__conn_errmsg(w->conn));
    task__conn_clear_error(w->conn);
    log_event(LV_ERROR, TASK_EBROKER, "canvas_refused", "task_id=%s why=%s detail=%s",
              log_v(job->m.id), why, log_v(text));
    (void)fail_signature(w, job, sig, "QueueRefused", "taskd.errors", text);
    for (size_t i = 0; chain_rest && i < json_object_array_length(chain_rest); i++)
        (void)fail_signature(w, job, json_object_array_get_idx(chain_rest, i), "QueueRefused",
                             "taskd.errors", text);
}

/* Send signature `sig` with `first` prepended to its args, tied to the job's ack. A target
 * queue not declared on this connection yet is declared without waiting and the message waits
 * for it in canvas_wait.c: the loop goes on meanwhile. */
static void send_signature(struct worker *w, struct job *job, json_object *sig, json_object *first,
                           json_object *chain_rest, const char *why)
{
    struct task__wire *wire = calloc(1, sizeof(*wire));
    const char *target = NULL;
    int rc = wire == NULL ? TASK_ENOMEM
                          : encode(w, job, sig, first, chain_rest, why, wire, &target, false);
    if (rc == TASK_EINVAL) {
        free(wire);
        return; /* logged: a signature we cannot run would fail the same way on every retry */
    }
    if (rc == 0 && !task__topo_declared(&w->topo, target)) {
        rc = canvas_wait_add(w, job, wire, target, sig, chain_rest, why, canvas_refused);
        if (rc == 0)
            return; /* wire taken */
    } else if (rc == 0) {
        rc = pub_send_mandatory(w, job, "", target, &wire->props, wire->body, wire->body_len);
    }
    if (wire != NULL)
        task__wire_free(wire);
    free(wire);
    if (rc != 0) {
        job->nacked = true; /* requeue the parent rather than lose the follow-up */
        log_event(LV_ERROR, rc, "canvas_publish_failed", "task_id=%s why=%s", log_v(job->m.id),
                  why);
    } else {
        log_event(LV_DEBUG, 0, "canvas_sent", "task_id=%s why=%s queue=%s", log_v(job->m.id), why,
                  log_v(target));
    }
}

void canvas_on_success(struct worker *w, struct job *job, json_object *result)
{
    const struct task__msg *m = &job->m;
    for (size_t i = 0; m->callbacks && i < json_object_array_length(m->callbacks); i++)
        send_signature(w, job, json_object_array_get_idx(m->callbacks, i), result, NULL, "link");
    size_t n = m->chain ? json_object_array_length(m->chain) : 0;
    if (n == 0)
        return;
    /* Celery's chain is a stack: the last element runs next, the rest travels with it. */
    json_object *rest = json_object_new_array();
    for (size_t i = 0; i + 1 < n; i++)
        json_object_array_add(rest, json_object_get(json_object_array_get_idx(m->chain, i)));
    send_signature(w, job, json_object_array_get_idx(m->chain, n - 1), result, rest, "chain");
    json_object_put(rest);
}

void canvas_on_failure(struct worker *w, struct job *job, const char *type, const char *module,
                       const char *message)
{
    const struct task__msg *m = &job->m;
    json_object *id = json_object_new_string(m->id);
    for (size_t i = 0; m->errbacks && i < json_object_array_length(m->errbacks); i++)
        send_signature(w, job, json_object_array_get_idx(m->errbacks, i), id, NULL, "link_error");
    json_object_put(id);
    /* The rest of the chain will never run: its steps fail with this task's exception, as
     * Celery marks them, so a caller waiting on the chain's last id gets the error, not a hang.
     * (Only the failed task's own link_error callbacks run, as in Celery.) */
    for (size_t i = 0; m->chain && i < json_object_array_length(m->chain); i++)
        (void)fail_signature(w, job, json_object_array_get_idx(m->chain, i), type, module,
                             message);
}

int canvas_chord_error(struct worker *w, struct job *job, const char *member_id,
                       json_object *member_exc)
{
    json_object *v;
    const char *type = "", *text = "";
    if (json_object_object_get_ex(member_exc, "exc_type", &v) &&
        json_object_is_type(v, json_type_string))
        type = json_object_get_string(v);
    if (json_object_object_get_ex(member_exc, "exc_message", &v)) {
        /* Celery's exc_message is the exception's args: ["text"] for the usual one argument. */
        if (json_object_is_type(v, json_type_array) && json_object_array_length(v) == 1)
            v = json_object_array_get_idx(v, 0);
        text = v != NULL ? json_object_get_string(v) : "None";
    }
    char msg[1200];
    snprintf(msg, sizeof(msg), "Dependency %s raised %s('%s')", member_id, type, text);
    return fail_signature(w, job, job->m.chord, "ChordError", "celery.exceptions", msg);
}
