/* canvas.c - see task/canvas.h. */
#include <string.h>
#include <task/canvas.h>
#include "client_impl.h"
#include "internal.h"

json_object *task_sig_new(const char *name, json_object *args, json_object *kwargs,
                          const char *queue, bool immutable)
{
    if (name == NULL || name[0] == '\0' ||
        (args != NULL && !json_object_is_type(args, json_type_array)) ||
        (kwargs != NULL && !json_object_is_type(kwargs, json_type_object)))
        return NULL;
    json_object *sig = json_object_new_object();
    json_object *options = json_object_new_object();
    if (queue != NULL)
        json_object_object_add(options, "queue", json_object_new_string(queue));
    json_object_object_add(sig, "task", json_object_new_string(name));
    json_object_object_add(sig, "args", args ? json_object_get(args) : json_object_new_array());
    json_object_object_add(sig, "kwargs",
                           kwargs ? json_object_get(kwargs) : json_object_new_object());
    json_object_object_add(sig, "options", options);
    json_object_object_add(sig, "subtask_type", NULL);
    json_object_object_add(sig, "immutable", json_object_new_boolean(immutable));
    return sig;
}

static const char *sig_str(json_object *sig, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(sig, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v) : NULL;
}

static json_object *sig_options(json_object *sig)
{
    json_object *v;
    return json_object_object_get_ex(sig, "options", &v) && json_object_is_type(v, json_type_object)
               ? v : NULL;
}

/* A copy of `sig` whose options name the id it will run under and this client's reply queue,
 * so that the worker that sends it publishes its states where task_wait() listens. */
static json_object *follow_up(task_client *c, json_object *sig, task_id *id)
{
    if (sig_str(sig, "task") == NULL)
        return NULL;
    json_object *copy = NULL;
    if (json_object_deep_copy(sig, &copy, NULL) != 0)
        return NULL;
    json_object *options = sig_options(copy);
    if (options == NULL) {
        options = json_object_new_object();
        json_object_object_add(copy, "options", options);
    }
    task__uuid7(id->str);
    json_object_object_add(options, "task_id", json_object_new_string(id->str));
    json_object_object_add(options, "reply_to",
                           json_object_new_string(task_client_reply_queue(c)));
    return copy;
}

/* Send `sig` now, with `base` options and the signature's own queue. */
static int send_sig(task_client *c, json_object *sig, const task_send_opts *base,
                    const struct task__member *mb, task_id *id)
{
    const char *name = sig_str(sig, "task");
    if (name == NULL)
        return task__client_fail(c, TASK_EINVAL, "signature without a task name");
    task_send_opts o = base ? *base : (task_send_opts){0};
    json_object *options = sig_options(sig);
    const char *queue = options ? sig_str(options, "queue") : NULL;
    if (queue != NULL)
        o.queue = queue;
    json_object *args = json_object_object_get(sig, "args");
    json_object *kwargs = json_object_object_get(sig, "kwargs");
    return task__client_send(c, name, args, kwargs, &o, mb, id);
}

int task_send_chain(task_client *c, json_object *const *sigs, int n, const task_send_opts *opts,
                    task_id *last)
{
    if (c == NULL || sigs == NULL || n < 1 || last == NULL)
        return TASK_EINVAL;
    /* Celery's chain travels as a stack: the step to run next is the last element. */
    json_object *rest = json_object_new_array();
    task_id step_id;
    int rc = 0;
    for (int i = n - 1; i >= 1 && rc == 0; i--) {
        json_object *step = follow_up(c, sigs[i], &step_id);
        if (step == NULL)
            rc = task__client_fail(c, TASK_EINVAL, "chain step %d: not a signature", i);
        else
            json_object_array_add(rest, step);
        if (i == n - 1)
            *last = step_id;
    }
    task_send_opts o = opts ? *opts : (task_send_opts){0};
    o.chain = n > 1 ? rest : NULL;
    task_id first;
    if (rc == 0)
        rc = send_sig(c, sigs[0], &o, NULL, &first);
    if (rc == 0 && n == 1)
        *last = first;
    json_object_put(rest);
    return rc;
}

int task_send_group(task_client *c, json_object *const *sigs, int n, const task_send_opts *opts,
                    task_id *group, task_id *ids)
{
    if (c == NULL || sigs == NULL || n < 1 || group == NULL || ids == NULL)
        return TASK_EINVAL;
    task__uuid7(group->str);
    task_send_opts o = opts ? *opts : (task_send_opts){0};
    o.group_id = group->str;
    for (int i = 0; i < n; i++) {
        int rc = send_sig(c, sigs[i], &o, NULL, &ids[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int task_send_chord(task_client *c, json_object *const *header, int n, json_object *callback,
                    const task_send_opts *opts, task_id *callback_id, task_id *ids)
{
    if (c == NULL || header == NULL || n < 1 || callback == NULL || callback_id == NULL)
        return TASK_EINVAL;
    json_object *cb = follow_up(c, callback, callback_id);
    if (cb == NULL)
        return task__client_fail(c, TASK_EINVAL, "chord callback: not a signature");
    /* Celery reads the size from its result backend; without one, the callback carries it. */
    json_object_object_add(cb, "chord_size", json_object_new_int(n));
    task_id group;
    task__uuid7(group.str);
    task_send_opts o = opts ? *opts : (task_send_opts){0};
    o.group_id = group.str;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        struct task__member mb = {.index = i, .chord = cb};
        task_id id;
        rc = send_sig(c, header[i], &o, &mb, &id);
        if (rc == 0 && ids != NULL)
            ids[i] = id;
    }
    json_object_put(cb);
    return rc;
}
