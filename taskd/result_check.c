/* result_check.c - see result_check.h. */
#include <stdio.h>
#include "internal.h"
#include "ipc_frame.h"
#include "result_check.h"
#include "task_limits.h"

const char *result_unstorable(json_object *result, size_t max_bytes, char *buf, size_t size)
{
    if (result == NULL)
        return NULL;
    if (ipc_json_depth(result, TASK__RESULT_MAX_DEPTH) > TASK__RESULT_MAX_DEPTH) {
        snprintf(buf, size, "result nested deeper than %d levels", TASK__RESULT_MAX_DEPTH);
        return buf;
    }
    size_t len = 0;
    const char *text = task__json_str(result, &len);
    /* The record around it adds a few hundred bytes; a batch of records is flushed early. */
    if (max_bytes > 0 && len + 65536 > max_bytes) {
        snprintf(buf, size, "result of %zu bytes exceeds the %zu a result may take", len,
                 max_bytes - 65536);
        return buf;
    }
    if (!task__utf8_valid(text, len)) {
        snprintf(buf, size, "result is not valid UTF-8");
        return buf;
    }
    return NULL;
}
