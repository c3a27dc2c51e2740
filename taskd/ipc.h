/*
 * ipc.h - frames between the supervisor and a pool child over a UNIX stream socket: a 4-byte
 * big-endian length, then that many bytes of JSON. Jobs go down (task, id, args, kwargs,
 * limits); outcomes and progress come back up.
 */
#ifndef TASKD_IPC_H
#define TASKD_IPC_H

#include <stddef.h>
#include <json-c/json.h>

#include "task_limits.h"

/* The largest frame either side reads: a task body at worker.max_message_size's cap, plus its
 * fields (task_limits.h). */
#define IPC_MAX_FRAME TASK__IPC_MAX_FRAME

/* Write one frame (blocking, retries on EINTR; the child's side). Returns 0 or -errno. */
int ipc_send(int fd, json_object *o);

/* A receive buffer for a non-blocking reader. */
struct ipc_buf {
    char *p;
    size_t len, cap;
};
/* Read what is available. Returns >0 bytes read, 0 on EOF, -EAGAIN when nothing is ready, or
 * another -errno. */
int ipc_fill(int fd, struct ipc_buf *b);
/* Take the next complete frame out of the buffer as JSON (new reference), or NULL when no
 * complete frame is buffered. *bad is set when a frame is not JSON (a bug: the caller should
 * treat the peer as broken). */
json_object *ipc_next(struct ipc_buf *b, int *bad);
void ipc_buf_free(struct ipc_buf *b);

/* Frames waiting to be written to a non-blocking socket (the supervisor's side: its loop must
 * never wait for a child to read). */
struct ipc_out {
    char *p;
    size_t off, len, cap;  /* bytes [off, len) are still to be written */
};
/* Append one frame. 0 or -ENOMEM. */
int ipc_queue(struct ipc_out *o, json_object *frame);
/* Write what the socket takes now. 0 (everything written, or the rest waits for POLLOUT) or
 * -errno (the peer is gone). */
int ipc_flush(int fd, struct ipc_out *o);
static inline int ipc_pending(const struct ipc_out *o)
{
    return o->len > o->off;
}
void ipc_out_free(struct ipc_out *o);

/* Blocking read of one frame (child side). NULL on EOF or error. */
json_object *ipc_recv(int fd);

#endif
