/* tls.c - see tls.h. */
#include <amqp_ssl_socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "secret_file.h"
#include "tls.h"

/* The first certificate error of the handshake in progress on this thread. rabbitmq-c opens
 * the socket in the caller's thread and keeps its SSL object to itself, so the verify callback
 * is the one place that sees why a certificate was refused. */
static __thread struct {
    int err, depth;
    char subject[200];
} last;

void task__tls_reset(void)
{
    memset(&last, 0, sizeof(last));
}

static int on_verify(int ok, X509_STORE_CTX *x)
{
    if (ok || last.err != 0)
        return ok;
    last.err = X509_STORE_CTX_get_error(x);
    last.depth = X509_STORE_CTX_get_error_depth(x);
    X509 *cert = X509_STORE_CTX_get_current_cert(x);
    if (cert != NULL)
        X509_NAME_oneline(X509_get_subject_name(cert), last.subject, sizeof(last.subject));
    return ok;
}

/* A key with a passphrase would make OpenSSL prompt on the terminal: refuse it instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *ud)
{
    (void)buf, (void)size, (void)rwflag, (void)ud;
    return 0;
}

void task__tls_for_url(const struct task__tls_opts *base, const struct task__url *u,
                       struct task__tls_opts *out)
{
    if (base != NULL)
        *out = *base;
    else
        memset(out, 0, sizeof(*out));
    if (u->ssl_ca_certs[0] != '\0')
        out->ca_certs = u->ssl_ca_certs;
    if (u->ssl_certfile[0] != '\0')
        out->certfile = u->ssl_certfile;
    if (u->ssl_keyfile[0] != '\0')
        out->keyfile = u->ssl_keyfile;
    if (u->ssl_verify >= 0)
        out->no_verify = u->ssl_verify == 0;
    if (u->ssl_check_hostname >= 0)
        out->no_check_hostname = u->ssl_check_hostname == 0;
    if (u->login_external >= 0)
        out->external = u->login_external == 1;
}

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* OpenSSL's reason for the last failure on this thread, or `dflt`. */
static const char *ssl_reason(const char *dflt)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : dflt;
}

static int file_fail(const char *option, const char *path, char *why, size_t size)
{
    if (access(path, R_OK) != 0)
        snprintf(why, size, "%s %s: %s", option, path, strerror(errno));
    else
        snprintf(why, size, "%s %s: cannot load: %s", option, path, ssl_reason("not PEM?"));
    ERR_clear_error();
    return -1;
}

static int load_files(SSL_CTX *ctx, const struct task__tls_opts *o, char *why, size_t size)
{
    const char *ca = set(o->ca_certs) ? o->ca_certs : TASK__TLS_SYSTEM_CA;
    if (!o->no_verify && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        return file_fail("broker.ssl_ca_certs", ca, why, size);
    if (!set(o->certfile)) {
        if (!o->external)
            return 0;
        snprintf(why, size, "broker.login_method EXTERNAL needs a client certificate "
                 "(broker.ssl_certfile)");
        return -1;
    }
    const char *key = set(o->keyfile) ? o->keyfile : o->certfile;
    /* Wherever the name came from (config, environment, a URL's ?ssl_keyfile=, or the key
     * kept in the certificate file), a key others can read is no secret. */
    char perm[300];
    if (task__secret_file_check(key, perm, sizeof(perm)) != 0) {
        snprintf(why, size, "broker.ssl_keyfile %s", perm);
        return -1;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(ctx, o->certfile) != 1)
        return file_fail("broker.ssl_certfile", o->certfile, why, size);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return file_fail("broker.ssl_keyfile", key, why, size);
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(why, size, "broker.ssl_keyfile %s: not the key of %s", key, o->certfile);
        ERR_clear_error();
        return -1;
    }
    return 0;
}

/* OpenSSL checks the name while it verifies the chain: a DNS name, or an IP address against
 * the certificate's IP SANs (which rabbitmq-c's own check never reads). */
static int expect_host(SSL_CTX *ctx, const char *host, char *why, size_t size)
{
    X509_VERIFY_PARAM *p = SSL_CTX_get0_param(ctx);
    unsigned char addr[16];
    int ok;
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(p, host);
    } else {
        X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = X509_VERIFY_PARAM_set1_host(p, host, 0);
    }
    if (ok == 1)
        return 0;
    snprintf(why, size, "TLS: cannot check host name %s", host);
    return -1;
}

int task__tls_prepare(amqp_socket_t *sock, const struct task__tls_opts *o, const char *host,
                      char *why, size_t size)
{
    SSL_CTX *ctx = amqp_ssl_socket_get_context(sock);
    task__tls_reset();
    ERR_clear_error();
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        snprintf(why, size, "TLS: no OpenSSL context");
        return -1;
    }
    if (load_files(ctx, o, why, size) != 0)
        return -1;
    /* rabbitmq-c's own hostname check would refuse IP SANs: OpenSSL's replaces it. */
    amqp_ssl_socket_set_verify_hostname(sock, 0);
    if (o->no_verify) {
        amqp_ssl_socket_set_verify_peer(sock, 0);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    amqp_ssl_socket_set_verify_peer(sock, 1);
    /* VERIFY_PEER: a refused certificate stops the handshake with an alert the broker logs. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, on_verify);
    return o->no_check_hostname ? 0 : expect_host(ctx, host, why, size);
}

bool task__tls_pending(int status)
{
    if (status != AMQP_STATUS_SSL_ERROR && status != AMQP_STATUS_CONNECTION_CLOSED &&
        status != AMQP_STATUS_SOCKET_CLOSED && status != AMQP_STATUS_SOCKET_ERROR)
        return false;
    return status == AMQP_STATUS_SSL_ERROR || last.err != 0 || ERR_peek_last_error() != 0;
}

static const char *hint(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return "";
    switch (ERR_GET_REASON(e)) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return " (is that port TLS? amqps:// needs the broker's TLS listener, usually 5671)";
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        return " (the broker wants a client certificate it trusts: broker.ssl_certfile)";
    default:
        return "";
    }
}

void task__tls_explain(int status, char *buf, size_t size)
{
    if (last.err == X509_V_ERR_HOSTNAME_MISMATCH || last.err == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        snprintf(buf, size, "broker certificate refused: %s (it is for %s)",
                 X509_verify_cert_error_string(last.err), last.subject);
    } else if (last.err != 0) {
        snprintf(buf, size, "broker certificate refused: %s (depth %d: %s)%s",
                 X509_verify_cert_error_string(last.err), last.depth, last.subject,
                 last.err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                         last.err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                         last.err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
                     ? " (not signed by a CA in broker.ssl_ca_certs)"
                     : "");
    } else {
        unsigned long e = ERR_peek_last_error();
        const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
        if (r == NULL && status == AMQP_STATUS_SSL_ERROR) /* a close without an alert */
            snprintf(buf, size, "TLS failed: the broker closed the connection after the "
                     "handshake (it wants a client certificate it trusts? broker.ssl_certfile)");
        else
            snprintf(buf, size, "TLS failed: %s%s", r != NULL ? r : amqp_error_string2(status),
                     hint(e));
    }
    task__tls_reset();
    ERR_clear_error();
}
