/*
 * url.c - broker URLs read the way Celery/kombu users write them.
 *
 * rabbitmq-c's amqp_parse_url() reads "amqp://h:5672/" as the empty vhost, which the broker
 * refuses, so user URLs never reach it: this parser maps "", "/", "//" and "/%2F" to vhost "/".
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static int unhex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into out (size bytes). Returns 0 or -1 (bad escape, too long, NUL). */
static int pct_decode(const char *s, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = unhex(s[i + 1]);
            int lo = unhex(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0 || o + 1 >= size)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int parse_bool(const char *v)
{
    if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
        return 1;
    if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
        return 0;
    return -1;
}

/* kombu.utils.url.parse_ssl_cert_reqs(): a client checks the broker either way for
 * CERT_REQUIRED and CERT_OPTIONAL (a server always sends its certificate). */
static int parse_cert_reqs(const char *v)
{
    if (!strcmp(v, "CERT_REQUIRED") || !strcmp(v, "required") || !strcmp(v, "CERT_OPTIONAL") ||
        !strcmp(v, "optional"))
        return 1;
    if (!strcmp(v, "CERT_NONE") || !strcmp(v, "none"))
        return 0;
    return -1;
}

/* One name=value pair of the query, both decoded. 0, or -1 with why. */
static int query_pair(struct task__url *u, const char *name, const char *v, const char **why)
{
    struct {
        const char *name;
        char *dst;
        size_t size;
    } paths[] = {{"ssl_ca_certs", u->ssl_ca_certs, sizeof(u->ssl_ca_certs)},
                 {"ssl_certfile", u->ssl_certfile, sizeof(u->ssl_certfile)},
                 {"ssl_keyfile", u->ssl_keyfile, sizeof(u->ssl_keyfile)}};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (strcmp(name, paths[i].name) != 0)
            continue;
        if (v[0] == '\0' || strlen(v) >= paths[i].size)
            return *why = "empty or too long", -1;
        snprintf(paths[i].dst, paths[i].size, "%s", v);
        return 0;
    }
    if (strcmp(name, "ssl_cert_reqs") == 0) {
        u->ssl_verify = parse_cert_reqs(v);
        return u->ssl_verify < 0 ? (*why = "want CERT_REQUIRED, CERT_OPTIONAL or CERT_NONE", -1)
                                 : 0;
    }
    if (strcmp(name, "ssl_check_hostname") == 0) {
        u->ssl_check_hostname = parse_bool(v);
        return u->ssl_check_hostname < 0 ? (*why = "want true or false", -1) : 0;
    }
    if (strcmp(name, "login_method") == 0) {
        if (strcmp(v, "EXTERNAL") == 0)
            u->login_external = 1;
        else if (strcmp(v, "PLAIN") == 0 || strcmp(v, "AMQPLAIN") == 0)
            u->login_external = 0;
        else
            return *why = "want PLAIN, AMQPLAIN or EXTERNAL", -1;
        return 0;
    }
    if (strcmp(name, "heartbeat") == 0) {
        char *end;
        long s = strtol(v, &end, 10);
        if (end == v || *end != '\0' || s < 0 || s > 3600)
            return *why = "want seconds 0..3600", -1;
        u->heartbeat = (int)s;
        return 0;
    }
    return *why = "unknown parameter (known: ssl_ca_certs, ssl_certfile, ssl_keyfile, "
                  "ssl_cert_reqs, ssl_check_hostname, login_method, heartbeat)", -1;
}

/* The query string q (after '?'): name=value pairs joined by '&' (or ';'). */
static int parse_query(struct task__url *u, const char *q, const char *shown, task_error *err)
{
    while (*q != '\0') {
        size_t len = strcspn(q, "&;");
        const char *eq = memchr(q, '=', len);
        char name[64], value[600];
        const char *why = "bad escape or too long";
        if (len > 0) {
            size_t nlen = eq ? (size_t)(eq - q) : len;
            if (eq == NULL || pct_decode(q, nlen, name, sizeof(name)) != 0 ||
                pct_decode(eq + 1, len - nlen - 1, value, sizeof(value)) != 0) {
                if (eq == NULL)
                    why = "want name=value";
                return task__fail(err, TASK_EINVAL, "broker URL %s: query \"%.*s\": %s", shown,
                                  (int)(nlen < 60 ? nlen : 60), q, why);
            }
            if (query_pair(u, name, value, &why) != 0)
                return task__fail(err, TASK_EINVAL, "broker URL %s: %s: %s", shown, name, why);
            if (strncmp(name, "ssl_", 4) == 0)
                u->tls = true;
        }
        q += len + (q[len] != '\0');
    }
    return 0;
}

/* After the first '/': "" -> "/", "/" -> "/" (kombu), then the query. */
static int path_and_query(struct task__url *u, const char *path, const char *shown,
                          task_error *err)
{
    const char *q = strchr(path, '?');
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    if (plen > 0 && !(plen == 1 && path[0] == '/') &&
        pct_decode(path, plen, u->vhost, sizeof(u->vhost)) != 0)
        return task__fail(err, TASK_EINVAL, "broker URL %s: bad vhost", shown);
    return q ? parse_query(u, q + 1, shown, err) : 0;
}

int task__url_parse(const char *text, struct task__url *u, task_error *err)
{
    char shown[512];
    memset(u, 0, sizeof(*u));
    if (text == NULL)
        return task__fail(err, TASK_EINVAL, "broker URL: missing");
    task__url_redact(text, shown, sizeof(shown));
    const char *p;
    if (strncmp(text, "amqp://", 7) == 0) {
        p = text + 7;
    } else if (strncmp(text, "amqps://", 8) == 0) {
        u->tls = true;
        p = text + 8;
    } else {
        return task__fail(err, TASK_EINVAL,
                          "broker URL %s: scheme must be amqp:// or amqps://", shown);
    }
    u->ssl_verify = u->ssl_check_hostname = u->login_external = u->heartbeat = -1;
    strcpy(u->user, "guest");
    strcpy(u->password, "guest");
    strcpy(u->vhost, "/");

    /* The authority ends at the path or, with no path, at the query. */
    const char *slash = p + strcspn(p, "/?");
    const char *auth_end = slash;
    if (*slash == '\0')
        slash = NULL;
    const char *at = memrchr(p, '@', (size_t)(auth_end - p));
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = (size_t)((colon ? colon : at) - p);
        if (pct_decode(p, ulen, u->user, sizeof(u->user)) != 0)
            return task__fail(err, TASK_EINVAL, "broker URL %s: bad user name", shown);
        if (colon != NULL &&
            pct_decode(colon + 1, (size_t)(at - colon - 1), u->password, sizeof(u->password)) != 0)
            return task__fail(err, TASK_EINVAL, "broker URL %s: bad password", shown);
        p = at + 1;
    }

    const char *host_end = auth_end;
    const char *port_colon = NULL;
    if (*p == '[') { /* IPv6 literal */
        const char *rb = memchr(p, ']', (size_t)(host_end - p));
        if (rb == NULL)
            return task__fail(err, TASK_EINVAL, "broker URL %s: unclosed '['", shown);
        if (pct_decode(p + 1, (size_t)(rb - p - 1), u->host, sizeof(u->host)) != 0)
            return task__fail(err, TASK_EINVAL, "broker URL %s: bad host", shown);
        if (rb + 1 < host_end && rb[1] == ':')
            port_colon = rb + 1;
    } else {
        port_colon = memchr(p, ':', (size_t)(host_end - p));
        size_t hlen = (size_t)((port_colon ? port_colon : host_end) - p);
        if (pct_decode(p, hlen, u->host, sizeof(u->host)) != 0)
            return task__fail(err, TASK_EINVAL, "broker URL %s: bad host", shown);
    }
    if (u->host[0] == '\0')
        strcpy(u->host, "localhost");
    u->port = 0;
    if (port_colon != NULL) {
        char *end;
        long port = strtol(port_colon + 1, &end, 10);
        if (end != host_end || port < 1 || port > 65535)
            return task__fail(err, TASK_EINVAL, "broker URL %s: bad port", shown);
        u->port = (int)port;
    }

    int rc = slash ? path_and_query(u, *slash == '/' ? slash + 1 : slash, shown, err) : 0;
    if (rc == 0 && u->port == 0)
        u->port = u->tls ? 5671 : 5672; /* after the query: ssl_* turns TLS on (kombu) */
    return rc;
}

void task__url_redact(const char *text, char *buf, size_t size)
{
    if (size == 0)
        return;
    if (text == NULL) {
        snprintf(buf, size, "(none)");
        return;
    }
    const char *scheme = strstr(text, "://");
    const char *start = scheme ? scheme + 3 : text;
    const char *slash = strchr(start, '/');
    const char *end = slash ? slash : start + strlen(start);
    const char *at = memrchr(start, '@', (size_t)(end - start));
    const char *colon = at ? memchr(start, ':', (size_t)(at - start)) : NULL;
    if (colon == NULL) {
        snprintf(buf, size, "%s", text);
        return;
    }
    snprintf(buf, size, "%.*s:***%s", (int)(colon - text), text, at);
}

/* Where the user-info of URL `text` ends ('@', or NULL) and where its host starts. */
static const char *authority(const char *text, const char **at)
{
    const char *scheme = strstr(text, "://");
    if (scheme == NULL)
        return NULL;
    const char *start = scheme + 3;
    const char *slash = strchr(start, '/');
    const char *end = slash ? slash : start + strlen(start);
    *at = memrchr(start, '@', (size_t)(end - start));
    return start;
}

int task__url_with_password(const char *text, const char *password, char *buf, size_t size)
{
    const char *at;
    const char *start = authority(text, &at);
    if (start == NULL || size == 0)
        return -1;
    const char *colon = at ? memchr(start, ':', (size_t)(at - start)) : NULL;
    const char *user_end = colon ? colon : at;
    size_t n = (size_t)snprintf(buf, size, "%.*s", (int)(start - text), text);
    if (at != NULL && user_end > start)
        n += (size_t)snprintf(buf + (n < size ? n : size), n < size ? size - n : 0, "%.*s",
                              (int)(user_end - start), start);
    else
        n += (size_t)snprintf(buf + (n < size ? n : size), n < size ? size - n : 0, "guest");
    if (n + 1 < size)
        buf[n++] = ':';
    /* RFC 3986 unreserved characters pass; everything else is escaped, as pct_decode reads. */
    for (const unsigned char *p = (const unsigned char *)password; *p != '\0'; p++) {
        if (n + 4 > size)
            return -1;
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~')
            buf[n++] = (char)*p;
        else
            n += (size_t)snprintf(buf + n, size - n, "%%%02X", *p);
    }
    const char *rest = at ? at + 1 : start;
    int m = snprintf(buf + n, size - n, "@%s", rest);
    return m < 0 || (size_t)m >= size - n ? -1 : 0;
}

int task__url_scrub(char *text)
{
    const char *at;
    const char *start = authority(text, &at);
    if (start == NULL || at == NULL)
        return 0;
    char *colon = memchr(start, ':', (size_t)(at - start));
    if (colon == NULL)
        return 0;
    size_t len = (size_t)(at - colon - 1), stars = len < 3 ? len : 3;
    size_t total = strlen(text);
    memset(colon + 1, '*', stars);
    /* Shift "@host..." left over the rest of the password; NULs fill the freed tail so the
     * argument keeps its size in /proc/PID/cmdline. */
    memmove(colon + 1 + stars, at, strlen(at) + 1);
    memset(text + total - (len - stars), '\0', len - stars);
    return 1;
}
