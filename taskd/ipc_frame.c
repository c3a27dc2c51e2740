/* ipc_frame.c - see ipc_frame.h. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <task/error.h>
#include "ipc_frame.h"

static int bad(char *why, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int bad(char *why, size_t size, const char *fmt, ...)
{
    if (why != NULL && size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, size, fmt, ap);
        va_end(ap);
    }
    return TASK_EPROTO;
}

static json_object *field(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* json-c turns a double into an int silently (and a string into 0): take integers only. */
static bool get_int(json_object *o, const char *key, int64_t min, int64_t max, int64_t *out)
{
    json_object *v = field(o, key);
    if (!json_object_is_type(v, json_type_int))
        return false;
    /* json-c saturates values past int64 (to INT64_MIN/MAX): the range check still holds. */
    int64_t i = json_object_get_int64(v);
    if (i < min || i > max)
        return false;
    *out = i;
    return true;
}

/* A finite number (an integer is one too); absent: `dflt`. False for any other type. */
static bool get_num(json_object *o, const char *key, double dflt, double *out)
{
    json_object *v = field(o, key);
    if (v == NULL) {
        *out = dflt;
        return true;
    }
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return false;
    double d = json_object_get_double(v);
    if (!isfinite(d))
        return false;
    *out = d;
    return true;
}

/* A string (borrowed); absent: "". False for any other type. */
static bool get_str(json_object *o, const char *key, const char **out)
{
    json_object *v = field(o, key);
    if (v == NULL) {
        *out = "";
        return true;
    }
    if (!json_object_is_type(v, json_type_string))
        return false;
    *out = json_object_get_string(v);
    return true;
}

static bool get_bool(json_object *o, const char *key, bool *out)
{
    json_object *v = field(o, key);
    if (v == NULL) {
        *out = false;
        return true;
    }
    if (!json_object_is_type(v, json_type_boolean))
        return false;
    *out = json_object_get_boolean(v);
    return true;
}

/* "kind", or `dflt` when absent; NULL when present but not a string. */
static const char *kind_of(json_object *o, const char *dflt)
{
    json_object *v = field(o, "kind");
    if (v == NULL)
        return dflt;
    return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

int ipc_down_read(json_object *o, struct ipc_down *out, char *why, size_t why_size)
{
    memset(out, 0, sizeof(*out));
    if (!json_object_is_type(o, json_type_object))
        return bad(why, why_size, "frame: expected an object");
    /* The kind is checked first: a reason names only kinds we know, never the peer's text
     * (a reason gets logged; found by fuzz_ipc with a newline in the kind). */
    const char *kind = kind_of(o, "job");
    if (kind == NULL)
        return bad(why, why_size, "frame: kind: expected a string");
    if (strcmp(kind, "cancel") != 0 && strcmp(kind, "job") != 0)
        return bad(why, why_size, "frame: kind: unknown kind");
    out->kind = strcmp(kind, "cancel") == 0 ? IPC_DOWN_CANCEL : IPC_DOWN_JOB;
    if (!get_int(o, "jid", 1, INT64_MAX, &out->jid))
        return bad(why, why_size, "%s frame: jid: expected a positive integer",
                   out->kind == IPC_DOWN_CANCEL ? "cancel" : "job");
    if (out->kind == IPC_DOWN_CANCEL)
        return 0;
    if (!get_str(o, "task", &out->task) || out->task[0] == '\0')
        return bad(why, why_size, "job frame: task: expected a non-empty string");
    if (!get_str(o, "id", &out->id) || out->id[0] == '\0')
        return bad(why, why_size, "job frame: id: expected a non-empty string");
    out->args = field(o, "args");
    if (!json_object_is_type(out->args, json_type_array))
        return bad(why, why_size, "job frame: args: expected an array");
    out->kwargs = field(o, "kwargs");
    if (!json_object_is_type(out->kwargs, json_type_object))
        return bad(why, why_size, "job frame: kwargs: expected an object");
    int64_t retries = 0;
    if (field(o, "retries") != NULL && !get_int(o, "retries", 0, INT32_MAX, &retries))
        return bad(why, why_size, "job frame: retries: expected an integer 0..%d", INT32_MAX);
    out->retries = (int)retries;
    if (!get_num(o, "soft", 0, &out->soft_s) || out->soft_s < 0)
        return bad(why, why_size, "job frame: soft: expected a number of seconds >= 0");
    if (!get_bool(o, "cancelled", &out->cancelled))
        return bad(why, why_size, "job frame: cancelled: expected true or false");
    return 0;
}

int ipc_up_read(json_object *o, struct ipc_up *out, char *why, size_t why_size)
{
    memset(out, 0, sizeof(*out));
    out->frame = o;
    out->retry_in_s = -1;
    out->rss_kb = -1;
    if (!json_object_is_type(o, json_type_object))
        return bad(why, why_size, "frame: expected an object");
    const char *kind = kind_of(o, NULL);
    if (kind == NULL)
        return bad(why, why_size, "frame: kind: expected a string");
    if (strcmp(kind, "progress") != 0 && strcmp(kind, "done") != 0)
        return bad(why, why_size, "frame: kind: unknown kind");
    out->kind = strcmp(kind, "progress") == 0 ? IPC_UP_PROGRESS : IPC_UP_DONE;
    if (!get_int(o, "jid", 1, INT64_MAX, &out->jid))
        return bad(why, why_size, "%s frame: jid: expected a positive integer",
                   out->kind == IPC_UP_PROGRESS ? "progress" : "done");
    if (out->kind == IPC_UP_PROGRESS) {
        out->meta = field(o, "meta");
        return 0;
    }
    int64_t outcome;
    if (!get_int(o, "outcome", INT32_MIN, INT32_MAX, &outcome))
        return bad(why, why_size, "done frame: outcome: expected an integer");
    out->outcome = (int)outcome;
    out->result = field(o, "result");
    if (!get_str(o, "exc_type", &out->exc_type))
        return bad(why, why_size, "done frame: exc_type: expected a string");
    if (!get_str(o, "exc_message", &out->exc_message))
        return bad(why, why_size, "done frame: exc_message: expected a string");
    if (!get_num(o, "retry_in", -1, &out->retry_in_s))
        return bad(why, why_size, "done frame: retry_in: expected a number of seconds");
    if (!get_num(o, "runtime", 0, &out->runtime_s) || out->runtime_s < 0)
        return bad(why, why_size, "done frame: runtime: expected a number of seconds >= 0");
    if (!get_bool(o, "cancelled", &out->cancelled))
        return bad(why, why_size, "done frame: cancelled: expected true or false");
    if (!get_bool(o, "soft_expired", &out->soft_expired))
        return bad(why, why_size, "done frame: soft_expired: expected true or false");
    int64_t rss;
    if (field(o, "rss_kb") != NULL) {
        if (!get_int(o, "rss_kb", 0, INT32_MAX, &rss))
            return bad(why, why_size, "done frame: rss_kb: expected an integer >= 0");
        out->rss_kb = (long)rss;
    }
    return 0;
}

static void put(json_object *o, const char *key, json_object *v)
{
    json_object_object_add(o, key, v);
}

json_object *ipc_down_write(const struct ipc_down *d)
{
    json_object *o = json_object_new_object();
    if (o == NULL)
        return NULL;
    put(o, "jid", json_object_new_int64(d->jid));
    if (d->kind == IPC_DOWN_CANCEL) {
        put(o, "kind", json_object_new_string("cancel"));
        return o;
    }
    put(o, "task", json_object_new_string(d->task));
    put(o, "id", json_object_new_string(d->id));
    put(o, "args", json_object_get(d->args));
    put(o, "kwargs", json_object_get(d->kwargs));
    put(o, "retries", json_object_new_int(d->retries));
    put(o, "soft", json_object_new_double(d->soft_s));
    if (d->cancelled)
        put(o, "cancelled", json_object_new_boolean(1));
    return o;
}

json_object *ipc_up_write(const struct ipc_up *u)
{
    json_object *o = json_object_new_object();
    if (o == NULL)
        return NULL;
    put(o, "jid", json_object_new_int64(u->jid));
    if (u->kind == IPC_UP_PROGRESS) {
        put(o, "kind", json_object_new_string("progress"));
        put(o, "meta", json_object_get(u->meta));
        return o;
    }
    put(o, "kind", json_object_new_string("done"));
    put(o, "outcome", json_object_new_int(u->outcome));
    put(o, "result", json_object_get(u->result));
    put(o, "exc_type", json_object_new_string(u->exc_type != NULL ? u->exc_type : ""));
    put(o, "exc_message", json_object_new_string(u->exc_message != NULL ? u->exc_message : ""));
    put(o, "retry_in", json_object_new_double(u->retry_in_s));
    put(o, "runtime", json_object_new_double(u->runtime_s));
    put(o, "cancelled", json_object_new_boolean(u->cancelled));
    put(o, "soft_expired", json_object_new_boolean(u->soft_expired));
    if (u->rss_kb >= 0)
        put(o, "rss_kb", json_object_new_int64(u->rss_kb));
    return o;
}

int ipc_json_depth(json_object *o, int limit)
{
    if (limit <= 0)
        return 1;
    int below = 0;
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o) && below < limit; i++) {
            int d = ipc_json_depth(json_object_array_get_idx(o, i), limit - 1);
            below = d > below ? d : below;
        }
    } else if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, key, val)
        {
            (void)key;
            int d = ipc_json_depth(val, limit - 1);
            below = d > below ? d : below;
            if (below >= limit)
                break;
        }
    }
    return 1 + below;
}
