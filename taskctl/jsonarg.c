/* jsonarg.c - see jsonarg.h. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "codec.h"
#include "jsonarg.h"
#include "task_limits.h"

/* json-c reads NaN, Infinity and 1e999 (as inf) even when strict; JSON has none of them, and a
 * Celery worker would see a different value or refuse the message. */
static bool all_finite(json_object *o, int depth)
{
    if (depth > TASK__JSON_MAX_DEPTH)
        return false; /* cannot happen: the parser stopped deeper input */
    switch (json_object_get_type(o)) {
    case json_type_double:
        return isfinite(json_object_get_double(o));
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(o); i++)
            if (!all_finite(json_object_array_get_idx(o, i), depth + 1))
                return false;
        return true;
    case json_type_object: {
        json_object_object_foreach(o, key, val)
        {
            (void)key;
            if (!all_finite(val, depth + 1))
                return false;
        }
        return true;
    }
    default:
        return true;
    }
}

/* json-c saturates an integer past int64 (or uint64) without a word: 99999999999999999999 would
 * be sent as 18446744073709551615. Python keeps big integers exactly, so refuse rather than
 * change the number. Returns the offset of the first such integer, or -1. Runs on text the
 * parser took, so strings and numbers are well-formed. */
static long long big_integer_at(const char *s)
{
    bool in_str = false;
    for (const char *p = s; *p != '\0'; p++) {
        if (in_str) {
            if (*p == '\\' && p[1] != '\0')
                p++;
            else if (*p == '"')
                in_str = false;
            continue;
        }
        if (*p == '"') {
            in_str = true;
            continue;
        }
        if (*p != '-' && (*p < '0' || *p > '9'))
            continue;
        const char *start = p;
        if (*p == '-')
            p++;
        while (*p >= '0' && *p <= '9')
            p++;
        bool integer = *p != '.' && *p != 'e' && *p != 'E';
        if (integer) {
            errno = 0;
            if (*start == '-')
                (void)strtoll(start, NULL, 10);
            else
                (void)strtoull(start, NULL, 10);
            if (errno == ERANGE)
                return start - s;
        }
        while (*p != '\0' && strchr("0123456789.eE+-", *p) != NULL)
            p++;
        p--;
    }
    return -1;
}

json_object *ctl_json_arg(const char *text, json_type want, char *why, size_t why_size)
{
    const char *type = want == json_type_array ? "array" : "object";
    enum task__bad reason;
    task_error err = {0};
    /* args and kwargs sit one level down in a task body ([args, kwargs, embed]). */
    json_object *o = task__json_parse(text, strlen(text), TASK__JSON_MAX_DEPTH - 1, &reason,
                                      &err);
    if (o == NULL && reason != TASK_BAD_NONE) {
        /* The codec's messages speak of a "body": here it is the argument. */
        const char *detail = strncmp(err.msg, "body: ", 6) == 0 ? err.msg + 6 : err.msg;
        if (reason == TASK_BAD_TOO_DEEP)
            snprintf(why, why_size, "not valid: nested deeper than %d levels",
                     TASK__JSON_MAX_DEPTH - 1);
        else if (strncmp(detail, "not strict JSON", 15) == 0)
            snprintf(why, why_size, "%s", detail);
        else
            snprintf(why, why_size, "not strict JSON: %s", detail[0] ? detail : "unreadable");
        return NULL;
    }
    if (!json_object_is_type(o, want)) {
        snprintf(why, why_size, "expected a JSON %s", type);
        json_object_put(o);
        return NULL;
    }
    long long big = big_integer_at(text);
    if (big >= 0) {
        snprintf(why, why_size, "not valid: the integer at byte %lld does not fit in 64 bits",
                 big);
        json_object_put(o);
        return NULL;
    }
    if (!all_finite(o, 1)) {
        snprintf(why, why_size, "not strict JSON: NaN, Infinity or a number out of range");
        json_object_put(o);
        return NULL;
    }
    return o;
}
