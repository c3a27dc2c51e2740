/*
 * ipc_frame.h - the fields of the JSON frames between the supervisor and a pool child, spelled
 * in one place, and their validation. ipc.h moves frames; this reads what is in them.
 *
 * Down (supervisor -> child):
 *   job     {"jid": N, "task": S, "id": S, "args": [...], "kwargs": {...}, "retries": N,
 *            "soft": SECONDS[, "cancelled": true]}
 *   cancel  {"kind": "cancel", "jid": N}
 * Up (child -> supervisor):
 *   done    {"jid": N, "kind": "done", "outcome": N, "result": V, "exc_type": S,
 *            "exc_message": S, "retry_in": SECONDS, "runtime": SECONDS, "cancelled": B,
 *            "soft_expired": B, "rss_kb": N}
 *   progress {"jid": N, "kind": "progress", "meta": V}
 *
 * Both sides build frames with the writers and read them with the readers below, so the keys
 * are spelled here only. The readers are pure (no I/O, no state), so a fuzzer can drive them:
 * a frame that does not validate is a bug in the peer, and the caller decides what that costs
 * (pool.c kills the child; child.c exits).
 */
#ifndef TASKD_IPC_FRAME_H
#define TASKD_IPC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

enum ipc_down_kind { IPC_DOWN_JOB, IPC_DOWN_CANCEL };

/* A frame read by a child. Pointers are borrowed from the frame: valid while it lives. */
struct ipc_down {
    enum ipc_down_kind kind;
    int64_t jid;             /* > 0 */
    /* IPC_DOWN_JOB only: */
    const char *task;        /* non-empty */
    const char *id;          /* non-empty */
    json_object *args;       /* an array */
    json_object *kwargs;     /* an object */
    int retries;             /* >= 0 */
    double soft_s;           /* soft time limit, >= 0; 0: none */
    bool cancelled;          /* revoked before it started: run it already cancelled */
};

enum ipc_up_kind { IPC_UP_DONE, IPC_UP_PROGRESS };

/* A frame read by the supervisor. Pointers are borrowed from the frame. */
struct ipc_up {
    enum ipc_up_kind kind;
    int64_t jid;             /* > 0 */
    /* IPC_UP_DONE only: */
    int outcome;             /* as returned by the task: TASK_OK, TASK_FAIL, TASK_RETRY, or any
                              * other int (the runner reports it as an unknown outcome) */
    json_object *result;     /* any value; NULL for JSON null or absent */
    const char *exc_type;    /* "" when absent */
    const char *exc_message; /* "" when absent */
    double retry_in_s;       /* < 0: none asked (the retry policy decides) */
    double runtime_s;        /* >= 0 */
    bool cancelled;          /* its ctx was cancelled (revoke) when it returned */
    bool soft_expired;       /* it returned past its soft time limit */
    long rss_kb;             /* >= 0; -1 when absent */
    /* IPC_UP_PROGRESS only: */
    json_object *meta;       /* any value; NULL for JSON null */
    json_object *frame;      /* the frame read (borrowed): keep a reference to keep the rest */
};

/*
 * ipc_down_read / ipc_up_read - check frame `o` (borrowed) and fill *out. Returns 0, or
 * TASK_EPROTO with a one-line reason in `why` (e.g. "job frame: task: expected a non-empty
 * string"); *out is then unspecified. Unknown keys are ignored (a newer peer may add some).
 */
int ipc_down_read(json_object *o, struct ipc_down *out, char *why, size_t why_size);
int ipc_up_read(json_object *o, struct ipc_up *out, char *why, size_t why_size);

/*
 * The writers: a new frame (new reference; NULL when out of memory) from the struct. Values in
 * the struct are borrowed (a reference is taken for the frame); `kind` picks the frame.
 */
json_object *ipc_down_write(const struct ipc_down *d);
json_object *ipc_up_write(const struct ipc_up *u);

/* Nesting depth of `o` as json-c's tokener counts it (task_limits.h: a scalar or "[]" is 1,
 * "[1]" is 2; JSON null too is 1), stopping once it passes `limit` (returns limit + 1 then), so
 * a child can refuse a result deeper than TASK__RESULT_MAX_DEPTH before it sends it. */
int ipc_json_depth(json_object *o, int limit);

#endif
