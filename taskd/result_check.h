/* result_check.h - can a task's result be stored where every reader can read it back? A result
 * deeper than TASK__RESULT_MAX_DEPTH, larger than the worker's message limit or not UTF-8 would be
 * accepted by task_wait() and unreadable to task_lookup() (or to the broker): it becomes a FAILURE
 * (EncodeError) instead, the same for both. */
#ifndef TASKD_RESULT_CHECK_H
#define TASKD_RESULT_CHECK_H

#include <stddef.h>
#include <json-c/json.h>

/* Why `result` (may be NULL) cannot be stored, written to buf, or NULL when it can.
 * `max_bytes` bounds its JSON text (0: no bound). */
const char *result_unstorable(json_object *result, size_t max_bytes, char *buf, size_t size);

#endif
