/*
 * task/config.h - configuration shared by taskd, taskctl and libtask clients.
 *
 * Sources, later ones win: built-in defaults, /etc/taskd/<file>, ./<file> (taskctl and clients
 * only: taskd never reads its working directory), the file given with --config, TASKD_*
 * environment variables, command-line flags (task_config_set()).
 * Files are libconfig syntax; every option is declared once, in libtask's option table, and
 * documented in config/taskd.conf. Every error names the file and line (or the environment
 * variable) and the option, e.g. "taskd.conf:12: worker.pool_size: 5000 is out of range 0..1024".
 */
#ifndef TASK_CONFIG_H
#define TASK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <task/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A list of strings; owned by the config that holds it. */
typedef struct task_strlist {
    char **v;
    int n;
} task_strlist;

/*
 * task_config - plain data; fields are read directly. Strings and lists are owned by the config:
 * change them only through task_config_set(). Units are in the field names.
 */
typedef struct task_config {
    /* broker */
    task_strlist broker_urls;     /* broker.urls; amqp:// or amqps://, tried in order */
    double connect_timeout_s;     /* broker.connect_timeout: TCP + AMQP handshake */
    int heartbeat_s;              /* broker.heartbeat; 0 disables */
    char *management_url;         /* broker.management_url: HTTP API base; "" = not used */

    /* worker */
    task_strlist queues;          /* worker.queues: queues to consume */
    int pool_size;                /* worker.pool_size: processes; 0 = one per core */
    int threads;                  /* worker.threads: task threads per process */
    int prefetch_multiplier;      /* worker.prefetch_multiplier: prefetch = slots x this + ... */
    int confirm_window;           /* worker.confirm_window: ... + deliveries whose results wait
                                   * for the broker's confirm before their ack */
    task_strlist modules;         /* worker.modules: task modules (.so) to load */
    char *dead_queue;             /* worker.dead_queue: quarantine for bad messages */
    int max_message_bytes;        /* worker.max_message_size: larger bodies are quarantined */
    int json_max_depth;           /* worker.json_max_depth: deeper JSON is quarantined */
    double shutdown_grace_s;      /* worker.shutdown_grace: warm shutdown limit */
    char *hostname;               /* worker.hostname: node name; "" = taskd@<host> */
    char *log_level;              /* worker.log_level: error, warn, info, debug */
    int max_tasks_per_child;      /* worker.max_tasks_per_child: recycle after; 0 = never */
    int max_memory_per_child_kb;  /* worker.max_memory_per_child: recycle above (KiB); 0 = never */
    bool requeue_on_crash;        /* worker.requeue_on_crash: requeue once instead of FAILURE */
    bool send_events;             /* worker.send_events: task events on celeryev (taskd -E) */
    char *metrics_listen;         /* worker.metrics_listen: "[HOST:]PORT" for /metrics; "" = off */
    bool allow_insecure_files;    /* worker.allow_insecure_files: load modules (and config files)
                                   * that others than root and us may change */
    bool track_started;           /* worker.track_started: publish STARTED when a task starts */
    double lease_after_s;         /* worker.lease_after: a task running this long is leased (its
                                   * delivery acked, its message parked in the broker), well
                                   * before the broker's consumer_timeout closes the channel */
    double give_back_after_s;     /* worker.give_back_after: a delivery waiting (backlog, rate
                                   * limit, eta) this long goes back to its queue */
    double lease_s;               /* worker.lease: a leased task whose worker is gone runs again
                                   * after this long */

    /* task defaults (a task's TASK() options override them) */
    int max_retries;              /* tasks.max_retries */
    double time_limit_s;          /* tasks.time_limit; 0 = none */
    double soft_time_limit_s;     /* tasks.soft_time_limit; 0 = none */

    /* queues (topology: the same for every client and worker of a queue) */
    task_strlist queue_arguments; /* queues.arguments: "QUEUE KEY=VALUE ..." declare arguments */
    task_strlist queue_routes;    /* queues.routes: "TASK-GLOB QUEUE", first match wins */

    /* client */
    double send_timeout_s;        /* client.send_timeout: wait for the broker's confirm */
    char *default_queue;          /* client.default_queue */

    /* results */
    double results_max_age_s;     /* results.max_age: result stream retention */
    bool results_stream;          /* results.stream: append states to the results stream */

    /* Since 0.2; last so that the offsets of the fields above stay as they were. */
    char *broker_password_file;   /* broker.password_file: the broker password, first line of
                                   * this file; "" = the password in the URL (or guest) */

    /* Since 0.3: message signing, Celery's `auth` serializer (docs/signing.md). All three set:
     * task messages and results are signed, and only signed ones from a trusted signer are
     * accepted. None set: off. */
    char *security_key;           /* security.key: PEM RSA private key (unencrypted) */
    char *security_certificate;   /* security.certificate: PEM certificate of that key */
    char *security_cert_store;    /* security.cert_store: PEM file, or a directory of them, of
                                   * the signers trusted */
    char *security_digest;        /* security.digest: sha256 (Celery's default), sha384, ... */
    /* Since 0.3: TLS (amqps:// URLs and https:// management URLs; docs/tls.md). A broker URL's
     * query (kombu's ?ssl_ca_certs=...&ssl_cert_reqs=...) overrides these for that URL. */
    char *ssl_ca_certs;           /* broker.ssl_ca_certs: CA bundle (PEM) the broker's
                                   * certificate must chain to */
    char *ssl_certfile;           /* broker.ssl_certfile: client certificate (PEM); "" = none */
    char *ssl_keyfile;            /* broker.ssl_keyfile: its private key; "" = none */
    char *ssl_cert_reqs;          /* broker.ssl_cert_reqs: "required" (or CERT_REQUIRED...),
                                   * "none" turns verification off (logged at each connect) */
    bool ssl_check_hostname;      /* broker.ssl_check_hostname: the certificate must name the
                                   * URL's host (DNS name or IP address) */
    char *login_method;           /* broker.login_method: "PLAIN" or "EXTERNAL" (client
                                   * certificate login, rabbitmq_auth_mechanism_ssl) */
    bool management_allow_http;   /* broker.management_allow_http: send the management
                                   * password over plain http:// to a non-loopback host */
} task_config;

/* task_config_new - a config holding the defaults. NULL on out-of-memory. Free with
 * task_config_free(). Since: 0.1. */
TASK_API task_config *task_config_new(void);

/* task_config_free - frees `cfg` and everything it owns; NULL is a no-op. */
TASK_API void task_config_free(task_config *cfg);

/*
 * task_config_load_file - read libconfig file `path` (borrowed) into `cfg`. Options absent from
 * the file keep their value. An unknown option, a wrong type or an out-of-range value is an error
 * naming path:line and the option. On error `cfg` may be partly updated. Returns 0, TASK_ECONFIG
 * or TASK_EIO (cannot read the file); detail in `err` (optional).
 */
TASK_API int task_config_load_file(task_config *cfg, const char *path, task_error *err);

/*
 * task_config_load_env - apply TASKD_* variables from the environment (TASKD_BROKER_URL, a comma
 * list, for broker.urls; TASKD_<SECTION>_<NAME> for the rest). Errors name the variable.
 */
TASK_API int task_config_load_env(task_config *cfg, task_error *err);

/*
 * task_config_set - set option `path` ("worker.pool_size") from text `value` (lists: comma
 * separated), as a command-line flag would. `origin` names the source for errors ("--pool").
 */
TASK_API int task_config_set(task_config *cfg, const char *path, const char *value,
                             const char *origin, task_error *err);

/*
 * task_config_resolve - apply what the config refers to: when broker.password_file is set,
 * read the password (the file's first line) and put it into every broker URL (replacing any
 * password there; a URL without a user gets "guest"). Idempotent: call it again after a later
 * task_config_set() of broker.urls (flags). task_config_load_default() and
 * task_config_load_default_ex() call it last. Returns 0 or TASK_ECONFIG ("broker.password_file:
 * PATH: ..."); the password is never put into err. Since: 0.2.
 */
TASK_API int task_config_resolve(task_config *cfg, task_error *err);

/*
 * task_config_signer - check the message-signing options of `cfg` (security.key, certificate,
 * cert_store, digest) the way task_client_new() and taskd load them, and write into `buf` the
 * signer id that receivers look up in their cert store: the certificate's issuer attribute
 * values joined by spaces, a space and the decimal serial (Celery's Certificate.get_id()).
 * Returns 0; TASK_ENOTFOUND when signing is off (none of the three set); TASK_ECONFIG with the
 * option and file in err (a missing option, a key that is not an unencrypted PEM RSA key or does
 * not match the certificate, an unreadable or empty store, a duplicate signer); TASK_EINVAL when
 * `buf` is too small. Since: 0.3. See docs/signing.md.
 */
TASK_API int task_config_signer(const task_config *cfg, char *buf, size_t size, task_error *err);

/*
 * task_config_load_default - the standard sequence: /etc/taskd/<name>, ./<name> (each only if it
 * exists, and only if task_config_file_trusted() accepts it), then `explicit_path` (must exist,
 * when not NULL), then the environment, then task_config_resolve(). `name` is "taskd.conf" or
 * "taskctl.conf".
 * Same as task_config_load_default_ex() with flags 0.
 */
TASK_API int task_config_load_default(task_config *cfg, const char *name,
                                      const char *explicit_path, task_error *err);

/* Flags of task_config_load_default_ex(). */
#define TASK_CONFIG_NO_CWD 0x1         /* skip ./<name>: a daemon's working directory is not its
                                        * own to trust (taskd) */
#define TASK_CONFIG_CHECK_EXPLICIT 0x2 /* `explicit_path` must pass task_config_file_trusted() */
#define TASK_CONFIG_ALLOW_INSECURE 0x4 /* check no file (--allow-insecure-files) */

/*
 * task_config_load_default_ex - task_config_load_default() with `flags` (TASK_CONFIG_*).
 * A file that fails its check is TASK_ECONFIG ("PATH: refused: writable by group or others").
 * Since: 0.2.
 */
TASK_API int task_config_load_default_ex(task_config *cfg, const char *name,
                                         const char *explicit_path, unsigned flags,
                                         task_error *err);

/*
 * task_config_file_trusted - may only root and the effective user change `path` (borrowed)?
 * Returns 0 when the file is owned by root or the effective user, is not writable by group or
 * others, and its directory is owned by root or us and not writable by group or others (a
 * sticky directory such as /tmp is fine: others cannot replace our file there). Otherwise
 * TASK_ECONFIG with "PATH: refused: <why>" in err, or TASK_EIO when it cannot be examined.
 * Symbolic links are followed: the check is on the file that would be read. Since: 0.2.
 */
TASK_API int task_config_file_trusted(const char *path, task_error *err);

#ifdef __cplusplus
}
#endif
#endif
