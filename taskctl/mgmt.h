/*
 * mgmt.h - a small client of the RabbitMQ management HTTP API (rabbitmq_management plugin), for
 * what AMQP cannot tell: unacked counts and publish/deliver rates per queue.
 *
 * The base URL is broker.management_url (http[s]://[user[:password]@]host[:port][/prefix]).
 * Credentials come from that URL, else from the first broker URL; the vhost from the broker URL.
 * Every request has a 5 s limit. The password never appears in a message. https:// is checked
 * against broker.ssl_ca_certs, like the broker; a password is not sent over plain http:// to a
 * host other than loopback unless broker.management_allow_http is set.
 */
#ifndef TASKCTL_MGMT_H
#define TASKCTL_MGMT_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>
#include <task/config.h>

struct mgmt {
    char base[512];      /* scheme://host[:port][/prefix], no credentials, no trailing '/' */
    char user[128];
    char password[128];
    char vhost[128];
    char cainfo[512];    /* broker.ssl_ca_certs: https:// peers must chain to it */
    bool no_verify;      /* broker.ssl_cert_reqs = none (warned on stderr) */
    void *curl;          /* CURL *, kept so that a live view reuses its connection */
};

enum {
    MGMT_OK = 0,
    MGMT_NOT_FOUND = 1,  /* HTTP 404: no such queue (or vhost) */
    MGMT_FAILED = 2,     /* unreachable, refused, timeout, bad answer: see the message */
};

/*
 * mgmt_open - set `m` up from cfg (borrowed). Returns 1 when management_url is empty (not used),
 * 0 when ready, -1 on a bad URL (message in err). Free with mgmt_close().
 */
int mgmt_open(struct mgmt *m, const task_config *cfg, char *err, size_t errsize);
void mgmt_close(struct mgmt *m);

/*
 * mgmt_queue_rows - one row per queue of the vhost (names == NULL) or per name in names[0..n):
 * {"name", "ready", "unacked", "consumers", "publish_rate", "deliver_rate"} (rates in msg/s;
 * counts null while the broker has not reported them yet). Queues that do not exist are left
 * out and their names appended to *missing (when not NULL; created on demand).
 * Returns MGMT_OK or MGMT_FAILED (message in err; *rows NULL).
 */
int mgmt_queue_rows(struct mgmt *m, char *const *names, int n, json_object **rows,
                    json_object **missing, char *err, size_t errsize);

#endif
