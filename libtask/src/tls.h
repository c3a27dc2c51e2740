/*
 * tls.h - TLS for broker connections on top of rabbitmq-c's OpenSSL socket.
 *
 * rabbitmq-c 0.11 loads no trust store of its own and its hostname check reads DNS names only,
 * so an amqps:// URL could not connect to anything, and never to a broker reached by IP
 * address. Here the CA bundle is always loaded (the system one by default), the host or IP
 * address is checked by OpenSSL during the handshake (X509_VERIFY_PARAM on rabbitmq-c's
 * SSL_CTX), and the reason a handshake failed is kept so that the caller can say it in one line
 * ("certificate has expired", "Hostname mismatch", "wrong version number").
 */
#ifndef TASK_TLS_H
#define TASK_TLS_H

#include <amqp.h>
#include <stdbool.h>
#include <stddef.h>
#include "internal.h"

/* What a connection asks of TLS. All zero: verify against the system bundle, check the host,
 * no client certificate, PLAIN login. Strings are borrowed. */
struct task__tls_opts {
    const char *ca_certs;     /* NULL or "": TASK__TLS_SYSTEM_CA */
    const char *certfile;     /* client certificate (PEM); NULL or "": none */
    const char *keyfile;      /* its key; NULL or "": in certfile */
    bool no_verify;           /* ssl_cert_reqs=none: accept any certificate (logged loudly) */
    bool no_check_hostname;   /* verify the chain only */
    bool external;            /* login_method=EXTERNAL */
};

#define TASK__TLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

/* Filled from a config by task__tls_from_config() (config_opts.h). */
/* `base` (NULL: defaults) with the query overrides of URL `u` (kombu's ?ssl_... names): into
 * *out, whose strings borrow from base and u. */
void task__tls_for_url(const struct task__tls_opts *base, const struct task__url *u,
                       struct task__tls_opts *out);

/* Set up rabbitmq-c TLS socket `sock` (not yet open) for `host`. 0, or -1 with a one-line
 * reason in why naming the file or option at fault. */
int task__tls_prepare(amqp_socket_t *sock, const struct task__tls_opts *o, const char *host,
                      char *why, size_t size);

/* After amqp_socket_open*() on a prepared socket failed with `status`, or a TLS connection
 * broke during login: why, in one line (the certificate error, or OpenSSL's reason). Clears the
 * kept reason. */
void task__tls_explain(int status, char *buf, size_t size);

/* Did TLS fail on this thread (an alert, a broken record) behind rabbitmq-c status `status`? */
bool task__tls_pending(int status);

/* Forget any kept reason (before an open). */
void task__tls_reset(void);

#endif
