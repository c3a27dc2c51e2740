/* canvas_sig.c - see canvas_sig.h. */
#include <stdbool.h>
#include <string.h>
#include "canvas_sig.h"
#include "internal.h"

static json_object *opt(json_object *sig, const char *key)
{
    json_object *options, *v;
    if (!json_object_object_get_ex(sig, "options", &options) ||
        !json_object_object_get_ex(options, key, &v))
        return NULL;
    return v;
}

/* A time option: a number of seconds after `base` (countdown, or expires as Celery allows it),
 * or an ISO 8601 time. 0 with *t untouched when absent or null; -1 when unreadable. */
static int time_opt(json_object *sig, const char *key, double base, double *t)
{
    json_object *v = opt(sig, key);
    if (v == NULL)
        return 0;
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (d != d || d > 1e10 || d < -1e10)
            return -1;
        *t = base + d;
        return 0;
    }
    if (json_object_is_type(v, json_type_string))
        return task__iso8601_parse(json_object_get_string(v), t) == 0 ? 0 : -1;
    return -1;
}

/* options.link / options.link_error: a list of signatures, or one (Celery accepts both). */
static json_object *sig_list(json_object *sig, const char *key)
{
    json_object *v = opt(sig, key);
    if (json_object_is_type(v, json_type_array))
        return json_object_array_length(v) > 0 ? json_object_get(v) : NULL;
    if (json_object_is_type(v, json_type_object)) {
        json_object *list = json_object_new_array();
        if (list != NULL)
            json_object_array_add(list, json_object_get(v));
        return list;
    }
    return NULL;
}

static bool fits_shortstr(const char *s)
{
    return s == NULL || strlen(s) <= 255;
}

/* A JSON string that is a whole C string (no NUL inside: it would be cut short). */
static bool c_string(json_object *v)
{
    return json_object_is_type(v, json_type_string) &&
           strlen(json_object_get_string(v)) == (size_t)json_object_get_string_len(v);
}

const char *canvas_opt_str(json_object *sig, const char *key)
{
    json_object *v = opt(sig, key);
    return c_string(v) ? json_object_get_string(v) : NULL;
}

int canvas_sig_read(json_object *sig, json_object *first, double now, struct canvas_call *out,
                    const char **why)
{
    memset(out, 0, sizeof(*out));
    json_object *v;
    if (!json_object_is_type(sig, json_type_object)) {
        *why = "signature is not an object";
        return -1;
    }
    if (!json_object_object_get_ex(sig, "task", &v) || !c_string(v) ||
        json_object_get_string_len(v) == 0) {
        *why = "signature without a task name (or with a NUL byte in it)";
        return -1;
    }
    out->name = json_object_get_string(v);
    if (json_object_object_get_ex(sig, "subtask_type", &v) && v != NULL) {
        *why = "nested canvas (subtask_type) is not supported";
        return -1;
    }
    bool immutable = json_object_object_get_ex(sig, "immutable", &v) &&
                     json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
    out->args = json_object_new_array();
    if (out->args == NULL) {
        *why = "out of memory";
        return -1;
    }
    if (first != NULL && !immutable)
        json_object_array_add(out->args, json_object_get(first));
    json_object *sargs;
    if (json_object_object_get_ex(sig, "args", &sargs) && json_object_is_type(sargs, json_type_array))
        for (size_t i = 0; i < json_object_array_length(sargs); i++)
            json_object_array_add(out->args, json_object_get(json_object_array_get_idx(sargs, i)));
    if (json_object_object_get_ex(sig, "kwargs", &v) && json_object_is_type(v, json_type_object))
        out->kwargs = v;
    out->task_id = canvas_opt_str(sig, "task_id");
    out->queue = canvas_opt_str(sig, "queue");
    out->reply_to = canvas_opt_str(sig, "reply_to");
    /* An empty id or queue is no id or queue: Celery leaves the field out instead. */
    if (out->task_id != NULL && out->task_id[0] == '\0')
        out->task_id = NULL;
    if (out->queue != NULL && out->queue[0] == '\0')
        out->queue = NULL;
    if (!fits_shortstr(out->task_id) || !fits_shortstr(out->queue) ||
        !fits_shortstr(out->reply_to)) {
        *why = "task_id, queue or reply_to longer than 255 bytes (AMQP's limit)";
        canvas_call_clear(out);
        return -1;
    }
    if (time_opt(sig, "countdown", now, &out->eta) != 0 || time_opt(sig, "eta", 0, &out->eta) != 0 ||
        time_opt(sig, "expires", now, &out->expires) != 0) {
        *why = "countdown, eta or expires is neither a number nor an ISO 8601 time";
        canvas_call_clear(out);
        return -1;
    }
    out->link = sig_list(sig, "link");
    out->link_error = sig_list(sig, "link_error");
    out->group_index = -1;
    out->group_id = canvas_opt_str(sig, "group_id");
    json_object *opts, *cv;
    if (json_object_object_get_ex(sig, "options", &opts) && json_object_is_type(opts, json_type_object)) {
        if (json_object_object_get_ex(opts, "chord", &cv) && json_object_is_type(cv, json_type_object))
            out->chord = cv;
        if (json_object_object_get_ex(opts, "group_index", &cv) &&
            json_object_is_type(cv, json_type_int) && json_object_get_int64(cv) >= 0 &&
            json_object_get_int64(cv) < INT32_MAX)
            out->group_index = (int)json_object_get_int64(cv);
    }
    if (!fits_shortstr(out->group_id)) {
        *why = "group_id longer than 255 bytes";
        canvas_call_clear(out);
        return -1;
    }
    return 0;
}

void canvas_call_clear(struct canvas_call *c)
{
    json_object_put(c->args);
    json_object_put(c->link);
    json_object_put(c->link_error);
    memset(c, 0, sizeof(*c));
}

int chord_part_index(json_object *part, int size)
{
    json_object *iv;
    if (!json_object_is_type(part, json_type_object) || !json_object_object_get_ex(part, "i", &iv) ||
        !json_object_is_type(iv, json_type_int))
        return -1;
    int64_t i = json_object_get_int64(iv);
    return i >= 0 && i < size ? (int)i : -1;
}
