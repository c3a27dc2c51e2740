/*
 * task/http.h - libcurl helpers for tasks.
 *
 * Transfers made through these helpers stop when the task is cancelled (soft time limit,
 * revoke, cold shutdown): task_cancelled() is checked while the transfer runs, and the transfer
 * timeout is capped by the time left before the task's soft limit.
 */
#ifndef TASK_HTTP_H
#define TASK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <task/task.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct task_http_opts {
    double timeout_s;            /* whole transfer; 0: 60 s */
    double connect_timeout_s;    /* 0: 10 s */
    bool follow_redirects;       /* up to 10 */
    const char *const *headers;  /* borrowed, NULL-terminated list of "Name: value"; may be NULL */
    size_t max_body_bytes;       /* responses larger than this fail with TASK_ETOOBIG; 0: 64 MiB */
} task_http_opts;

typedef struct task_http_response {
    long status;                 /* HTTP status, e.g. 200 */
    char *body;                  /* NUL-terminated; owned: task_http_response_free() */
    size_t body_len;
    char *headers;               /* raw response header block, NUL-terminated; owned */
    size_t headers_len;
} task_http_response;

/*
 * task_http_request - perform `method` ("GET", "POST", ...) on `url` (borrowed) with an optional
 * request body (borrowed, may be NULL) for task `ctx` (NULL outside a task: no cancellation).
 * The connection is reused for later calls of the same task. `resp` is filled on success (any
 * HTTP status is success); free it with task_http_response_free().
 * Returns 0, TASK_ECANCELLED (the task was cancelled), TASK_ETIMEDOUT, TASK_ETOOBIG or TASK_EHTTP.
 * Thread-safe for different ctx values. Since: 0.1.
 */
TASK_API int task_http_request(task_ctx *ctx, const char *method, const char *url,
                               const char *body, size_t body_len, const char *content_type,
                               const task_http_opts *opts, task_http_response *resp);

/* task_http_get - task_http_request(ctx, "GET", url, NULL, 0, NULL, opts, resp). */
TASK_API int task_http_get(task_ctx *ctx, const char *url, const task_http_opts *opts,
                           task_http_response *resp);

/* task_http_post - POST `body` with `content_type` (NULL: application/json). */
TASK_API int task_http_post(task_ctx *ctx, const char *url, const char *body, size_t body_len,
                            const char *content_type, const task_http_opts *opts,
                            task_http_response *resp);

/* task_http_response_free - frees what `resp` owns and zeroes it; NULL is a no-op. */
TASK_API void task_http_response_free(task_http_response *resp);

#ifdef __cplusplus
}
#endif
#endif
