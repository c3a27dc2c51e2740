/*
 * control_req.h - a pidbox request read and checked apart from acting on it, so that every
 * worker's reading of what anyone may publish to the celery.pidbox fanout is one pure function
 * (unit-tested and fuzzed without a broker). control_on_delivery() (control.c) acts on it.
 */
#ifndef TASKD_CONTROL_REQ_H
#define TASKD_CONTROL_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

/* AMQP short strings (routing keys) and Celery's names fit in this. */
#define CONTROL_SHORT_MAX 255

/* Why a request was refused: a slug for the log line and the metrics label. */
#define CONTROL_BAD_MAP(X)                                                                       \
    X(NOT_JSON, "not_json")                                                                      \
    X(NOT_OBJECT, "not_object")                                                                  \
    X(METHOD, "bad_method")                                                                      \
    X(DESTINATION, "bad_destination")                                                            \
    X(ARGUMENTS, "bad_arguments")                                                                \
    X(REPLY_TO, "bad_reply_to")                                                                  \
    X(TICKET, "bad_ticket")

enum control_bad {
    CONTROL_BAD_NONE = 0,
#define CONTROL_X_ENUM(sym, slug) CONTROL_BAD_##sym,
    CONTROL_BAD_MAP(CONTROL_X_ENUM)
#undef CONTROL_X_ENUM
    CONTROL_BAD__COUNT
};

const char *control_bad_slug(enum control_bad b);

/* A checked request. Strings and objects are borrowed from `root` (control_req_free() drops
 * it). */
struct control_req {
    json_object *root;
    const char *method;     /* a string of 1..255 bytes */
    json_object *args;      /* an object, or NULL when the request had none */
    const char *reply_rk;   /* reply_to.routing_key (1..255 bytes); NULL: a cast, no reply */
    const char *ticket;     /* NULL when reply_rk is */
    bool for_me;            /* no destination, or `hostname` is in it */
};

/*
 * control_req_parse - read one request body (len bytes of JSON) for the worker `hostname`.
 * 0 with *out filled (free with control_req_free()), or TASK_EPROTO with *why set and *out
 * empty. Nothing in the body is trusted: a field of the wrong type refuses the request rather
 * than being coerced, except destination elements that are not strings (they name no one).
 */
int control_req_parse(const void *body, size_t len, const char *hostname,
                      struct control_req *out, enum control_bad *why);
void control_req_free(struct control_req *req);

/* The task ids of a revoke's "task_id" (a string or an array): the i-th, or NULL past the end
 * or for an element that is not an id (not a string of 1..TASK__ID_MAX bytes). */
size_t control_revoke_count(json_object *args);
const char *control_revoke_id(json_object *args, size_t i);

#endif
