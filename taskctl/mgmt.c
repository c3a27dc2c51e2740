/* mgmt.c - see mgmt.h. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "mgmt.h"

#define MGMT_TIMEOUT_MS 5000L
#define MGMT_MAX_BODY (64u << 20)

struct body {
    char *p;
    size_t len;
    bool too_big;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct body *b = ud;
    size_t n = size * nmemb;
    if (b->len + n > MGMT_MAX_BODY) {
        b->too_big = true;
        return 0;
    }
    char *p = realloc(b->p, b->len + n + 1);
    if (p == NULL)
        return 0;
    memcpy(p + b->len, data, n);
    b->len += n;
    p[b->len] = '\0';
    b->p = p;
    return n;
}

/* Percent-decode s[0..n) into out; false when it does not fit or has a NUL. */
static bool decode(CURL *h, const char *s, size_t n, char *out, size_t size)
{
    int len = 0;
    char *d = curl_easy_unescape(h, s, (int)n, &len);
    bool ok = d != NULL && (size_t)len < size && memchr(d, '\0', (size_t)len) == NULL;
    if (ok)
        memcpy(out, d, (size_t)len + 1);
    curl_free(d);
    return ok;
}

/* Split management_url into base (no credentials) and user/password (when the URL has them). */
static int parse_url(struct mgmt *m, const char *url, bool *has_auth, char *err, size_t errsize)
{
    const char *rest;
    if (strncmp(url, "http://", 7) == 0)
        rest = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        rest = url + 8;
    else
        return snprintf(err, errsize, "broker.management_url: must start with http:// or https://"),
               -1;
    size_t scheme_len = (size_t)(rest - url);
    const char *slash = strchr(rest, '/');
    const char *auth_end = slash ? slash : rest + strlen(rest);
    const char *at = memrchr(rest, '@', (size_t)(auth_end - rest));
    *has_auth = at != NULL;
    if (at != NULL) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        const char *user_end = colon ? colon : at;
        bool ok = decode(m->curl, rest, (size_t)(user_end - rest), m->user, sizeof(m->user));
        m->password[0] = '\0';
        if (ok && colon != NULL)
            ok = decode(m->curl, colon + 1, (size_t)(at - colon - 1), m->password,
                        sizeof(m->password));
        if (!ok)
            return snprintf(err, errsize, "broker.management_url: bad user or password"), -1;
        rest = at + 1;
    }
    if (rest == auth_end)
        return snprintf(err, errsize, "broker.management_url: no host"), -1;
    int n = snprintf(m->base, sizeof(m->base), "%.*s%s", (int)scheme_len, url, rest);
    if (n < 0 || (size_t)n >= sizeof(m->base))
        return snprintf(err, errsize, "broker.management_url: too long"), -1;
    /* "http://h:15672/", ".../api" and ".../api/" all mean the same API root */
    while (n > 0 && m->base[n - 1] == '/')
        m->base[--n] = '\0';
    if (n > 4 && strcmp(m->base + n - 4, "/api") == 0 && (size_t)(n - 4) > scheme_len)
        m->base[n - 4] = '\0';
    return 0;
}

/* Is the host of base URL `base` ("http://host[:port]...") this machine's loopback? */
static bool loopback_host(const char *base)
{
    const char *h = strstr(base, "://");
    if (h == NULL)
        return false;
    h += 3;
    size_t n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
    char host[300];
    snprintf(host, sizeof(host), "%.*s", (int)(n < sizeof(host) ? n : sizeof(host) - 1), h);
    unsigned char a[4];
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    return strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0;
}

/* A password in clear over someone else's network is given away: refuse unless told. */
static int check_plain_http(const struct mgmt *m, const task_config *cfg, char *err,
                            size_t errsize)
{
    if (strncmp(m->base, "http://", 7) != 0 || loopback_host(m->base) ||
        cfg->management_allow_http)
        return 0;
    snprintf(err, errsize, "broker.management_url %s: refusing to send the password over plain "
             "http:// to a host other than loopback; use https:// or set "
             "broker.management_allow_http = true", m->base);
    return -1;
}

int mgmt_open(struct mgmt *m, const task_config *cfg, char *err, size_t errsize)
{
    memset(m, 0, sizeof(*m));
    if (cfg->management_url == NULL || cfg->management_url[0] == '\0')
        return 1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (m->curl = curl_easy_init()) == NULL)
        return snprintf(err, errsize, "management API: libcurl could not start"), -1;
    bool has_auth = false;
    struct task__url broker;
    task_error terr = {0};
    if (parse_url(m, cfg->management_url, &has_auth, err, errsize) != 0 ||
        (cfg->broker_urls.n > 0 && task__url_parse(cfg->broker_urls.v[0], &broker, &terr) != 0)) {
        if (terr.msg[0] != '\0')
            snprintf(err, errsize, "%s", terr.msg);
        mgmt_close(m);
        return -1;
    }
    if (check_plain_http(m, cfg, err, errsize) != 0) {
        mgmt_close(m);
        return -1;
    }
    snprintf(m->cainfo, sizeof(m->cainfo), "%s", cfg->ssl_ca_certs ? cfg->ssl_ca_certs : "");
    m->no_verify = cfg->ssl_cert_reqs != NULL && (strcmp(cfg->ssl_cert_reqs, "none") == 0 ||
                                                  strcmp(cfg->ssl_cert_reqs, "CERT_NONE") == 0);
    if (m->no_verify && strncmp(m->base, "https://", 8) == 0)
        fprintf(stderr, "level=warn event=tls_verify_off url=%s detail=\"ssl_cert_reqs=none: the "
                "management API's certificate is not checked\"\n", m->base);
    snprintf(m->vhost, sizeof(m->vhost), "%s", cfg->broker_urls.n > 0 ? broker.vhost : "/");
    if (!has_auth && cfg->broker_urls.n > 0) {
        snprintf(m->user, sizeof(m->user), "%s", broker.user);
        snprintf(m->password, sizeof(m->password), "%s", broker.password);
    } else if (!has_auth) {
        strcpy(m->user, "guest");
        strcpy(m->password, "guest");
    }
    return 0;
}

void mgmt_close(struct mgmt *m)
{
    if (m->curl != NULL)
        curl_easy_cleanup(m->curl);
    memset(m, 0, sizeof(*m));
}

/* GET base + path as JSON. MGMT_OK with *out, MGMT_NOT_FOUND, or MGMT_FAILED with a message. */
static int get_json(struct mgmt *m, const char *path, json_object **out, char *err,
                    size_t errsize)
{
    char url[1536], cerr[CURL_ERROR_SIZE] = "";
    snprintf(url, sizeof(url), "%s%s", m->base, path);
    struct body b = {0};
    CURL *h = m->curl;
    curl_easy_reset(h); /* keeps the connection for the next refresh */
    bool bad = false;
    bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_USERNAME, m->user) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_PASSWORD, m->password) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, MGMT_TIMEOUT_MS) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, MGMT_TIMEOUT_MS) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    if (m->cainfo[0] != '\0')
        bad |= curl_easy_setopt(h, CURLOPT_CAINFO, m->cainfo) != CURLE_OK;
    if (m->no_verify) {
        bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK;
        bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK;
    }
    bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, &b) != CURLE_OK;
    CURLcode cc = bad ? CURLE_FAILED_INIT : curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, (char *)NULL);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    int rc = MGMT_FAILED;
    *out = NULL;
    if (cc != CURLE_OK) {
        snprintf(err, errsize, "management API %s: %s", m->base,
                 b.too_big ? "answer too large" : cerr[0] ? cerr : curl_easy_strerror(cc));
    } else if (status == 401) {
        snprintf(err, errsize, "management API %s: 401 Unauthorized for user %s "
                 "(wrong user or password)", m->base, m->user);
    } else if (status == 404) {
        rc = MGMT_NOT_FOUND;
    } else if (status != 200) {
        snprintf(err, errsize, "management API %s: HTTP %ld for %s", m->base, status, path);
    } else if ((*out = b.p ? json_tokener_parse(b.p) : NULL) == NULL) {
        snprintf(err, errsize, "management API %s: the answer to %s is not JSON", m->base, path);
    } else {
        rc = MGMT_OK;
    }
    free(b.p);
    return rc;
}

static json_object *count(json_object *q, const char *key)
{
    int64_t v;
    return task__json_get_int(q, key, &v) == 0 ? json_object_new_int64(v) : NULL;
}

/* message_stats.<key>.rate; 0 when the queue has no such stats yet (nothing published or
 * delivered since it was created), or when the answer has them in another shape. */
static double rate(json_object *q, const char *key)
{
    json_object *details = task__json_get_obj(task__json_get_obj(q, "message_stats"), key);
    json_object *r = task__json_get(details, "rate", json_type_double);
    if (r == NULL)
        r = task__json_get(details, "rate", json_type_int);
    return r != NULL ? json_object_get_double(r) : 0.0;
}

/* One row from one queue of the answer; NULL when it is not a queue with a name (the API is
 * outside our control: a proxy or another version can answer anything). */
static json_object *row_of(json_object *q)
{
    const char *name = task__json_get_str(q, "name");
    if (name == NULL)
        return NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "ready", count(q, "messages_ready"));
    json_object_object_add(o, "unacked", count(q, "messages_unacknowledged"));
    json_object_object_add(o, "consumers", count(q, "consumers"));
    json_object_object_add(o, "publish_rate", json_object_new_double(rate(q, "publish_details")));
    json_object_object_add(o, "deliver_rate",
                           json_object_new_double(rate(q, "deliver_get_details")));
    return o;
}

/* Append the rows of an answer (an array of queues, or one queue) to `rows`. 0, or -1 when the
 * answer has another shape; queues without a name are left out. */
static int rows_of_answer(json_object *answer, json_object *rows)
{
    json_object *row;
    if (json_object_is_type(answer, json_type_array)) {
        for (size_t j = 0; j < json_object_array_length(answer); j++) {
            row = row_of(json_object_array_get_idx(answer, j));
            if (row != NULL)
                json_object_array_add(rows, row);
        }
        return 0;
    }
    row = row_of(answer);
    if (row == NULL)
        return -1;
    json_object_array_add(rows, row);
    return 0;
}

static void note_missing(json_object **missing, const char *name)
{
    if (missing == NULL)
        return;
    if (*missing == NULL)
        *missing = json_object_new_array();
    json_object_array_add(*missing, json_object_new_string(name));
}

int mgmt_queue_rows(struct mgmt *m, char *const *names, int n, json_object **rows,
                    json_object **missing, char *err, size_t errsize)
{
    char *vh = curl_easy_escape(m->curl, m->vhost, 0);
    char path[1024];
    *rows = json_object_new_array();
    int rc = MGMT_OK;
    for (int i = 0; rc == MGMT_OK && i < (names ? n : 1); i++) {
        json_object *answer = NULL;
        char *qn = names ? curl_easy_escape(m->curl, names[i], 0) : NULL;
        snprintf(path, sizeof(path), "/api/queues/%s%s%s", vh ? vh : "%2F", qn ? "/" : "",
                 qn ? qn : "");
        curl_free(qn);
        rc = get_json(m, path, &answer, err, errsize);
        if (rc == MGMT_NOT_FOUND && names != NULL) {
            note_missing(missing, names[i]);
            rc = MGMT_OK;
        } else if (rc == MGMT_NOT_FOUND) {
            snprintf(err, errsize, "management API %s: no vhost %s", m->base, m->vhost);
            rc = MGMT_FAILED;
        } else if (rc == MGMT_OK && rows_of_answer(answer, *rows) != 0) {
            snprintf(err, errsize, "management API %s: unexpected answer to %s", m->base, path);
            rc = MGMT_FAILED;
        }
        json_object_put(answer);
    }
    curl_free(vh);
    if (rc != MGMT_OK) {
        json_object_put(*rows);
        *rows = NULL;
    }
    return rc;
}
