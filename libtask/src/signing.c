/*
 * signing.c - Celery `auth` signatures on libcrypto (see signing.h). What Celery 5.2 does, from
 * celery/security/{key,certificate,serialization}.py: the signature is RSA-PSS with MGF1 over the
 * serialized body using the configured digest and the longest salt; the signer is "issuer
 * attribute values joined by spaces" + " " + the decimal serial; the verifier finds the signer in
 * its store by that string and takes the signature length from the key size.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include "signing.h"

struct trusted {
    char *id;
    X509 *cert;
    EVP_PKEY *pub;              /* borrowed from cert */
};

struct task__sec {
    EVP_PKEY *key;
    X509 *cert;
    char *signer;
    const EVP_MD *md;
    struct trusted *store;
    size_t nstore;
};

/* The last libcrypto error, as text, and the queue cleared (it is per thread). */
static const char *crypto_error(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, size, "unknown libcrypto error");
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

/* Encrypted keys are refused rather than prompted for: a daemon has no terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* One element of a signer id, malloc'd by libcrypto: entry i of the issuer, or (i == n) the
 * serial in decimal. Its length, or -1. */
static int id_part(X509 *x, const X509_NAME *name, int i, int n, unsigned char **u)
{
    *u = NULL;
    if (i < n)
        return ASN1_STRING_to_UTF8(u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *dec = bn ? BN_bn2dec(bn) : NULL;
    BN_free(bn);
    *u = (unsigned char *)dec;
    return dec ? (int)strlen(dec) : -1;
}

/* Celery's Certificate.get_id(): f"{' '.join(issuer values)} {serial}", empty values and all.
 * malloc'd, or NULL. */
static char *cert_id(X509 *x)
{
    const X509_NAME *name = X509_get_issuer_name(x);
    int n = X509_NAME_entry_count(name);
    size_t len = 0;
    char *out = NULL;
    for (int i = 0; i <= n; i++) {
        unsigned char *u;
        int ulen = id_part(x, name, i, n, &u);
        char *bigger = ulen < 0 ? NULL : realloc(out, len + (size_t)ulen + 2);
        if (bigger == NULL) {
            OPENSSL_free(u);
            free(out);
            return NULL;
        }
        out = bigger;
        if (i > 0)
            out[len++] = ' ';
        if (ulen > 0)
            memcpy(out + len, u, (size_t)ulen);
        len += (size_t)ulen;
        out[len] = '\0';
        OPENSSL_free(u);
    }
    return out;
}

static bool cert_current(X509 *x, char *why, size_t size)
{
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        snprintf(why, size, "not valid yet");
        return false;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
        snprintf(why, size, "expired");
        return false;
    }
    return true;
}

static const struct trusted *find(const struct task__sec *s, const char *id)
{
    for (size_t i = 0; i < s->nstore; i++)
        if (strcmp(s->store[i].id, id) == 0)
            return &s->store[i];
    return NULL;
}

static int add_trusted(struct task__sec *s, X509 *x, const char *path, task_error *err)
{
    char *id = cert_id(x);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    if (id == NULL || pub == NULL || !EVP_PKEY_is_a(pub, "RSA")) {
        free(id);
        X509_free(x);
        return task__fail(err, TASK_ECONFIG, "security.cert_store: %s: a certificate without an "
                          "RSA key (Celery's auth serializer signs with RSA only)", path);
    }
    for (size_t i = 0; i < s->nstore; i++) {
        if (strcmp(s->store[i].id, id) == 0) {
            task__fail(err, TASK_ECONFIG, "security.cert_store: %s: duplicate certificate '%s'",
                       path, id);
            free(id);
            X509_free(x);
            return TASK_ECONFIG;
        }
    }
    struct trusted *t = realloc(s->store, (s->nstore + 1) * sizeof(*t));
    if (t == NULL) {
        free(id);
        X509_free(x);
        return task__fail(err, TASK_ENOMEM, "security.cert_store");
    }
    s->store = t;
    s->store[s->nstore++] = (struct trusted){.id = id, .cert = x, .pub = pub};
    return 0;
}

/* Every PEM certificate in one file (Celery reads the first only: more is a superset). */
static int load_cert_file(struct task__sec *s, const char *path, task_error *err)
{
    BIO *b = BIO_new_file(path, "r");
    char ebuf[200];
    if (b == NULL)
        return task__fail(err, TASK_ECONFIG, "security.cert_store: %s: cannot open: %s", path,
                          crypto_error(ebuf, sizeof(ebuf)));
    int n = 0, rc = 0;
    X509 *x;
    while (rc == 0 && (x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) {
        rc = add_trusted(s, x, path, err);
        n++;
    }
    ERR_clear_error(); /* the end of the file reads as an error */
    BIO_free(b);
    if (rc == 0 && n == 0)
        rc = task__fail(err, TASK_ECONFIG, "security.cert_store: %s: no PEM certificate", path);
    return rc;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory: every file in it whose name does not start with a dot (Celery's glob "*"). */
static int load_cert_dir(struct task__sec *s, const char *dir, task_error *err)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return task__fail(err, TASK_ECONFIG, "security.cert_store: %s: cannot open: %m", dir);
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char **more = realloc(names, (n + 1) * sizeof(*names));
        if (more == NULL || (more[n] = malloc(strlen(dir) + strlen(e->d_name) + 2)) == NULL) {
            names = more ? more : names;
            rc = task__fail(err, TASK_ENOMEM, "security.cert_store");
            break;
        }
        names = more;
        sprintf(names[n++], "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (names != NULL)
        qsort(names, n, sizeof(*names), name_cmp); /* the same order, and error, every time */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
            rc = load_cert_file(s, names[i], err);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc == 0 && s->nstore == 0)
        rc = task__fail(err, TASK_ECONFIG, "security.cert_store: %s: no certificate in it", dir);
    return rc;
}

typedef void *(*pem_reader)(BIO *b);

static void *read_key(BIO *b)
{
    return PEM_read_bio_PrivateKey(b, NULL, no_password, NULL);
}

static void *read_x509(BIO *b)
{
    return PEM_read_bio_X509(b, NULL, no_password, NULL);
}

/* The first PEM object of `path` (option `opt`), read by `read`; NULL with the error set,
 * naming the option and the file. */
static void *read_pem(const char *opt, const char *path, pem_reader read, const char *what,
                      task_error *err)
{
    char ebuf[200];
    BIO *b = BIO_new_file(path, "r");
    if (b == NULL) {
        task__fail(err, TASK_ECONFIG, "%s: %s: cannot open: %s", opt, path,
                   crypto_error(ebuf, sizeof(ebuf)));
        return NULL;
    }
    void *obj = read(b);
    BIO_free(b);
    if (obj == NULL)
        task__fail(err, TASK_ECONFIG, "%s: %s: not %s (%s)", opt, path, what,
                   crypto_error(ebuf, sizeof(ebuf)));
    return obj;
}

static int load_key(struct task__sec *s, const char *path, task_error *err)
{
    s->key = read_pem("security.key", path, read_key,
                      "an unencrypted PEM private key", err);
    if (s->key == NULL)
        return TASK_ECONFIG;
    if (!EVP_PKEY_is_a(s->key, "RSA"))
        return task__fail(err, TASK_ECONFIG, "security.key: %s: not an RSA key (Celery's auth "
                          "serializer signs with RSA-PSS)", path);
    return 0;
}

static int load_cert(struct task__sec *s, const char *path, task_error *err)
{
    s->cert = read_pem("security.certificate", path, read_x509,
                       "a PEM certificate", err);
    if (s->cert == NULL)
        return TASK_ECONFIG;
    if (X509_check_private_key(s->cert, s->key) != 1) {
        ERR_clear_error();
        return task__fail(err, TASK_ECONFIG, "security.certificate: %s: does not match the key "
                          "of security.key", path);
    }
    s->signer = cert_id(s->cert);
    return s->signer ? 0 : task__fail(err, TASK_ENOMEM, "security.certificate");
}

static bool set(const char *v)
{
    return v != NULL && v[0] != '\0';
}

int task__sec_load(const task_config *cfg, struct task__sec **out, int *expired,
                   task_error *err)
{
    *out = NULL;
    if (expired != NULL)
        *expired = 0;
    const char *key = cfg->security_key, *cert = cfg->security_certificate,
               *store = cfg->security_cert_store;
    if (!set(key) && !set(cert) && !set(store))
        return 0;
    if (!set(key) || !set(cert) || !set(store))
        return task__fail(err, TASK_ECONFIG, "security.%s is not set: security.key, "
                          "security.certificate and security.cert_store go together",
                          !set(key) ? "key" : !set(cert) ? "certificate" : "cert_store");
    struct task__sec *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return task__fail(err, TASK_ENOMEM, "security");
    const char *digest = set(cfg->security_digest) ? cfg->security_digest : "sha256";
    s->md = EVP_get_digestbyname(digest);
    int rc = s->md ? 0 : task__fail(err, TASK_ECONFIG, "security.digest: unknown digest '%s'",
                                    digest);
    if (rc == 0)
        rc = load_key(s, key, err);
    if (rc == 0)
        rc = load_cert(s, cert, err);
    struct stat st;
    if (rc == 0 && stat(store, &st) != 0)
        rc = task__fail(err, TASK_ECONFIG, "security.cert_store: %s: %m", store);
    if (rc == 0)
        rc = S_ISDIR(st.st_mode) ? load_cert_dir(s, store, err) : load_cert_file(s, store, err);
    /* Our own certificate is trusted too (Celery wants it in the store): a worker reads back
     * what it signed itself, its retries and canvas follow-ups. */
    if (rc == 0 && find(s, s->signer) == NULL) {
        X509 *own = X509_dup(s->cert);
        rc = own ? add_trusted(s, own, cert, err) : task__fail(err, TASK_ENOMEM, "security");
    }
    if (rc != 0) {
        task__sec_free(s);
        return rc;
    }
    char why[32];
    for (size_t i = 0; expired != NULL && i < s->nstore; i++)
        *expired += !cert_current(s->store[i].cert, why, sizeof(why));
    *out = s;
    return 0;
}

void task__sec_free(struct task__sec *s)
{
    if (s == NULL)
        return;
    EVP_PKEY_free(s->key);
    X509_free(s->cert);
    free(s->signer);
    for (size_t i = 0; i < s->nstore; i++) {
        free(s->store[i].id);
        X509_free(s->store[i].cert);
    }
    free(s->store);
    free(s);
}

const char *task__sec_signer(const struct task__sec *s)
{
    return s->signer;
}

/* PSS as Celery's key.py and certificate.py set it up. */
static bool pss_params(EVP_PKEY_CTX *p, const EVP_MD *md)
{
    return EVP_PKEY_CTX_set_rsa_padding(p, RSA_PKCS1_PSS_PADDING) > 0 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(p, md) > 0 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(p, RSA_PSS_SALTLEN_MAX) > 0;
}

int task__sec_seal(const struct task__sec *s, const char *content_type,
                   const char *content_encoding, const void *body, size_t len, char **out,
                   size_t *out_len, task_error *err)
{
    *out = NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *p = NULL;
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    char ebuf[200];
    int rc = 0;
    if (ctx == NULL || EVP_DigestSignInit(ctx, &p, s->md, NULL, s->key) != 1 ||
        !pss_params(p, s->md) || EVP_DigestSign(ctx, NULL, &sig_len, body, len) != 1 ||
        (sig = malloc(sig_len)) == NULL || EVP_DigestSign(ctx, sig, &sig_len, body, len) != 1)
        rc = task__fail(err, TASK_EPROTO, "sign: %s", crypto_error(ebuf, sizeof(ebuf)));
    EVP_MD_CTX_free(ctx);
    if (rc == 0) {
        rc = task__envelope_build(s->signer, sig, sig_len, content_type, content_encoding, body,
                                  len, out, out_len);
        if (rc != 0)
            task__fail(err, rc, "sign: %s", rc == TASK_EINVAL ? "the body holds the bytes 00 01, "
                       "which the auth envelope cannot carry" : "out of memory");
    }
    free(sig);
    return rc;
}

static size_t siglen_of(const char *signer, void *ud)
{
    const struct trusted *t = find(ud, signer);
    return t ? (size_t)EVP_PKEY_get_bits(t->pub) >> 3 : 0; /* key_size >> 3, as Celery */
}

int task__sec_open(const struct task__sec *s, const void *data, size_t len,
                   struct task__envelope *env, enum task__bad *why, task_error *err)
{
    int rc = task__envelope_parse(data, len, siglen_of, (void *)s, env, why, err);
    if (rc != 0)
        return rc;
    const struct trusted *t = find(s, env->signer);
    char state[32];
    if (!cert_current(t->cert, state, sizeof(state))) {
        *why = TASK_BAD_CERT_EXPIRED;
        return task__fail(err, TASK_EPROTO, "certificate of signer '%.200s' is %s",
                          env->signer, state);
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *p = NULL;
    int ok = ctx != NULL && EVP_DigestVerifyInit(ctx, &p, s->md, NULL, t->pub) == 1 &&
             pss_params(p, s->md) &&
             EVP_DigestVerify(ctx, env->sig, env->sig_len, (const unsigned char *)env->body,
                              env->body_len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    if (!ok) {
        *why = TASK_BAD_SIGNATURE;
        return task__fail(err, TASK_EPROTO, "signature does not verify with the certificate of "
                          "signer '%.200s'", env->signer);
    }
    return 0;
}

bool task__sec_is_signed(const amqp_basic_properties_t *p)
{
    return (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) && p->content_type.len == 16 &&
           strncasecmp(p->content_type.bytes, TASK__SIGNED_CONTENT_TYPE, 16) == 0;
}

int task__sec_unwrap(const struct task__sec *s, const amqp_basic_properties_t *in,
                     const void *data, size_t len, amqp_basic_properties_t *props_out,
                     const void **body, size_t *body_len, struct task__envelope *env,
                     enum task__bad *why, task_error *err)
{
    memset(env, 0, sizeof(*env));
    if (!task__sec_is_signed(in)) {
        *why = TASK_BAD_UNSIGNED;
        const amqp_bytes_t *ct = &in->content_type;
        bool has = in->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG;
        return task__fail(err, TASK_EPROTO, "content_type '%.*s' is not %s: signing is required",
                          has ? (int)(ct->len > 80 ? 80 : ct->len) : 0,
                          has ? (const char *)ct->bytes : "", TASK__SIGNED_CONTENT_TYPE);
    }
    int rc = task__sec_open(s, data, len, env, why, err);
    if (rc != 0)
        return rc;
    *props_out = *in;
    props_out->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG;
    props_out->content_type =
        (amqp_bytes_t){.len = env->ct_len, .bytes = (void *)env->content_type};
    props_out->content_encoding =
        (amqp_bytes_t){.len = env->ce_len, .bytes = (void *)env->content_encoding};
    *body = env->body;
    *body_len = env->body_len;
    return 0;
}

/* Seal a body in place: *body (malloc'd) is replaced, props say application/data. */
static int seal_in_place(const struct task__sec *s, amqp_basic_properties_t *props, char **body,
                         size_t *len, task_error *err)
{
    char ct[64], ce[32];
    snprintf(ct, sizeof(ct), "%.*s", (int)props->content_type.len,
             (const char *)props->content_type.bytes);
    snprintf(ce, sizeof(ce), "%.*s", (int)props->content_encoding.len,
             (const char *)props->content_encoding.bytes);
    char *sealed;
    size_t n;
    int rc = task__sec_seal(s, ct, ce, *body, *len, &sealed, &n, err);
    if (rc != 0)
        return rc;
    free(*body);
    *body = sealed;
    *len = n;
    /* kombu's registry entry for 'auth' (celery/security/serialization.py register_auth) */
    props->content_type = amqp_cstring_bytes(TASK__SIGNED_CONTENT_TYPE);
    props->content_encoding = amqp_cstring_bytes("utf-8");
    props->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG;
    return 0;
}

int task__wire_seal(const struct task__sec *s, struct task__wire *w, task_error *err)
{
    return s == NULL ? 0 : seal_in_place(s, &w->props, &w->body, &w->body_len, err);
}

int task__result_wire_seal(const struct task__sec *s, struct task__result_wire *w,
                           task_error *err)
{
    return s == NULL ? 0 : seal_in_place(s, &w->props, &w->body, &w->body_len, err);
}

int task_config_signer(const task_config *cfg, char *buf, size_t size, task_error *err)
{
    if (cfg == NULL || buf == NULL)
        return TASK_EINVAL;
    struct task__sec *s = NULL;
    int rc = task__sec_load(cfg, &s, NULL, err);
    if (rc != 0)
        return rc;
    if (s == NULL)
        return task__fail(err, TASK_ENOTFOUND, "signing is off: security.key, "
                          "security.certificate and security.cert_store are not set");
    if (strlen(s->signer) >= size)
        rc = task__fail(err, TASK_EINVAL, "signer id longer than %zu bytes", size);
    else
        strcpy(buf, s->signer);
    task__sec_free(s);
    return rc;
}
