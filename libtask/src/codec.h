/*
 * codec.h - Celery message protocol v2 (JSON) for task and result messages.
 *
 * Pure code: no I/O. Encoding fills rabbitmq-c property structs that point into the source
 * message and a wire struct; decoding copies everything it keeps, so the AMQP buffers may be
 * released right after. Every malformed input gets a distinct reason (enum task__bad), which
 * taskd puts in the x-taskd-error header of the quarantined copy.
 */
#ifndef TASK_CODEC_H
#define TASK_CODEC_H

#include <amqp.h>
#include <stdbool.h>
#include <json-c/json.h>
#include "internal.h"

/* Why a message was refused: symbol, slug (the x-taskd-error value prefix). */
#define TASK_BAD_MAP(X)                                  \
    X(NONE, "none")                                      \
    X(CONTENT_TYPE, "content-type")                      \
    X(CONTENT_ENCODING, "content-encoding")              \
    X(TOO_BIG, "too-big")                                \
    X(NO_HEADERS, "no-headers")                          \
    X(NO_TASK, "missing-task")                           \
    X(NO_ID, "missing-id")                               \
    X(BAD_HEADER, "bad-header")                          \
    X(NOT_JSON, "not-json")                              \
    X(BAD_UTF8, "invalid-utf8")                          \
    X(TOO_DEEP, "too-deep")                              \
    X(BODY_SHAPE, "body-shape")                          \
    X(ARGS, "args-not-list")                             \
    X(KWARGS, "kwargs-not-object")                       \
    X(EMBED, "bad-embed")                                \
    X(ETA, "bad-eta")                                    \
    X(EXPIRES, "bad-expires")                            \
    X(UNKNOWN_TASK, "unknown-task")                      \
    X(UNSIGNED, "unsigned")                              \
    X(ENVELOPE, "bad-envelope")                          \
    X(UNTRUSTED, "untrusted-signer")                     \
    X(CERT_EXPIRED, "cert-expired")                      \
    X(SIGNATURE, "bad-signature")

enum task__bad {
#define TASK_X_BAD(sym, slug) TASK_BAD_##sym,
    TASK_BAD_MAP(TASK_X_BAD)
#undef TASK_X_BAD
    TASK_BAD__COUNT
};
/* "missing-id" etc.; never NULL. */
const char *task__bad_slug(enum task__bad b);

/* Limits applied by the decoder. Zero fields take the defaults (16 MiB, depth 64). */
struct task__limits {
    size_t max_body_bytes;
    int max_depth;
};

/*
 * A task message. When decoded, every pointer is owned by the struct (task__msg_clear() frees);
 * when built for encoding, the caller may point at borrowed data and must not call _clear().
 */
struct task__msg {
    /* headers */
    char *lang, *task, *id, *shadow, *group, *root_id, *parent_id;
    char *argsrepr, *kwargsrepr, *origin;
    int group_index;            /* -1: null */
    int retries;
    double eta;                 /* Unix seconds; 0: null */
    double expires;             /* Unix seconds; 0: null */
    double timelimit_hard;      /* seconds; 0: null */
    double timelimit_soft;
    bool ignore_result;
    /* properties */
    char *correlation_id, *reply_to;
    int priority;               /* 0..255 */
    int delivery_mode;          /* 2 = persistent */
    /* body */
    json_object *args;          /* array */
    json_object *kwargs;        /* object */
    json_object *callbacks, *errbacks, *chain, *chord; /* NULL for JSON null */
};

/* Encoded form. Properties point into the task__msg and into this struct: keep both alive
 * until the publish returns. */
struct task__wire {
    amqp_basic_properties_t props;
    amqp_table_entry_t hdr[20];
    amqp_field_value_t timelimit[2];
    char eta_buf[40], expires_buf[40], expiration_buf[24], origin_buf[300];
    char *argsrepr, *kwargsrepr; /* owned when derived from args/kwargs */
    char *id, *correlation_id;  /* owned copies: a caller's id may live on its stack */
    char *body;                 /* owned: free with task__wire_free() */
    size_t body_len;
};

void task__msg_clear(struct task__msg *m);

/*
 * task__msg_encode - build properties, headers and body for `m` (borrowed). Missing root_id means
 * id; NULL args/kwargs mean [] and {}; lang defaults to "c". Returns 0, TASK_EINVAL (no id or task)
 * or TASK_ENOMEM.
 */
/* Properties of a kombu JSON message as Celery sends them: content type and encoding, `headers`
 * (borrowed), priority 0, delivery mode 1 (transient) or 2 (persistent). */
amqp_basic_properties_t task__json_props(amqp_table_t headers, uint8_t delivery_mode);

int task__msg_encode(const struct task__msg *m, struct task__wire *w, task_error *err);
void task__wire_free(struct task__wire *w);

/*
 * task__msg_decode - validate and copy a delivered message into *out (zeroed first). props and
 * body are borrowed. On failure returns TASK_EPROTO (or TASK_ENOMEM), sets *reason and a
 * one-line message in err; *out keeps whatever header fields were read so far (id, task,
 * reply_to, correlation_id) so the caller can address a FAILURE result; clear it either way.
 */
int task__msg_decode(const amqp_basic_properties_t *props, const void *body, size_t len,
                     const struct task__limits *lim, struct task__msg *out,
                     enum task__bad *reason, task_error *err);

/* Parse JSON text under the limits (UTF-8 validated, depth-limited). New reference, or NULL with
 * *reason NOT_JSON, BAD_UTF8, TOO_DEEP, TOO_BIG, or TASK_BAD__COUNT for out-of-memory. NULL with
 * *reason TASK_BAD_NONE is the JSON value null. */
json_object *task__json_parse(const void *text, size_t len, int max_depth, enum task__bad *reason,
                              task_error *err);

/* ---- result (rpc backend) messages ---- */

struct task__result {
    char *task_id;
    char *status;               /* "SUCCESS", "PROGRESS", any custom state */
    json_object *result;        /* value, meta or exception object; NULL for JSON null */
    char *traceback;            /* NULL for null */
    json_object *children;      /* array; NULL means [] */
    int delivery_count;         /* taskd extra: times the message was delivered; 0: omit */
    char *hostname;             /* taskd extra: worker node name; NULL: omit */
    double date_done;           /* Unix seconds; 0: omit (Python's rpc backend omits it) */
};

struct task__result_wire {
    amqp_basic_properties_t props;
    char *body;                 /* owned */
    size_t body_len;
};

void task__result_clear(struct task__result *r);
/* Body keys in Celery's order: task_id, status, result, traceback, children (+ extras). */
int task__result_encode(const struct task__result *r, struct task__result_wire *w,
                        task_error *err);
void task__result_wire_free(struct task__result_wire *w);
/* Decode a state message; copies. Returns 0 or TASK_EPROTO (no task_id/status, not an object). */
int task__result_decode(const void *body, size_t len, struct task__result *out, task_error *err);

/* {"exc_type": type, "exc_message": [message], "exc_module": module}. New reference. */
json_object *task__exc_new(const char *type, const char *message, const char *module);

#endif
