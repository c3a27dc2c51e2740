/* result_check.c - see result_check.h. */
#include <stdio.h>
#include "internal.h"
#include "result_check.h"
#include "task_limits.h"

int result_depth(json_object *o, int limit)
{
    if (limit < 0)
        return 1;
    int d = 0;
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o) && d <= limit; i++) {
            int k = result_depth(json_object_array_get_idx(o, i), limit - 1);
            d = k > d ? k : d;
        }
        return d + 1;
    }
    if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, key, val) {
            (void)key;
            int k = result_depth(val, limit - 1);
            d = k > d ? k : d;
            if (d > limit)
                break;
        }
        return d + 1;
    }
    return 0;
}

const char *result_unstorable(json_object *result, size_t max_bytes, char *buf, size_t size)
{
    if (result == NULL)
        return NULL;
    if (result_depth(result, TASK__RESULT_MAX_DEPTH) > TASK__RESULT_MAX_DEPTH) {
        snprintf(buf, size, "result nested deeper than %d levels", TASK__RESULT_MAX_DEPTH);
        return buf;
    }
    size_t len = 0;
    const char *text = task__json_str(result, &len);
    /* The record around it adds a few hundred bytes. */
    if (max_bytes > 0 && len + 4096 > max_bytes) {
        snprintf(buf, size, "result of %zu bytes exceeds worker.max_message_size %zu", len,
                 max_bytes);
        return buf;
    }
    if (!task__utf8_valid(text, len)) {
        snprintf(buf, size, "result is not valid UTF-8");
        return buf;
    }
    return NULL;
}
