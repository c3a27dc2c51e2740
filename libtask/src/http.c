/*
 * http.c - libcurl helpers for tasks: a transfer stops when its task is cancelled (revoke, soft
 * time limit, cold shutdown) and never outlives the task's soft deadline. The easy handle is kept
 * in the task context, so calls within one task (and, when the runtime hands the handle on, later
 * tasks of the same thread) reuse the connection.
 *
 * Why the multi interface: CU->easy_perform() sleeps up to 1 s between progress callbacks while
 * a server is silent, so a revoke would take up to a second to notice. We drive the easy handle
 * with a multi handle of our own, which the canceller wakes (task__ctx_cancel()). The
 * multi handle owns the connection cache, so it is kept with the easy handle (CURLOPT_PRIVATE).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <task/http.h>
#include "ctx.h"
#include "curl_api.h"
#include "internal.h"

#define DEFAULT_TIMEOUT_S 60.0
#define DEFAULT_CONNECT_S 10.0
#define DEFAULT_MAX_BODY ((size_t)64 * 1024 * 1024)
#define MAX_HEADER_BYTES ((size_t)1024 * 1024)
#define MAX_REDIRECTS 10L
/* How often a silent transfer looks at task_cancelled() on its own. The runtime cancels through
 * task__ctx_cancel(), which also wakes the transfer at once (curl_multi_wakeup), so this is only
 * a backstop; polling often would cost 2000 concurrent transfers thousands of wake-ups a
 * second. */
#define CANCEL_POLL_MS 1000
/* Only reached after task_http_request() loaded libcurl. */
#define CU (task__curl())

struct buf {
    char *p;
    size_t len, cap, max;
    bool too_big, no_mem;
};

static size_t buf_add(struct buf *b, const char *data, size_t n)
{
    if (n > b->max - b->len) {
        b->too_big = true;
        return 0; /* a short count makes curl stop with CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->no_mem = true;
            return 0;
        }
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

/* Keeps the header block of the last response only: a status line (after a redirect or a
 * 100 Continue) starts a new block. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
        b->len = 0;
    return buf_add(b, data, n);
}

static int on_xferinfo(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return task_cancelled(ud) ? 1 : 0;
}

/* The transfer's time budget in ms; *capped is set when the soft deadline is what limits it. */
static long budget_ms(const task_ctx *ctx, const task_http_opts *o, bool *capped)
{
    double t = o != NULL && o->timeout_s > 0 ? o->timeout_s : DEFAULT_TIMEOUT_S;
    *capped = false;
    if (ctx != NULL && ctx->soft_deadline > 0) {
        double left = ctx->soft_deadline - task__now_mono();
        if (left < t) {
            /* A hair past the deadline, so that when curl's timer fires task_cancelled() is
             * already true (its timers may fire a millisecond early). */
            t = left + 0.005;
            *capped = true;
        }
    }
    double ms = ceil(t * 1000);
    return ms < 1 ? 1 : ms > 1e9 ? 1000000000L : (long)ms; /* 0 would mean "no timeout" */
}

static void http_wakeup(void *http)
{
    void *m = NULL;
    if (http != NULL && CU->easy_getinfo(http, CURLINFO_PRIVATE, &m) == CURLE_OK && m != NULL)
        CU->multi_wakeup(m); /* documented as callable from any thread */
}

static void http_release(void *http)
{
    if (http == NULL)
        return;
    char *multi = NULL;
    CU->easy_getinfo(http, CURLINFO_PRIVATE, &multi);
    CU->easy_cleanup(http);
    CU->multi_cleanup((CURLM *)multi); /* closes the cached connections; NULL-safe */
}

/* The context's handle pair, reset to defaults, or a new pair (kept in ctx when there is one). */
static CURL *handle_for(task_ctx *ctx)
{
    CURL *h = ctx != NULL ? ctx->http : NULL;
    CURLM *m = NULL;
    if (h != NULL) {
        char *p = NULL;
        CU->easy_getinfo(h, CURLINFO_PRIVATE, &p);
        m = (CURLM *)p;
        CU->easy_reset(h); /* drops every option, CURLOPT_PRIVATE too; keeps connections */
    } else {
        h = CU->easy_init();
    }
    if (h != NULL && m == NULL)
        m = CU->multi_init();
    if (h == NULL || m == NULL) {
        CU->easy_cleanup(h);
        if (ctx != NULL)
            ctx->http = NULL;
        return NULL;
    }
    CU->easy_setopt(h, CURLOPT_PRIVATE, (void *)m);
    if (ctx != NULL) {
        static const struct task_ctx_res_ops ops = {http_wakeup, http_release};
        ctx->http_ops = &ops;
        ctx->http = h;
    }
    return h;
}

static struct curl_slist *list_add(struct curl_slist *l, const char *s, bool *no_mem)
{
    struct curl_slist *n = CU->slist_append(l, s);
    if (n == NULL)
        *no_mem = true;
    return n != NULL ? n : l;
}

static bool has_header(const char *const *hdrs, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; hdrs != NULL && hdrs[i] != NULL; i++) {
        if (strncasecmp(hdrs[i], name, n) == 0 && hdrs[i][n] == ':')
            return true;
    }
    return false;
}

/* Request headers: the caller's, then a default Content-Type for a body, and an empty Expect
 * so that curl does not wait for a "100 Continue" that many servers never send. */
static struct curl_slist *make_headers(const task_http_opts *o, bool with_body,
                                       const char *content_type, bool *no_mem)
{
    const char *const *user = o != NULL ? o->headers : NULL;
    struct curl_slist *l = NULL;
    for (int i = 0; user != NULL && user[i] != NULL; i++)
        l = list_add(l, user[i], no_mem);
    if (with_body && !has_header(user, "Content-Type")) {
        char ct[256];
        snprintf(ct, sizeof(ct), "Content-Type: %s",
                 content_type != NULL ? content_type : "application/json");
        l = list_add(l, ct, no_mem);
    }
    if (with_body && !has_header(user, "Expect"))
        l = list_add(l, "Expect:", no_mem);
    return l;
}

/* Sets every option of one transfer; false if curl refused any (out of memory, old libcurl). */
static bool set_options(CURL *h, task_ctx *ctx, const char *method, const char *url,
                        const char *body, size_t body_len, struct curl_slist *hdrs,
                        const task_http_opts *o, long timeout_ms, struct buf *b, struct buf *hb)
{
    double connect_s = o != NULL && o->connect_timeout_s > 0 ? o->connect_timeout_s
                                                              : DEFAULT_CONNECT_S;
    bool bad = false;
    bad |= CU->easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85 */
    bad |= CU->easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= CU->easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK;
#else
    long web = CURLPROTO_HTTP | CURLPROTO_HTTPS;
    bad |= CU->easy_setopt(h, CURLOPT_PROTOCOLS, web) != CURLE_OK;
    bad |= CU->easy_setopt(h, CURLOPT_REDIR_PROTOCOLS, web) != CURLE_OK;
#endif
    if (body != NULL) {
        bad |= CU->easy_setopt(h, CURLOPT_POSTFIELDS, body) != CURLE_OK;
        bad |= CU->easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len) != CURLE_OK;
    }
    /* POST with a body and plain GET/HEAD use curl's own methods, so a 301/302/303 after a POST
     * turns into a GET as browsers do; anything else is sent as asked, redirects included. */
    if (strcmp(method, "HEAD") == 0 && body == NULL)
        bad |= CU->easy_setopt(h, CURLOPT_NOBODY, 1L) != CURLE_OK;
    else if (strcmp(method, "GET") == 0 && body == NULL)
        bad |= CU->easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    else if (strcmp(method, "POST") != 0 || body == NULL)
        bad |= CU->easy_setopt(h, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK;
    bad |= CU->easy_setopt(h, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK;
    bad |= CU->easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= CU->easy_setopt(h, CURLOPT_WRITEDATA, b) != CURLE_OK;
    bad |= CU->easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= CU->easy_setopt(h, CURLOPT_HEADERDATA, hb) != CURLE_OK;
    bad |= CU->easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK; /* threads: no SIGALRM */
    bad |= CU->easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK;
    bad |= CU->easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)ceil(connect_s * 1000)) != CURLE_OK;
    bad |= CU->easy_setopt(h, CURLOPT_FOLLOWLOCATION,
                            o != NULL && o->follow_redirects ? 1L : 0L) != CURLE_OK;
    bad |= CU->easy_setopt(h, CURLOPT_MAXREDIRS, MAX_REDIRECTS) != CURLE_OK;
    if (ctx != NULL) {
        bad |= CU->easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xferinfo) != CURLE_OK;
        bad |= CU->easy_setopt(h, CURLOPT_XFERINFODATA, ctx) != CURLE_OK;
        bad |= CU->easy_setopt(h, CURLOPT_NOPROGRESS, 0L) != CURLE_OK;
    }
    return !bad;
}

/* Runs the transfer on the handle's multi; returns its CURLcode, or sets *cancelled and
 * returns CURLE_ABORTED_BY_CALLBACK when the task was cancelled while waiting. */
static CURLcode perform(CURL *h, task_ctx *ctx, bool *cancelled)
{
    char *p = NULL;
    CU->easy_getinfo(h, CURLINFO_PRIVATE, &p);
    CURLM *m = (CURLM *)p;
    if (CU->multi_add_handle(m, h) != CURLM_OK)
        return CURLE_FAILED_INIT;
    CURLcode cc = CURLE_OK;
    int running = 1;
    while (running > 0) {
        if (CU->multi_perform(m, &running) != CURLM_OK) {
            cc = CURLE_RECV_ERROR;
            break;
        }
        if (running == 0)
            break;
        if (task_cancelled(ctx)) {
            *cancelled = true;
            cc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        if (CU->multi_poll(m, NULL, 0, CANCEL_POLL_MS, NULL) != CURLM_OK) {
            cc = CURLE_RECV_ERROR;
            break;
        }
    }
    if (running == 0) {
        cc = CURLE_GOT_NOTHING; /* replaced by the transfer's own result just below */
        int left;
        CURLMsg *msg;
        while ((msg = CU->multi_info_read(m, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == h)
                cc = msg->data.result;
        }
    }
    /* removing a handle mid-transfer aborts it and closes its connection */
    CU->multi_remove_handle(m, h);
    return cc;
}

static int map_curl(CURLcode cc, const task_ctx *ctx, bool deadline_capped,
                    const struct buf *b, const struct buf *hb)
{
    switch (cc) {
    case CURLE_OK:
        return 0;
    case CURLE_ABORTED_BY_CALLBACK:
        return TASK_ECANCELLED;
    case CURLE_OPERATION_TIMEDOUT:
        /* the budget was the time left before the soft limit: that is a cancellation */
        return deadline_capped || task_cancelled(ctx) ? TASK_ECANCELLED : TASK_ETIMEDOUT;
    case CURLE_WRITE_ERROR:
        if (b->no_mem || hb->no_mem)
            return TASK_ENOMEM;
        return b->too_big || hb->too_big ? TASK_ETOOBIG : TASK_EHTTP;
    case CURLE_OUT_OF_MEMORY:
        return TASK_ENOMEM;
    default:
        return TASK_EHTTP;
    }
}

int task_http_request(task_ctx *ctx, const char *method, const char *url, const char *body,
                      size_t body_len, const char *content_type, const task_http_opts *opts,
                      task_http_response *resp)
{
    if (resp != NULL)
        memset(resp, 0, sizeof(*resp));
    if (method == NULL || method[0] == '\0' || url == NULL || resp == NULL ||
        (body == NULL && body_len > 0))
        return TASK_EINVAL;
    if (task_cancelled(ctx))
        return TASK_ECANCELLED;
    const struct task__curl_api *cu = task__curl();
    if (cu == NULL)
        return TASK_EHTTP; /* libcurl missing: task__curl_error() says why */
    if (body == NULL && strcmp(method, "POST") == 0)
        body = ""; /* a POST always has a body, if only an empty one */

    CURL *h = handle_for(ctx);
    if (h == NULL)
        return TASK_ENOMEM;
    size_t max = opts != NULL && opts->max_body_bytes > 0 ? opts->max_body_bytes
                                                           : DEFAULT_MAX_BODY;
    struct buf b = {.max = max}, hb = {.max = MAX_HEADER_BYTES};
    bool no_mem = false, capped = false, cancelled = false;
    struct curl_slist *hdrs = make_headers(opts, body != NULL, content_type, &no_mem);
    long timeout_ms = budget_ms(ctx, opts, &capped);
    int rc;
    if (no_mem) {
        rc = TASK_ENOMEM;
    } else if (!set_options(h, ctx, method, url, body, body_len, hdrs, opts, timeout_ms, &b,
                            &hb)) {
        rc = TASK_EHTTP;
    } else {
        CURLcode cc = perform(h, ctx, &cancelled);
        rc = map_curl(cc, ctx, capped, &b, &hb);
    }
    if (rc == 0) {
        CU->easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
        resp->body = b.p != NULL ? b.p : strdup("");
        resp->body_len = b.len;
        resp->headers = hb.p != NULL ? hb.p : strdup("");
        resp->headers_len = hb.len;
        b.p = hb.p = NULL;
        if (resp->body == NULL || resp->headers == NULL) {
            task_http_response_free(resp);
            rc = TASK_ENOMEM;
        }
    }
    free(b.p);
    free(hb.p);
    /* The easy handle keeps pointers to hdrs, and to b/hb on our stack, until the next reset:
     * clear them so nothing dangles while the handle waits in the context. */
    CU->easy_setopt(h, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    CU->slist_free_all(hdrs);
    if (ctx == NULL)
        http_release(h);
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
    return task_http_request(ctx, "POST", url, body, body_len, content_type, opts, resp);
}

void task_http_response_free(task_http_response *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    free(resp->headers);
    memset(resp, 0, sizeof(*resp));
}
