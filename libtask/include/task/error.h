/*
 * task/error.h - libtask error codes.
 *
 * Every libtask function that can fail returns 0 or one of the negative codes below. Each code's
 * name, value and message are declared once, in TASK_ERRNO_MAP. Values never change: new codes are
 * added last and none is ever removed.
 */
#ifndef TASK_ERROR_H
#define TASK_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define TASK_API __attribute__((visibility("default")))

#define TASK_ERRNO_MAP(X)                                                  \
    X(ENOMEM,      -1,  "out of memory")                                   \
    X(EINVAL,      -2,  "invalid argument")                                \
    X(ECONFIG,     -3,  "bad configuration")                               \
    X(ECONNECT,    -4,  "no broker reachable")                             \
    X(ETIMEDOUT,   -5,  "timed out")                                       \
    X(EPROTO,      -6,  "malformed message")                               \
    X(EAUTH,       -7,  "broker refused the credentials")                  \
    X(EBROKER,     -8,  "broker refused the operation")                    \
    X(ECLOSED,     -9,  "connection lost")                                 \
    X(ENOTFOUND,   -10, "not found")                                       \
    X(ENACK,       -11, "broker did not accept the message")               \
    X(ETOOBIG,     -12, "message too large")                               \
    X(EIO,         -13, "input/output error")                              \
    X(ECANCELLED,  -14, "cancelled")                                       \
    X(EHTTP,       -15, "HTTP transfer failed")                            \
    X(ELOAD,       -16, "cannot load module")                             \
    X(EUNROUTABLE, -17, "no queue took the message (it was returned)")

enum task_errno {
#define TASK_X_ENUM(name, val, msg) TASK_##name = (val),
    TASK_ERRNO_MAP(TASK_X_ENUM)
#undef TASK_X_ENUM
};

/*
 * task_error - detail for calls that have no handle to keep it in (constructors, loaders).
 * code: 0 or a TASK_E* value; msg: one line, "" if none. The first error recorded wins, so a
 * follow-up failure never hides the root cause. Zero-initialise before use.
 */
typedef struct task_error {
    int code;
    char msg[256];
} task_error;

/* task_strerror - static text for `code`; never NULL (unknown codes get "unknown error"). */
TASK_API const char *task_strerror(int code);

/* task_err_name - the code's name, e.g. "TASK_ETIMEDOUT", for logs; never NULL. */
TASK_API const char *task_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif
