/*
 * task_limits.h - the one table of limits on what taskd and libtask read: JSON nesting depth and
 * sizes. Every parser of a task message, an IPC frame, a result message, a stream record or a
 * control request takes its numbers from here, so nothing a worker accepts (or writes) is
 * unreadable to a lookup or a client.
 *
 * Depth is counted as json-c's tokener counts it, one level per value on the way down: a
 * scalar or "[]" is depth 1, "[1]" depth 2, {"a":[1]} depth 3.
 *
 * How the wrappers line up (why one depth serves every reader):
 *   task body       [args, kwargs, embed]        a value in args sits 2 levels down
 *   IPC job frame   {"args": [v, ...], ...}       the same 2 levels as in the body
 *   IPC done frame  {"result": v, ...}            1 level
 *   result message  {"result": v, ...}            1 level
 *   stream batch    [{"result": v, ...}, ...]     2 levels (a single record: 1)
 * So a value a worker may take in (args, at most TASK__JSON_MAX_DEPTH - 2 deep) or hand back
 * (a result or PROGRESS meta, at most TASK__RESULT_MAX_DEPTH) fits every wrapper at
 * TASK__JSON_MAX_DEPTH. A result deeper than TASK__RESULT_MAX_DEPTH must be refused before it
 * is published (it would be unreadable in a stream batch).
 *
 * Changing a number here changes what every reader accepts: keep worker.json_max_depth's range
 * (config_opts.c) within TASK__JSON_MAX_DEPTH, and re-run tests/unit/test_limits.c.
 */
#ifndef TASK__LIMITS_H
#define TASK__LIMITS_H

/* Every JSON document read by libtask or taskd: task bodies, IPC frames, result messages,
 * stream messages, control requests. Also the most worker.json_max_depth may be set to. */
#define TASK__JSON_MAX_DEPTH 64
/* Levels the deepest wrapper (a stream batch: [ {"result": v} ]) adds around a value. */
#define TASK__JSON_WRAP_DEPTH 2
/* The deepest result or PROGRESS meta a worker may publish. */
#define TASK__RESULT_MAX_DEPTH (TASK__JSON_MAX_DEPTH - TASK__JSON_WRAP_DEPTH)

/* IPC frames between the supervisor and a pool child, and only they, read deeper: a frame is
 * written by our own code, and a child's frame that cannot be parsed costs the whole child (every
 * task it runs). A task may build a result deeper than TASK__RESULT_MAX_DEPTH; the frame must
 * still carry it to the supervisor, which refuses it as that task's failure. */
#define TASK__IPC_MAX_DEPTH (TASK__JSON_MAX_DEPTH * 32)

/* A task message body: worker.max_message_size's default and the codec's when none is set. */
#define TASK__MAX_MESSAGE_BYTES (16u * 1024u * 1024u)
/* The most worker.max_message_size may be set to (1 GiB). */
#define TASK__MAX_MESSAGE_BYTES_CAP (1024u * 1024u * 1024u)
/* An IPC frame carries one task body plus its fields (id, name, limits): the cap on a body plus
 * room for them, so the largest body a worker accepts always fits a frame. */
#define TASK__IPC_FRAME_OVERHEAD (64u * 1024u)
#define TASK__IPC_MAX_FRAME (TASK__MAX_MESSAGE_BYTES_CAP + TASK__IPC_FRAME_OVERHEAD)

/* Macro values as text, for the option table's defaults. */
#define TASK__STR_(x) #x
#define TASK__STR(x) TASK__STR_(x)

#endif
