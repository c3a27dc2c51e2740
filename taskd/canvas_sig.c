/* canvas_sig.c - see canvas_sig.h. */
#include <stdbool.h>
#include <string.h>
#include "canvas_sig.h"

const char *canvas_opt_str(json_object *sig, const char *key)
{
    json_object *options, *v;
    if (!json_object_object_get_ex(sig, "options", &options) ||
        !json_object_object_get_ex(options, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

int canvas_sig_read(json_object *sig, json_object *first, struct canvas_call *out,
                    const char **why)
{
    memset(out, 0, sizeof(*out));
    json_object *v;
    if (!json_object_is_type(sig, json_type_object)) {
        *why = "signature is not an object";
        return -1;
    }
    if (!json_object_object_get_ex(sig, "task", &v) || !json_object_is_type(v, json_type_string) ||
        json_object_get_string_len(v) == 0) {
        *why = "signature without a task name";
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
    return 0;
}

void canvas_call_clear(struct canvas_call *c)
{
    json_object_put(c->args);
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
