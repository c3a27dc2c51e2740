/*
 * codec_result.c - state messages in the rpc result-backend format (celery-protocol.md 5.1):
 * properties as Celery sends them (an empty headers table present, delivery_mode 1, priority 0,
 * correlation_id = task id), body keys in Celery's order. Python's AsyncResult reads these.
 */
#include <stdlib.h>
#include <string.h>
#include "codec.h"

void task__result_clear(struct task__result *r)
{
    free(r->task_id);
    free(r->status);
    free(r->traceback);
    free(r->hostname);
    json_object_put(r->result);
    json_object_put(r->children);
    memset(r, 0, sizeof(*r));
}

json_object *task__exc_new(const char *type, const char *message, const char *module)
{
    json_object *o = json_object_new_object();
    json_object *msg = json_object_new_array();
    if (o == NULL || msg == NULL) {
        json_object_put(o);
        json_object_put(msg);
        return NULL;
    }
    json_object_array_add(msg, json_object_new_string(message ? message : ""));
    json_object_object_add(o, "exc_type", json_object_new_string(type ? type : "Exception"));
    json_object_object_add(o, "exc_message", msg);
    json_object_object_add(o, "exc_module", json_object_new_string(module ? module : "builtins"));
    return o;
}

int task__result_encode(const struct task__result *r, struct task__result_wire *w,
                        task_error *err)
{
    memset(w, 0, sizeof(*w));
    if (r->task_id == NULL || r->status == NULL)
        return task__fail(err, TASK_EINVAL, "result needs a task id and a status");
    json_object *o = json_object_new_object();
    if (o == NULL)
        return task__fail(err, TASK_ENOMEM, "encode result");
    json_object_object_add(o, "task_id", json_object_new_string(r->task_id));
    json_object_object_add(o, "status", json_object_new_string(r->status));
    json_object_object_add(o, "result", json_object_get(r->result));
    json_object_object_add(o, "traceback",
                           r->traceback ? json_object_new_string(r->traceback) : NULL);
    json_object_object_add(o, "children",
                           r->children ? json_object_get(r->children) : json_object_new_array());
    if (r->date_done > 0) {
        char buf[40];
        task__iso8601_format(r->date_done, buf, sizeof(buf));
        json_object_object_add(o, "date_done", json_object_new_string(buf));
    }
    if (r->delivery_count > 0)
        json_object_object_add(o, "delivery_count", json_object_new_int(r->delivery_count));
    if (r->hostname != NULL)
        json_object_object_add(o, "hostname", json_object_new_string(r->hostname));
    size_t len;
    const char *text = task__json_str(o, &len);
    w->body = malloc(len + 1);
    if (w->body != NULL) {
        memcpy(w->body, text, len + 1);
        w->body_len = len;
    }
    json_object_put(o);
    if (w->body == NULL)
        return task__fail(err, TASK_ENOMEM, "encode result");
    amqp_basic_properties_t *p = &w->props;
    *p = task__json_props(amqp_empty_table, 1);
    p->_flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    p->correlation_id = amqp_cstring_bytes(r->task_id);
    return 0;
}

void task__result_wire_free(struct task__result_wire *w)
{
    free(w->body);
    w->body = NULL;
}

static char *dup_string(json_object *o)
{
    return json_object_is_type(o, json_type_string) ? strdup(json_object_get_string(o)) : NULL;
}

int task__result_decode(const void *body, size_t len, struct task__result *out, task_error *err)
{
    memset(out, 0, sizeof(*out));
    enum task__bad why;
    json_object *o = task__json_parse(body, len, 128, &why, err);
    if (o == NULL)
        return task__fail(err, TASK_EPROTO, "result: not JSON");
    int rc = 0;
    json_object *v;
    if (!json_object_is_type(o, json_type_object)) {
        rc = task__fail(err, TASK_EPROTO, "result: expected an object");
        goto out;
    }
    if (!json_object_object_get_ex(o, "task_id", &v) || (out->task_id = dup_string(v)) == NULL ||
        !json_object_object_get_ex(o, "status", &v) || (out->status = dup_string(v)) == NULL) {
        rc = task__fail(err, TASK_EPROTO, "result: task_id and status must be strings");
        goto out;
    }
    if (json_object_object_get_ex(o, "result", &v))
        out->result = json_object_get(v);
    if (json_object_object_get_ex(o, "traceback", &v))
        out->traceback = dup_string(v);
    if (json_object_object_get_ex(o, "children", &v) && json_object_is_type(v, json_type_array))
        out->children = json_object_get(v);
    if (json_object_object_get_ex(o, "delivery_count", &v))
        out->delivery_count = json_object_get_int(v);
    if (json_object_object_get_ex(o, "hostname", &v))
        out->hostname = dup_string(v);
    if (json_object_object_get_ex(o, "date_done", &v) && json_object_is_type(v, json_type_string))
        (void)task__iso8601_parse(json_object_get_string(v), &out->date_done);
out:
    json_object_put(o);
    if (rc != 0)
        task__result_clear(out);
    return rc;
}
