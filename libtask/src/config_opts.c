/* config_opts.c - see config_opts.h. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <task/config.h>
#include "config_opts.h"
#include "secret_file.h"
#include "task_limits.h"

#define OFF(f) offsetof(task_config, f)

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const digests[] = {"sha256", "sha384", "sha512", "sha224", "sha1", NULL};
/* kombu.utils.url.parse_ssl_cert_reqs() accepts both spellings. */
static const char *const cert_reqs[] = {"required", "optional", "none", "CERT_REQUIRED",
                                        "CERT_OPTIONAL", "CERT_NONE", NULL};
static const char *const login_methods[] = {"PLAIN", "AMQPLAIN", "EXTERNAL", NULL};

static const struct task__opt opts[] = {
    {"broker.urls", OPT_STRLIST, OFF(broker_urls), "amqp://guest:guest@127.0.0.1:5672//", 0, 0,
     NULL, false, "TASKD_BROKER_URL", "broker URLs, tried in order", NULL},
    {"broker.connect_timeout", OPT_SECONDS, OFF(connect_timeout_s), "5", 0.1, 300, NULL, true,
     NULL, "TCP connect + AMQP handshake limit per URL", NULL},
    {"broker.heartbeat", OPT_INT, OFF(heartbeat_s), "60", 0, 3600, NULL, false, NULL,
     "AMQP heartbeat in seconds; 0 disables", NULL},
    {"broker.management_url", OPT_STRING, OFF(management_url), "", 0, 0, NULL, true,
     "TASKD_MANAGEMENT_URL", "RabbitMQ management HTTP API (http://user:pass@host:15672); "
     "empty = not used", NULL},
    /* Checked when set, so that a bad path is reported where it was written (file:line, the
     * variable or the flag); read by task_config_resolve() once every source is in. */
    {"broker.password_file", OPT_STRING, OFF(broker_password_file), "", 0, 0, NULL, false, NULL,
     "file whose first line is the broker password; replaces the password of every broker URL",
     task__secret_file_check},
    /* Message signing (Celery's auth serializer): checked when set, loaded by the client and
     * the worker (signing.c), which name the option in their errors. */
    {"security.key", OPT_STRING, OFF(security_key), "", 0, 0, NULL, false, NULL,
     "PEM RSA private key that signs task messages and results (Celery's security_key)",
     task__secret_file_check},
    {"security.certificate", OPT_STRING, OFF(security_certificate), "", 0, 0, NULL, false, NULL,
     "PEM certificate of security.key; names the signer (Celery's security_certificate)", NULL},
    {"security.cert_store", OPT_STRING, OFF(security_cert_store), "", 0, 0, NULL, false, NULL,
     "PEM certificate file, or a directory of them, of the trusted signers "
     "(Celery's security_cert_store)", NULL},
    {"security.digest", OPT_STRING, OFF(security_digest), "sha256", 0, 0, digests, false, NULL,
     "signature digest (Celery's security_digest)", NULL},
    /* TLS: not reloadable, a connection keeps what it was opened with. */
    {"broker.ssl_ca_certs", OPT_STRING, OFF(ssl_ca_certs), "/etc/ssl/certs/ca-certificates.crt",
     0, 0, NULL, false, NULL, "CA bundle (PEM) that amqps:// and https:// peers must chain to",
     NULL},
    {"broker.ssl_certfile", OPT_STRING, OFF(ssl_certfile), "", 0, 0, NULL, false, NULL,
     "client certificate (PEM) for mutual TLS; empty = none", NULL},
    /* A private key is a secret: the same checks as the password file. */
    {"broker.ssl_keyfile", OPT_STRING, OFF(ssl_keyfile), "", 0, 0, NULL, false, NULL,
     "private key (PEM) of broker.ssl_certfile", task__secret_file_check},
    {"broker.ssl_cert_reqs", OPT_STRING, OFF(ssl_cert_reqs), "required", 0, 0, cert_reqs, false,
     NULL, "required: verify the broker's certificate; none: do not (logged at each connect)",
     NULL},
    {"broker.ssl_check_hostname", OPT_BOOL, OFF(ssl_check_hostname), "true", 0, 0, NULL, false,
     NULL, "the broker's certificate must name the URL's host (DNS name or IP address)", NULL},
    {"broker.login_method", OPT_STRING, OFF(login_method), "PLAIN", 0, 0, login_methods, false,
     NULL, "PLAIN (user and password) or EXTERNAL (the client certificate's name)", NULL},
    {"broker.management_allow_http", OPT_BOOL, OFF(management_allow_http), "false", 0, 0, NULL,
     false, NULL, "send the management password over plain http:// to a non-loopback host",
     NULL},
    {"worker.queues", OPT_STRLIST, OFF(queues), "celery", 0, 0, NULL, false, NULL,
     "queues to consume", NULL},
    {"worker.pool_size", OPT_INT, OFF(pool_size), "0", 0, 1024, NULL, false, NULL,
     "worker processes; 0 = one per core", NULL},
    {"worker.threads", OPT_INT, OFF(threads), "1", 1, 4096, NULL, false, NULL,
     "task threads per process", NULL},
    {"worker.prefetch_multiplier", OPT_INT, OFF(prefetch_multiplier), "4", 1, 1000, NULL, false,
     NULL, "prefetch = slots x this + worker.confirm_window", NULL},
    /* Little's law: a delivery stays unacked from receipt until its result is confirmed, so
     * the window must cover the ones waiting only for confirms, or slots idle between them
     * (measured here: 1.7-2x the throughput of 8 for taskd -c 2 with 64 more). It grows from
     * here with what is measured (taskd/window.h). */
    {"worker.confirm_window", OPT_INT, OFF(confirm_window), "64", 0, 65535, NULL, false, NULL,
     "deliveries beyond the slots' share whose results may wait for the broker's confirm (the "
     "start: it adapts up to 512; 0: none)",
     NULL},
    {"worker.modules", OPT_STRLIST, OFF(modules), "", 0, 0, NULL, false, NULL,
     "task modules (.so) to load", NULL},
    {"worker.dead_queue", OPT_STRING, OFF(dead_queue), "taskd.dead", 0, 0, NULL, false, NULL,
     "durable quarantine queue for bad messages", NULL},
    /* Defaults and caps come from task_limits.h: a worker must never accept what a lookup
     * cannot read. (The size default is spelled out: the option table holds text.) */
    {"worker.max_message_size", OPT_INT, OFF(max_message_bytes), "16777216", 1024,
     TASK__MAX_MESSAGE_BYTES_CAP, NULL, true, NULL,
     "bodies larger than this (bytes) are quarantined", NULL},
    {"worker.json_max_depth", OPT_INT, OFF(json_max_depth), TASK__STR(TASK__JSON_MAX_DEPTH), 2,
     TASK__JSON_MAX_DEPTH, NULL, true, NULL, "JSON nested deeper than this is quarantined", NULL},
    {"worker.shutdown_grace", OPT_SECONDS, OFF(shutdown_grace_s), "30", 0, 86400, NULL, true,
     NULL, "warm shutdown limit", NULL},
    {"worker.hostname", OPT_STRING, OFF(hostname), "", 0, 0, NULL, false, NULL,
     "node name; empty = taskd<pid>@<host>", NULL},
    {"worker.log_level", OPT_STRING, OFF(log_level), "info", 0, 0, log_levels, true, NULL,
     "error, warn, info or debug", NULL},
    {"worker.max_tasks_per_child", OPT_INT, OFF(max_tasks_per_child), "0", 0, 1000000000, NULL,
     true, NULL, "recycle a child after this many tasks; 0 = never", NULL},
    {"worker.max_memory_per_child", OPT_INT, OFF(max_memory_per_child_kb), "0", 0, 1000000000,
     NULL, true, NULL, "recycle a child whose RSS passes this (KiB); 0 = never", NULL},
    {"worker.requeue_on_crash", OPT_BOOL, OFF(requeue_on_crash), "false", 0, 0, NULL, true, NULL,
     "a task whose child died is requeued once instead of failing", NULL},
    {"worker.send_events", OPT_BOOL, OFF(send_events), "false", 0, 0, NULL, true, NULL,
     "publish task events (received, started, succeeded, ...) to celeryev", NULL},
    {"worker.metrics_listen", OPT_STRING, OFF(metrics_listen), "", 0, 0, NULL, false, NULL,
     "serve Prometheus metrics over HTTP on [HOST:]PORT; empty = off", NULL},
    {"worker.allow_insecure_files", OPT_BOOL, OFF(allow_insecure_files), "false", 0, 0, NULL,
     false, NULL, "load modules and config files that group or others may write", NULL},
    {"worker.track_started", OPT_BOOL, OFF(track_started), "true", 0, 0, NULL, true, NULL,
     "publish STARTED when a task starts (Celery's task_track_started)", NULL},
    /* RabbitMQ closes a channel with a delivery unacked past consumer_timeout (30 min by
     * default, 60 s on some hosted brokers): stay well under the smallest seen. */
    {"worker.lease_after", OPT_SECONDS, OFF(lease_after_s), "10", 0, 86400, NULL, true, NULL,
     "a task running this long is leased (its delivery acked, its message parked in the "
     "broker); 0: at start; keep it under the broker's consumer_timeout", NULL},
    {"worker.give_back_after", OPT_SECONDS, OFF(give_back_after_s), "30", 1, 86400, NULL, true,
     NULL, "a delivery waiting this long (backlog, rate limit, eta) goes back to its queue; keep "
     "it under the broker's consumer_timeout", NULL},
    {"worker.lease", OPT_SECONDS, OFF(lease_s), "300", 10, 86400, NULL, true, NULL,
     "a leased (long) task whose worker is gone runs again after this long", NULL},
    {"tasks.max_retries", OPT_INT, OFF(max_retries), "3", -1, 1000000, NULL, true, NULL,
     "default retry limit; -1 = unlimited", NULL},
    {"tasks.time_limit", OPT_SECONDS, OFF(time_limit_s), "0", 0, 31536000, NULL, true, NULL,
     "default hard time limit; 0 = none", NULL},
    {"tasks.soft_time_limit", OPT_SECONDS, OFF(soft_time_limit_s), "0", 0, 31536000, NULL, true,
     NULL, "default soft time limit; 0 = none", NULL},
    {"queues.arguments", OPT_STRLIST, OFF(queue_arguments), "", 0, 0, NULL, false, NULL,
     "declare arguments per queue: \"QUEUE KEY=VALUE ...\"", NULL},
    {"queues.routes", OPT_STRLIST, OFF(queue_routes), "", 0, 0, NULL, false, NULL,
     "task-name glob -> queue: \"GLOB QUEUE\", first match wins", NULL},
    {"client.send_timeout", OPT_SECONDS, OFF(send_timeout_s), "30", 0.1, 3600, NULL, true, NULL,
     "how long task_send() waits for the broker's confirm", NULL},
    {"client.default_queue", OPT_STRING, OFF(default_queue), "celery", 0, 0, NULL, true, NULL,
     "queue for tasks sent without one", NULL},
    {"results.max_age", OPT_SECONDS, OFF(results_max_age_s), "86400", 60, 31536000, NULL, false,
     NULL, "results stream retention", NULL},
    {"results.stream", OPT_BOOL, OFF(results_stream), "true", 0, 0, NULL, false, NULL,
     "append every state to the results stream (lookups from any process)", NULL},
};

const struct task__opt *task__config_opts(size_t *n)
{
    *n = sizeof(opts) / sizeof(opts[0]);
    return opts;
}

const struct task__opt *task__config_opt_find(const char *path)
{
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        if (strcmp(opts[i].path, path) == 0)
            return &opts[i];
    }
    return NULL;
}

void task__config_opt_env(const struct task__opt *o, char *buf, size_t size)
{
    if (o->env != NULL) {
        snprintf(buf, size, "%s", o->env);
        return;
    }
    size_t n = (size_t)snprintf(buf, size, "TASKD_");
    for (const char *p = o->path; *p != '\0' && n + 1 < size; p++)
        buf[n++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    buf[n < size ? n : size - 1] = '\0';
}
