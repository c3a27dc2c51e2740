/* jsonarg.h - a JSON command-line argument (--args, --kwargs), read as strictly as Python's
 * json.loads in its strict form: what taskctl sends is what a Celery worker would run. */
#ifndef TASKCTL_JSONARG_H
#define TASKCTL_JSONARG_H

#include <stddef.h>
#include <json-c/json.h>

/*
 * ctl_json_arg - parse `text` (borrowed, NUL-terminated) as one JSON value of type `want`
 * (json_type_array or json_type_object). Refused, with a one-line reason in `why`: anything but
 * JSON (single quotes, trailing commas, comments, leading zeros), bytes after the value, NaN,
 * Infinity and numbers too large for a double, integers that do not fit in 64 bits (json-c
 * would change them), invalid UTF-8, nesting deeper than a task
 * message may carry (task_limits.h), another type. Returns a new reference (release with
 * json_object_put()) or NULL. Pure: no I/O.
 */
json_object *ctl_json_arg(const char *text, json_type want, char *why, size_t why_size);

#endif
