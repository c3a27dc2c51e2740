/*
 * test_http.c - the libcurl task helpers (task/http.h) against tests/harness/httpserver.py,
 * which this test starts itself on a free port: status, body, headers, POST, timeouts,
 * cancellation by another thread, the soft-deadline cap, redirects, the body cap and
 * connection reuse through the task context. No broker needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <task/http.h>
#include "ctx.h"
#include "internal.h"

static pid_t server_pid = -1;
static int server_port;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void url_for(char *buf, size_t n, const char *path)
{
    snprintf(buf, n, "http://127.0.0.1:%d%s", server_port, path);
}

/* Starts the server and reads its port from the first line of its stdout. */
static int server_start(void **state)
{
    (void)state;
    const char *src = getenv("TASKD_SOURCE_ROOT");
    char script[4096];
    snprintf(script, sizeof(script), "%s/tests/harness/httpserver.py", src ? src : ".");
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    server_pid = fork();
    if (server_pid < 0)
        return -1;
    if (server_pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execlp("python3", "python3", script, (char *)NULL);
        perror("exec python3");
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    if (f == NULL)
        return -1;
    char line[64];
    int ok = fgets(line, sizeof(line), f) != NULL && sscanf(line, "%d", &server_port) == 1;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "httpserver.py (%s) printed no port\n", script);
        return -1;
    }
    return 0;
}

static int server_stop(void **state)
{
    (void)state;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    return 0;
}

static void get_json_status_body_headers(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/json");
    task_http_response r;
    assert_int_equal(task_http_get(NULL, url, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"n\": 42"));
    assert_int_equal(r.body_len, strlen(r.body));
    assert_non_null(strstr(r.headers, "Content-Type: application/json"));
    assert_int_equal(strncmp(r.headers, "HTTP/1.1 200", 12), 0);
    task_http_response_free(&r);
    assert_null(r.body);
    assert_null(r.headers);
}

static void any_status_is_success(void **state)
{
    (void)state;
    const int codes[] = {201, 404, 500, 503};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        char path[32], url[256];
        snprintf(path, sizeof(path), "/status/%d", codes[i]);
        url_for(url, sizeof(url), path);
        task_http_response r;
        assert_int_equal(task_http_get(NULL, url, NULL, &r), 0);
        assert_int_equal(r.status, codes[i]);
        task_http_response_free(&r);
    }
}

static void post_echoes_body_and_type(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/echo");
    task_http_response r;
    const char *body = "{\"hello\": \"world\"}";
    assert_int_equal(task_http_post(NULL, url, body, strlen(body), NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, body);
    assert_non_null(strstr(r.headers, "Content-Type: application/json"));
    task_http_response_free(&r);

    /* binary body with a NUL, explicit content type, other method */
    const char bin[] = {'a', '\0', 'b'};
    assert_int_equal(task_http_request(NULL, "PUT", url, bin, sizeof(bin), "application/x-bin",
                                       NULL, &r), 0);
    assert_int_equal(r.body_len, sizeof(bin));
    assert_memory_equal(r.body, bin, sizeof(bin));
    assert_non_null(strstr(r.headers, "Content-Type: application/x-bin"));
    task_http_response_free(&r);
}

/* A body past curl's Expect: 100-continue threshold must not wait for a 100 the server never
 * sends. */
static void large_post_is_not_delayed(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/echo");
    size_t n = 2 * 1024 * 1024;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'x', n);
    task_http_response r;
    double t0 = now_s();
    assert_int_equal(task_http_post(NULL, url, big, n, "text/plain", NULL, &r), 0);
    assert_true(now_s() - t0 < 0.9);
    assert_int_equal(r.body_len, n);
    assert_memory_equal(r.body, big, n);
    task_http_response_free(&r);
    free(big);
}

static void head_has_no_body(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/json");
    task_http_response r;
    assert_int_equal(task_http_request(NULL, "HEAD", url, NULL, 0, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(r.body, "");
    task_http_response_free(&r);
}

static void custom_headers_are_sent(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/echo");
    const char *hdrs[] = {"Content-Type: text/x-custom", NULL};
    task_http_opts o = {.headers = hdrs};
    task_http_response r;
    /* a Content-Type among the caller's headers replaces the default one */
    assert_int_equal(task_http_request(NULL, "POST", url, "q", 1, NULL, &o, &r), 0);
    assert_non_null(strstr(r.headers, "text/x-custom"));
    task_http_response_free(&r);
}

static void total_timeout(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/delay/5");
    task_http_opts o = {.timeout_s = 0.3};
    task_http_response r;
    double t0 = now_s();
    assert_int_equal(task_http_get(NULL, url, &o, &r), TASK_ETIMEDOUT);
    double took = now_s() - t0;
    assert_true(took >= 0.25 && took < 1.5);
    assert_null(r.body);
}

static void connect_refused_is_ehttp(void **state)
{
    (void)state;
    task_http_response r;
    /* port 1 on loopback: nothing listens there */
    assert_int_equal(task_http_get(NULL, "http://127.0.0.1:1/", NULL, &r), TASK_EHTTP);
    assert_int_equal(task_http_get(NULL, "gopher://127.0.0.1/", NULL, &r), TASK_EHTTP);
}

static void bad_arguments(void **state)
{
    (void)state;
    task_http_response r;
    assert_int_equal(task_http_get(NULL, NULL, NULL, &r), TASK_EINVAL);
    assert_int_equal(task_http_get(NULL, "http://127.0.0.1:1/", NULL, NULL), TASK_EINVAL);
    assert_int_equal(task_http_request(NULL, NULL, "http://127.0.0.1:1/", NULL, 0, NULL, NULL,
                                       &r), TASK_EINVAL);
    task_http_response_free(NULL);
}

struct canceller {
    task_ctx *ctx;
    double after_s;
};

static void *cancel_later(void *arg)
{
    struct canceller *c = arg;
    struct timespec ts = {0, (long)(c->after_s * 1e9)};
    nanosleep(&ts, NULL);
    task__ctx_cancel(c->ctx); /* as the runtime cancels: flag + wake the transfer */
    return NULL;
}

static void cancelled_by_another_thread(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/delay/0.8");
    task_ctx ctx;
    task__ctx_init(&ctx, NULL, NULL, "t-cancel", 0, 0);
    struct canceller c = {.ctx = &ctx, .after_s = 0.2};
    pthread_t th;
    double t0 = now_s();
    assert_int_equal(pthread_create(&th, NULL, cancel_later, &c), 0);
    task_http_response r;
    int rc = task_http_get(&ctx, url, NULL, &r);
    double took = now_s() - t0;
    pthread_join(th, NULL);
    assert_int_equal(rc, TASK_ECANCELLED);
    assert_true(took >= 0.15);
    assert_true(took < 0.6); /* well before the server answers */
    /* a cancelled task starts no new transfer */
    t0 = now_s();
    url_for(url, sizeof(url), "/json");
    assert_int_equal(task_http_get(&ctx, url, NULL, &r), TASK_ECANCELLED);
    assert_true(now_s() - t0 < 0.1);
    /* the runtime hands the handle to the thread's next task: the aborted transfer's connection
     * must not leak its late response into the next request */
    void *h = ctx.http;
    task__ctx_init(&ctx, NULL, NULL, "t-next", 0, 0);
    ctx.http = h;
    struct timespec ts = {0, 800 * 1000 * 1000}; /* the server has answered the old request */
    nanosleep(&ts, NULL);
    assert_int_equal(task_http_get(&ctx, url, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"n\": 42"));
    task_http_response_free(&r);
    task__ctx_release(&ctx);
    assert_null(ctx.http);
}

static void soft_deadline_caps_the_timeout(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/delay/5");
    task_ctx ctx;
    task__ctx_init(&ctx, NULL, NULL, "t-soft", 0, task__now_mono() + 0.4);
    task_http_opts o = {.timeout_s = 30};
    task_http_response r;
    double t0 = now_s();
    assert_int_equal(task_http_get(&ctx, url, &o, &r), TASK_ECANCELLED);
    double took = now_s() - t0;
    assert_true(took >= 0.3 && took < 1.0);
    assert_true(task_cancelled(&ctx));
    task__ctx_release(&ctx);

    /* a deadline that already passed: no transfer at all */
    task__ctx_init(&ctx, NULL, NULL, "t-soft2", 0, task__now_mono() - 1);
    url_for(url, sizeof(url), "/json");
    assert_int_equal(task_http_get(&ctx, url, NULL, &r), TASK_ECANCELLED);
    task__ctx_release(&ctx);

    /* the task's own timeout still applies when it is the shorter one */
    task__ctx_init(&ctx, NULL, NULL, "t-soft3", 0, task__now_mono() + 30);
    url_for(url, sizeof(url), "/delay/5");
    o.timeout_s = 0.3;
    assert_int_equal(task_http_get(&ctx, url, &o, &r), TASK_ETIMEDOUT);
    task__ctx_release(&ctx);
}

static void redirects_only_when_asked(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/redirect");
    task_http_response r;
    assert_int_equal(task_http_get(NULL, url, NULL, &r), 0);
    assert_int_equal(r.status, 302);
    assert_non_null(strstr(r.headers, "Location: /json"));
    task_http_response_free(&r);

    task_http_opts o = {.follow_redirects = true};
    assert_int_equal(task_http_get(NULL, url, &o, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"ok\": true"));
    /* the header block is the final response's only */
    assert_int_equal(strncmp(r.headers, "HTTP/1.1 200", 12), 0);
    assert_null(strstr(r.headers, "302"));
    task_http_response_free(&r);
}

static void body_cap(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/json");
    task_http_opts o = {.max_body_bytes = 10};
    task_http_response r;
    assert_int_equal(task_http_get(NULL, url, &o, &r), TASK_ETOOBIG);
    assert_null(r.body);

    /* exactly at the cap is fine */
    url_for(url, sizeof(url), "/echo");
    o.max_body_bytes = 1000;
    char body[1000];
    memset(body, 'y', sizeof(body));
    assert_int_equal(task_http_post(NULL, url, body, sizeof(body), "text/plain", &o, &r), 0);
    assert_int_equal(r.body_len, sizeof(body));
    task_http_response_free(&r);
    assert_int_equal(task_http_post(NULL, url, body, sizeof(body), "text/plain",
                                    &(task_http_opts){.max_body_bytes = 999}, &r), TASK_ETOOBIG);
}

static void context_reuses_the_connection(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/json");
    task_ctx ctx;
    task__ctx_init(&ctx, NULL, NULL, "t-reuse", 0, 0);
    task_http_response r;
    assert_int_equal(task_http_get(&ctx, url, NULL, &r), 0);
    task_http_response_free(&r);
    void *h = ctx.http;
    assert_non_null(h);
    long connects = -1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(task_http_post(&ctx, url, "{}", 2, NULL, NULL, &r), 0);
        task_http_response_free(&r);
        assert_ptr_equal(ctx.http, h);
        assert_int_equal(curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects), CURLE_OK);
        assert_int_equal(connects, 0);
    }
    /* options of an earlier call do not leak into the next one */
    url_for(url, sizeof(url), "/redirect");
    assert_int_equal(task_http_get(&ctx, url, &(task_http_opts){.follow_redirects = true}, &r),
                     0);
    assert_int_equal(r.status, 200);
    task_http_response_free(&r);
    assert_int_equal(task_http_get(&ctx, url, NULL, &r), 0);
    assert_int_equal(r.status, 302);
    task_http_response_free(&r);
    task__ctx_release(&ctx);
    assert_null(ctx.http);
    task__ctx_release(&ctx); /* twice is harmless */
}

/* Tasks on several threads, each with its own context, at once (curl's global init races). */
static void *thread_gets(void *arg)
{
    const char *url = arg;
    task_ctx ctx;
    task__ctx_init(&ctx, NULL, NULL, "t-thread", 0, 0);
    intptr_t bad = 0;
    for (int i = 0; i < 20; i++) {
        task_http_response r;
        if (task_http_get(&ctx, url, NULL, &r) != 0 || r.status != 200)
            bad++;
        task_http_response_free(&r);
    }
    task__ctx_release(&ctx);
    return (void *)bad;
}

static void threads_with_own_contexts(void **state)
{
    (void)state;
    char url[256];
    url_for(url, sizeof(url), "/json");
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_gets, url), 0);
    for (int i = 0; i < 8; i++) {
        void *bad;
        pthread_join(th[i], &bad);
        assert_int_equal((intptr_t)bad, 0);
    }
}

static void ctx_calls(void **state)
{
    (void)state;
    task_ctx ctx;
    task__ctx_init(&ctx, NULL, NULL, "id-1", 4, 0);
    assert_string_equal(task_ctx_id(&ctx), "id-1");
    assert_int_equal(task_ctx_retries(&ctx), 4);
    assert_false(task_cancelled(&ctx));
    assert_false(task_cancelled(NULL));
    assert_int_equal(task_progress(&ctx, NULL), TASK_EINVAL);
    assert_int_equal(task_fail(&ctx, "ValueError", "bad %d", 7), TASK_FAIL);
    assert_int_equal(task_fail(&ctx, "KeyError", "second"), TASK_FAIL);
    assert_true(ctx.failed);
    assert_string_equal(ctx.exc_type, "ValueError");
    assert_string_equal(ctx.exc_message, "bad 7");
    assert_int_equal(task_retry_in(&ctx, 2.5), TASK_RETRY);
    assert_true(ctx.retry);
    assert_true(ctx.retry_in_s == 2.5);
    atomic_store(&ctx.cancelled, true);
    assert_true(task_cancelled(&ctx));
    task__ctx_release(&ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get_json_status_body_headers),
        cmocka_unit_test(any_status_is_success),
        cmocka_unit_test(post_echoes_body_and_type),
        cmocka_unit_test(large_post_is_not_delayed),
        cmocka_unit_test(head_has_no_body),
        cmocka_unit_test(custom_headers_are_sent),
        cmocka_unit_test(total_timeout),
        cmocka_unit_test(connect_refused_is_ehttp),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(cancelled_by_another_thread),
        cmocka_unit_test(soft_deadline_caps_the_timeout),
        cmocka_unit_test(redirects_only_when_asked),
        cmocka_unit_test(body_cap),
        cmocka_unit_test(context_reuses_the_connection),
        cmocka_unit_test(threads_with_own_contexts),
        cmocka_unit_test(ctx_calls),
    };
    return cmocka_run_group_tests(tests, server_start, server_stop);
}
