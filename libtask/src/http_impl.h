/*
 * http_impl.h - what ctx.c needs from http.c. Never installed.
 *
 * task_ctx.http holds a CURL easy handle; its CURLOPT_PRIVATE is the CURLM multi handle that
 * drives it and owns the connection cache, so both survive from one transfer to the next.
 */
#ifndef TASK_HTTP_IMPL_H
#define TASK_HTTP_IMPL_H

/* Frees an easy handle made by http.c and the multi handle kept with it; NULL is a no-op. */
void task__http_release(void *http);

/* Wake a transfer running on `http` so it sees a cancel now; any thread; NULL is a no-op. */
void task__http_wakeup(void *http);

#endif
