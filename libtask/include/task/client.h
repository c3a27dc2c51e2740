/*
 * task/client.h - sending tasks and waiting for their results.
 *
 * A task_client owns one AMQP connection (publisher confirms on) and one reply queue, declared by
 * the client, on which the workers publish every state change of the tasks it sent (Celery's rpc
 * result format). A client is not thread-safe: use one per thread. It starts no threads.
 *
 * Replies that arrive before anyone waits for them are kept for a later task_wait(), up to the
 * last 65536 tasks (by the time of their latest state); past that the oldest are dropped, so a
 * long-lived client that never waits stays bounded. A task_wait() for a dropped id times out:
 * task_lookup() still finds its result in the results stream.
 */
#ifndef TASK_CLIENT_H
#define TASK_CLIENT_H

#include <stdbool.h>
#include <json-c/json.h>
#include <task/config.h>
#include <task/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct task_client task_client;

/* A task id as text (a UUID: 36 characters). Passed by value: nothing to free. */
typedef struct task_id {
    char str[37];
} task_id;

typedef enum task_state {
    TASK_STATE_PENDING = 0, /* unknown or not started */
    TASK_STATE_RECEIVED,
    TASK_STATE_STARTED,
    TASK_STATE_PROGRESS,
    TASK_STATE_RETRY,
    TASK_STATE_SUCCESS,
    TASK_STATE_FAILURE,
    TASK_STATE_REVOKED,
    TASK_STATE_OTHER,       /* a custom state name */
} task_state;

/* task_state_name - "SUCCESS" etc.; never NULL. */
TASK_API const char *task_state_name(task_state s);
/* task_state_from_name - TASK_STATE_OTHER for a name it does not know. */
TASK_API task_state task_state_from_name(const char *name);
/* task_state_is_final - SUCCESS, FAILURE and REVOKED. */
TASK_API bool task_state_is_final(task_state s);

/* Options for task_send(); zero means default for every field. Strings are borrowed. */
typedef struct task_send_opts {
    double countdown_s;      /* run no earlier than now + countdown */
    double eta;              /* run no earlier than this Unix time (seconds); 0: not set */
    double expires_s;        /* expire this many seconds after sending; 0: never */
    int priority;            /* 0..9 (queue needs x-max-priority); 0: not set */
    const char *queue;       /* NULL: the task's default queue or client.default_queue */
    int retries;             /* retries so far (for re-publishing) */
    const char *task_id;     /* use this id instead of a new UUIDv7 */
    const char *root_id;     /* workflow root; NULL: the task's own id */
    const char *parent_id;   /* NULL: none */
    const char *group_id;    /* NULL: none */
    double time_limit_s;     /* per-call hard limit; 0: the task's */
    double soft_time_limit_s;
    bool ignore_result;      /* the worker publishes no state messages */
    json_object *link;       /* borrowed: array of signatures run on success */
    json_object *link_error; /* borrowed: array of signatures run on failure */
    json_object *chain;      /* borrowed: remaining chain, Celery order (a stack: last runs next) */
} task_send_opts;

/*
 * task_client_new - connect to the first reachable broker of cfg->broker_urls and declare this
 * client's reply queue. `cfg` is borrowed (NULL: defaults plus environment). Fails within about
 * cfg->connect_timeout_s per URL with TASK_ECONNECT (unreachable), TASK_EAUTH (refused login) or
 * another code; detail in `err` (never contains a password). Returns a new client (free with
 * task_client_free()) or NULL. Since: 0.1.
 */
TASK_API task_client *task_client_new(const task_config *cfg, task_error *err);

/* task_client_free - close the connection and free; NULL is a no-op. */
TASK_API void task_client_free(task_client *c);

/* task_client_errmsg - detail of the last failed call on `c`; "" if none. Borrowed. */
TASK_API const char *task_client_errmsg(const task_client *c);

/*
 * task_send - publish a call of task `name` and return once the broker confirmed it.
 * args (JSON array) and kwargs (JSON object) are borrowed; NULL means [] and {}. `opts` may be
 * NULL. On success writes the task id to *id. Returns 0, TASK_EINVAL, TASK_ENACK, TASK_ETIMEDOUT
 * (no confirm within client.send_timeout), TASK_ECLOSED or another TASK_E*. Since: 0.1.
 */
TASK_API int task_send(task_client *c, const char *name, json_object *args, json_object *kwargs,
                       const task_send_opts *opts, task_id *id);

/*
 * task_wait - block until task `id` (borrowed) reaches a final state or `timeout_ms` passes.
 * Only tasks sent by this client report here. timeout_ms: -1 waits forever; 0 looks only at
 * replies already received.
 * state  [out] SUCCESS, FAILURE or REVOKED.
 * result [out] new reference (release with json_object_put()): the return value on SUCCESS, the
 *              exception object {"exc_type", "exc_message", "exc_module"} otherwise. May be NULL.
 * Returns 0, TASK_ETIMEDOUT, or another TASK_E*. Outputs are written only on success.
 */
TASK_API int task_wait(task_client *c, const char *id, int timeout_ms, task_state *state,
                       json_object **result);

/*
 * task_state_cb - called by task_wait_progress() for each non-final state message of the waited
 * task (STARTED, PROGRESS, RETRY). `meta` is borrowed for the call.
 */
typedef void (*task_state_cb)(const char *id, task_state state, const char *state_name,
                              json_object *meta, void *userdata);

/* task_wait_progress - task_wait() that also reports intermediate states to `cb`. */
TASK_API int task_wait_progress(task_client *c, const char *id, int timeout_ms,
                                task_state *state, json_object **result, task_state_cb cb,
                                void *userdata);

/*
 * task_client_last_state - the latest state this client has seen for `id` (no waiting, no I/O
 * beyond reading replies already in the socket). PENDING when none. `meta`: new reference or
 * NULL.
 */
TASK_API int task_client_poll(task_client *c, const char *id, task_state *state,
                              json_object **meta);

/*
 * task_lookup - the latest state of task `id` (borrowed) as recorded in the results stream, from
 * any process, with no waiting: reads the id's results stream from `since_s` (Unix seconds; 0:
 * from the time in a UUIDv7 id less 0.25 s; for an id with no time in it, such as a Celery
 * uuid4, in windows back from now, 5 s, 1 min, 4 min, 15 min, 1 h, 6 h, then the stream's whole
 * retention, until a window holds a record of the id) to the id's first final state or the
 * stream's current end. A client remembers where its lookups of the last 64 ids without a final
 * state stopped, and the next lookup of such an id (since_s 0) reads on from there. The hosts that make ids and look them up must agree on the time
 * within 0.25 s (the broker's clock does not matter); pass since_s otherwise.
 * state  [out] PENDING when the id was never seen (or is older than the retention).
 * result [out] new reference or NULL: the value, PROGRESS meta or exception object.
 * Returns 0 or a negative TASK_E*. Since: 0.1.
 */
TASK_API int task_lookup(task_client *c, const char *id, double since_s, task_state *state,
                         json_object **result);

/*
 * task_watch - like task_wait(), for a task sent by any process: follows the results stream from
 * `since_s` (as task_lookup()) until the task reaches a final state or timeout_ms passes
 * (TASK_ETIMEDOUT). `cb` (may be NULL) sees intermediate states. A results stream that no
 * worker has created yet is read once it appears, and after a reconnect the watch reads on
 * from its last record.
 */
TASK_API int task_watch(task_client *c, const char *id, double since_s, int timeout_ms,
                        task_state *state, json_object **result, task_state_cb cb,
                        void *userdata);

/* task_client_reply_queue - this client's reply queue name (borrowed). */
TASK_API const char *task_client_reply_queue(const task_client *c);

#ifdef __cplusplus
}
#endif
#endif
