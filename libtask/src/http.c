/*
 * http.c - libcurl helpers for tasks: a transfer stops when its task is cancelled (revoke, soft
 * time limit, cold shutdown) and never outlives the task's soft deadline. The easy handle is kept
 * in the task context, so calls within one task reuse the connection.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <task/http.h>
#include "ctx.h"
#include "internal.h"

#define DEFAULT_TIMEOUT_S 60.0
#define DEFAULT_CONNECT_S 10.0
#define DEFAULT_MAX_BODY (64u * 1024u * 1024u)

/* curl_global_init() is not thread-safe and must run once per process: the library's only
 * hidden state besides the task registry. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct buf {
    char *p;
    size_t len, cap, max;
    bool too_big;
};

static size_t buf_add(struct buf *b, const char *data, size_t n)
{
    if (b->len + n > b->max) {
        b->too_big = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    return buf_add(ud, data, size * nmemb);
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return task_cancelled(ud) ? 1 : 0;
}

static double effective_timeout(const task_ctx *ctx, const task_http_opts *o)
{
    double t = o && o->timeout_s > 0 ? o->timeout_s : DEFAULT_TIMEOUT_S;
    if (ctx != NULL && ctx->soft_deadline > 0) {
        double left = ctx->soft_deadline - task__now_mono();
        if (left < t)
            t = left > 0.001 ? left : 0.001;
    }
    return t;
}

static CURL *handle_for(task_ctx *ctx)
{
    if (ctx != NULL && ctx->http != NULL) {
        curl_easy_reset(ctx->http);
        return ctx->http;
    }
    CURL *h = curl_easy_init();
    if (ctx != NULL)
        ctx->http = h;
    return h;
}

static int map_curl(CURLcode cc, const task_ctx *ctx, const struct buf *body)
{
    switch (cc) {
    case CURLE_OK:
        return 0;
    case CURLE_ABORTED_BY_CALLBACK:
        return TASK_ECANCELLED;
    case CURLE_OPERATION_TIMEDOUT:
        return task_cancelled(ctx) ? TASK_ECANCELLED : TASK_ETIMEDOUT;
    case CURLE_WRITE_ERROR:
        return body->too_big ? TASK_ETOOBIG : TASK_EHTTP;
    default:
        return TASK_EHTTP;
    }
}

int task_http_request(task_ctx *ctx, const char *method, const char *url, const char *body,
                      size_t body_len, const char *content_type, const task_http_opts *opts,
                      task_http_response *resp)
{
    if (method == NULL || url == NULL || resp == NULL)
        return TASK_EINVAL;
    memset(resp, 0, sizeof(*resp));
    if (task_cancelled(ctx))
        return TASK_ECANCELLED;
    pthread_once(&curl_once, curl_init_once);
    CURL *h = handle_for(ctx);
    if (h == NULL)
        return TASK_ENOMEM;
    size_t max = opts && opts->max_body_bytes ? opts->max_body_bytes : DEFAULT_MAX_BODY;
    struct buf b = {.max = max}, hb = {.max = 1024 * 1024};
    struct curl_slist *hdrs = NULL;
    for (int i = 0; opts && opts->headers && opts->headers[i]; i++)
        hdrs = curl_slist_append(hdrs, opts->headers[i]);
    if (body != NULL) {
        char ct[256];
        snprintf(ct, sizeof(ct), "Content-Type: %s", content_type ? content_type : "application/json");
        hdrs = curl_slist_append(hdrs, ct);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &hb);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* task threads: no SIGALRM for DNS timeouts */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(effective_timeout(ctx, opts) * 1000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)((opts && opts->connect_timeout_s > 0 ? opts->connect_timeout_s
                                                                 : DEFAULT_CONNECT_S) * 1000));
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, opts && opts->follow_redirects ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    if (ctx != NULL) {
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, ctx);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    int rc = map_curl(cc, ctx, &b);
    if (rc == 0) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
        resp->body = b.p ? b.p : strdup("");
        resp->body_len = b.len;
        resp->headers = hb.p ? hb.p : strdup("");
        resp->headers_len = hb.len;
        b.p = hb.p = NULL;
        if (resp->body == NULL || resp->headers == NULL) {
            task_http_response_free(resp);
            rc = TASK_ENOMEM;
        }
    }
    free(b.p);
    free(hb.p);
    if (ctx == NULL)
        curl_easy_cleanup(h);
    return rc;
}

int task_http_get(task_ctx *ctx, const char *url, const task_http_opts *opts,
                  task_http_response *resp)
{
    return task_http_request(ctx, "GET", url, NULL, 0, NULL, opts, resp);
}

int task_http_post(task_ctx *ctx, const char *url, const char *body, size_t body_len,
                   const char *content_type, const task_http_opts *opts, task_http_response *resp)
{
    return task_http_request(ctx, "POST", url, body ? body : "", body_len, content_type, opts,
                             resp);
}

void task_http_response_free(task_http_response *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    free(resp->headers);
    memset(resp, 0, sizeof(*resp));
}
