/* error.c - error codes, their text, and the first-error-wins detail buffer. */
#include <stdio.h>
#include <string.h>
#include "internal.h"

const char *task_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define TASK_X_MSG(name, val, msg) \
    case (val):                    \
        return (msg);
        TASK_ERRNO_MAP(TASK_X_MSG)
#undef TASK_X_MSG
    }
    return "unknown error";
}

const char *task_err_name(int code)
{
    switch (code) {
    case 0:
        return "0";
#define TASK_X_NAME(name, val, msg) \
    case (val):                     \
        return "TASK_" #name;
        TASK_ERRNO_MAP(TASK_X_NAME)
#undef TASK_X_NAME
    }
    return "TASK_E?";
}

int task__vfail(task_error *err, int code, const char *fmt, va_list ap)
{
    if (err == NULL || err->code != 0)
        return code;
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    /* One line only: a broker reply or a file's text must not break log lines. */
    for (char *p = err->msg; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    }
    return code;
}

int task__fail(task_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    task__vfail(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void task__error_clear(task_error *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}
