/*
 * test_signing.c - the auth-serializer codec (libtask/src/envelope.c, signing.c) without a
 * broker: base64 vectors, seal/open round trips, the signer id as Celery spells it, every
 * refusal reason (tampered, wrong key, untrusted, expired, unsigned), truncated and junk
 * envelopes, and the configuration errors. Keys and certificates are made here with libcrypto.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include "signing.h"

static char dir[64];

/* Write NAME.key (0600) and NAME.pem: a self-signed RSA certificate valid from `from` to `to`
 * seconds around now. */
static void make_cert(const char *name, long serial, long from, long to, int bits)
{
    EVP_PKEY *k = EVP_RSA_gen((unsigned)bits);
    X509 *x = X509_new();
    assert_non_null(k);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), from);
    X509_gmtime_adj(X509_getm_notAfter(x), to);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"taskd tests", -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    chmod(path, 0600);
    snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
    f = fopen(path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static char *path_of(const char *name, const char *ext)
{
    static char buf[8][128];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s.%s", dir, name, ext);
    return buf[i];
}

/* Store file `name` holding the certificates named. */
static char *make_store(const char *name, const char *const *certs)
{
    char *p = path_of(name, "store");
    FILE *out = fopen(p, "w");
    for (; *certs != NULL; certs++) {
        FILE *in = fopen(path_of(*certs, "pem"), "r");
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            fwrite(buf, 1, n, out);
        fclose(in);
    }
    fclose(out);
    return p;
}

/* Set a config string directly (task_config_set() would check the files first). */
static void put(char **field, const char *value)
{
    free(*field);
    *field = value ? strdup(value) : NULL;
}

static struct task__sec *load(const char *who, const char *store, int *expired, task_error *err)
{
    task_config *c = task_config_new();
    put(&c->security_key, path_of(who, "key"));
    put(&c->security_certificate, path_of(who, "pem"));
    put(&c->security_cert_store, store);
    struct task__sec *s = NULL;
    int rc = task__sec_load(c, &s, expired, err);
    task_config_free(c);
    return rc == 0 ? s : NULL;
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test-signing.XXXXXX");
    assert_non_null(mkdtemp(dir));
    make_cert("alice", 1001, -60, 86400, 2048);
    make_cert("bob", 1002, -60, 86400, 3072);
    make_cert("mallory", 1003, -60, 86400, 2048);
    make_cert("old", 1004, -86400 * 3, -86400, 2048);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_base64(void **state)
{
    /* RFC 4648 section 10 */
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        size_t n;
        char *e = task__b64_encode(plain[i], strlen(plain[i]), &n);
        assert_string_equal(e, enc[i]);
        unsigned char *d = task__b64_decode(enc[i], strlen(enc[i]), &n);
        assert_non_null(d);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(d, plain[i], n);
        free(e);
        free(d);
    }
    size_t n;
    unsigned char *d = task__b64_decode("Zm9v\nYmFy\n", 10, &n);
    assert_non_null(d);
    assert_int_equal(n, 6);
    free(d);
    const char *bad[] = {"Zm9", "Zm9v!", "Z===", "Zg==Zg==", "Zg=a", "=Zg="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(task__b64_decode(bad[i], strlen(bad[i]), &n));
}

static void test_round_trip(void **state)
{
    const char *alice_store[] = {"bob", NULL}, *bob_store[] = {"alice", NULL};
    task_error err = {0};
    struct task__sec *a = load("alice", make_store("a", alice_store), NULL, &err);
    assert_non_null(a);
    struct task__sec *b = load("bob", make_store("b", bob_store), NULL, &err);
    assert_non_null(b);
    /* Celery's Certificate.get_id(): issuer values in order, then the decimal serial. */
    assert_string_equal(task__sec_signer(a), "taskd tests alice 1001");
    const char body[] = "[[2, 3], {}, {\"callbacks\": null}]";
    char *env;
    size_t n;
    assert_int_equal(task__sec_seal(a, "application/json", "utf-8", body, strlen(body), &env,
                                    &n, &err), 0);
    assert_int_equal(strlen(env), n);
    struct task__envelope e;
    enum task__bad why;
    assert_int_equal(task__sec_open(b, env, n, &e, &why, &err), 0);
    assert_string_equal(e.signer, "taskd tests alice 1001");
    assert_int_equal(e.sig_len, 256);
    assert_int_equal(e.body_len, strlen(body));
    assert_memory_equal(e.body, body, e.body_len);
    assert_int_equal(e.ct_len, 16);
    assert_memory_equal(e.content_type, "application/json", 16);
    assert_memory_equal(e.content_encoding, "utf-8", 5);
    task__envelope_free(&e);

    /* The other way, a 3072-bit key: a 384-byte signature, found by the signer's key size. */
    char *env2;
    assert_int_equal(task__sec_seal(b, "application/json", "utf-8", body, strlen(body), &env2,
                                    &n, &err), 0);
    assert_int_equal(task__sec_open(a, env2, n, &e, &why, &err), 0);
    assert_int_equal(e.sig_len, 384);
    task__envelope_free(&e);

    /* A signer reads back what it signed itself (its own certificate is trusted). */
    assert_int_equal(task__sec_open(a, env, strlen(env), &e, &why, &err), 0);
    task__envelope_free(&e);

    /* Tampered: one body byte changed, the envelope re-encoded. */
    size_t rl;
    unsigned char *raw = task__b64_decode(env, strlen(env), &rl);
    raw[rl - 3] ^= 1;
    char *forged = task__b64_encode(raw, rl, &n);
    task_error e2 = {0};
    assert_int_equal(task__sec_open(b, forged, n, &e, &why, &e2), TASK_EPROTO);
    assert_int_equal(why, TASK_BAD_SIGNATURE);
    assert_non_null(strstr(e2.msg, "taskd tests alice 1001"));
    task__envelope_free(&e);
    free(forged);

    /* Every truncation of the decoded envelope is refused, none crashes. */
    for (size_t cut = 0; cut < rl; cut++) {
        char *t = task__b64_encode(raw, cut, &n);
        task_error e3 = {0};
        assert_int_equal(task__sec_open(b, t, n, &e, &why, &e3), TASK_EPROTO);
        assert_true(why == TASK_BAD_ENVELOPE || why == TASK_BAD_SIGNATURE ||
                    why == TASK_BAD_UNTRUSTED);
        assert_true(e3.msg[0] != '\0');
        task__envelope_free(&e);
        free(t);
    }
    free(raw);
    free(env);
    free(env2);
    task__sec_free(a);
    task__sec_free(b);
}

static void test_refusals(void **state)
{
    const char *store[] = {"alice", "old", NULL}, *mstore[] = {"alice", NULL};
    task_error err = {0};
    int expired = -1;
    struct task__sec *v = load("bob", make_store("v", store), &expired, &err);
    assert_non_null(v);
    assert_int_equal(expired, 1);
    struct task__sec *m = load("mallory", make_store("m", mstore), NULL, &err);
    struct task__sec *o = load("old", make_store("o", mstore), NULL, &err);
    assert_non_null(m);
    assert_non_null(o);
    const char body[] = "[[], {}, {}]";
    char *env;
    size_t n;
    struct task__envelope e;
    enum task__bad why;

    /* untrusted: mallory is in nobody's store */
    assert_int_equal(task__sec_seal(m, "application/json", "utf-8", body, 12, &env, &n, &err), 0);
    task_error e1 = {0};
    assert_int_equal(task__sec_open(v, env, n, &e, &why, &e1), TASK_EPROTO);
    assert_int_equal(why, TASK_BAD_UNTRUSTED);
    assert_non_null(strstr(e1.msg, "taskd tests mallory 1003"));
    task__envelope_free(&e);
    free(env);

    /* expired: old is trusted but out of date */
    assert_int_equal(task__sec_seal(o, "application/json", "utf-8", body, 12, &env, &n, &err), 0);
    task_error e2 = {0};
    assert_int_equal(task__sec_open(v, env, n, &e, &why, &e2), TASK_EPROTO);
    assert_int_equal(why, TASK_BAD_CERT_EXPIRED);
    assert_non_null(strstr(e2.msg, "expired"));
    task__envelope_free(&e);
    free(env);

    /* unsigned: task__sec_unwrap wants application/data */
    amqp_basic_properties_t p = task__json_props(amqp_empty_table, 2), inner;
    const void *b;
    size_t bl;
    task_error e3 = {0};
    assert_int_equal(task__sec_unwrap(v, &p, body, 12, &inner, &b, &bl, &e, &why, &e3),
                     TASK_EPROTO);
    assert_int_equal(why, TASK_BAD_UNSIGNED);
    assert_non_null(strstr(e3.msg, "application/json"));
    task__envelope_free(&e);

    /* and the good path through unwrap gives the inner content type */
    const char *astore[] = {"bob", NULL};
    struct task__sec *a = load("alice", make_store("a2", astore), NULL, &err);
    assert_int_equal(task__sec_seal(a, "application/json", "utf-8", body, 12, &env, &n, &err), 0);
    p.content_type = amqp_cstring_bytes("application/data");
    assert_true(task__sec_is_signed(&p));
    assert_int_equal(task__sec_unwrap(v, &p, env, n, &inner, &b, &bl, &e, &why, &err), 0);
    assert_int_equal(inner.content_type.len, 16);
    assert_memory_equal(inner.content_type.bytes, "application/json", 16);
    assert_int_equal(bl, 12);
    assert_memory_equal(b, body, 12);
    task__envelope_free(&e);
    free(env);
    task__sec_free(a);
    task__sec_free(v);
    task__sec_free(m);
    task__sec_free(o);
}

static size_t fixed_len(const char *signer, void *ud)
{
    return strcmp(signer, "s 1") == 0 ? 4 : 0;
}

#define C(lit) lit, sizeof(lit) - 1

static void test_envelope_junk(void **state)
{
    struct {
        const char *raw;
        size_t len;
        enum task__bad why;
    } cases[] = {
        {C(""), TASK_BAD_ENVELOPE},
        {C("no separator at all"), TASK_BAD_ENVELOPE},
        {C("\x00\x01" "abcd"), TASK_BAD_ENVELOPE},                      /* empty signer */
        {C("s\x00" "1\x00\x01" "abcd"), TASK_BAD_ENVELOPE},             /* NUL in the signer */
        {C("who\x00\x01" "abcd\x00\x01" "a\x00\x01" "b\x00\x01" "c"), TASK_BAD_UNTRUSTED},
        {C("s 1\x00\x01" "abc"), TASK_BAD_ENVELOPE},                    /* short signature */
        {C("s 1\x00\x01" "abcdXYa\x00\x01" "b\x00\x01" "c"), TASK_BAD_ENVELOPE}, /* no sep */
        {C("s 1\x00\x01" "abcd\x00\x01" "a\x00\x01" "b"), TASK_BAD_ENVELOPE},  /* 2 fields */
        {C("s 1\x00\x01" "abcd\x00\x01" "a\x00\x01" "b\x00\x01" "c\x00\x01" "d"),
         TASK_BAD_ENVELOPE}, /* 4 fields */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n;
        char *b64 = task__b64_encode(cases[i].raw, cases[i].len, &n);
        struct task__envelope e;
        enum task__bad why;
        task_error err = {0};
        assert_int_equal(task__envelope_parse(b64, n, fixed_len, NULL, &e, &why, &err),
                         TASK_EPROTO);
        if (why != cases[i].why)
            fail_msg("case %zu: reason %s, want %s", i, task__bad_slug(why),
                     task__bad_slug(cases[i].why));
        assert_null(e.raw);
        task__envelope_free(&e);
        free(b64);
    }
    /* A signature may hold the separator: its length comes from the key, not from a search. */
    const char ok[] = "s 1\x00\x01" "\x00\x01\x00\x01\x00\x01" "a/b\x00\x01" "u\x00\x01" "{}";
    size_t n;
    char *b64 = task__b64_encode(ok, sizeof(ok) - 1, &n);
    struct task__envelope e;
    enum task__bad why;
    assert_int_equal(task__envelope_parse(b64, n, fixed_len, NULL, &e, &why, NULL), 0);
    assert_int_equal(e.sig_len, 4);
    assert_int_equal(e.ct_len, 3);
    assert_int_equal(e.body_len, 2);
    task__envelope_free(&e);
    free(b64);
    /* Not base64 at all */
    assert_int_equal(task__envelope_parse("%%%%", 4, fixed_len, NULL, &e, &why, NULL),
                     TASK_EPROTO);
    assert_int_equal(why, TASK_BAD_ENVELOPE);
    task__envelope_free(&e);
    /* The builder refuses a body the receiver would cut at a separator. */
    char *out;
    assert_int_equal(task__envelope_build("s 1", (const unsigned char *)"abcd", 4, "a", "b",
                                          "x\x00\x01y", 4, &out, &n), TASK_EINVAL);
}

static void expect_config_error(const char *key, const char *cert, const char *store,
                                const char *needle)
{
    task_config *c = task_config_new();
    put(&c->security_key, key);
    put(&c->security_certificate, cert);
    put(&c->security_cert_store, store);
    struct task__sec *s = NULL;
    task_error err = {0};
    assert_int_equal(task__sec_load(c, &s, NULL, &err), TASK_ECONFIG);
    assert_null(s);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("'%s' does not name '%s'", err.msg, needle);
    task_config_free(c);
}

static void test_config_errors(void **state)
{
    const char *one[] = {"alice", NULL}, *dup[] = {"alice", "alice", NULL};
    char *store = make_store("c1", one);
    task_config *c = task_config_new();
    struct task__sec *s = (void *)1;
    assert_int_equal(task__sec_load(c, &s, NULL, NULL), 0);
    assert_null(s); /* none set: signing off */
    char id[64];
    assert_int_equal(task_config_signer(c, id, sizeof(id), NULL), TASK_ENOTFOUND);
    put(&c->security_key, path_of("alice", "key"));
    put(&c->security_certificate, path_of("alice", "pem"));
    put(&c->security_cert_store, store);
    assert_int_equal(task_config_signer(c, id, sizeof(id), NULL), 0);
    assert_string_equal(id, "taskd tests alice 1001");
    assert_int_equal(task_config_signer(c, id, 10, NULL), TASK_EINVAL);
    task_config_free(c);
    expect_config_error(path_of("alice", "key"), NULL, NULL, "security.certificate");
    expect_config_error(NULL, path_of("alice", "pem"), store, "security.key");
    expect_config_error(path_of("alice", "key"), path_of("bob", "pem"), store,
                        "does not match the key");
    expect_config_error(path_of("alice", "pem"), path_of("alice", "pem"), store,
                        "not an unencrypted PEM private key");
    expect_config_error(path_of("alice", "key"), path_of("alice", "pem"), make_store("d", dup),
                        "duplicate certificate 'taskd tests alice 1001'");
    expect_config_error(path_of("alice", "key"), path_of("alice", "pem"), "/nonexistent",
                        "security.cert_store: /nonexistent");
    expect_config_error(path_of("alice", "key"), path_of("alice", "pem"), path_of("alice", "key"),
                        "no PEM certificate");
    /* A directory store: every file not starting with a dot. */
    char sub[128];
    snprintf(sub, sizeof(sub), "%s/dir", dir);
    mkdir(sub, 0700);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp %s %s/ && cp %s %s/.hidden", path_of("bob", "pem"), sub,
             path_of("alice", "key"), sub);
    assert_int_equal(system(cmd), 0);
    task_error err = {0};
    s = load("alice", sub, NULL, &err);
    assert_non_null(s);
    task__sec_free(s);
    /* The option table checks the key's mode like a password file's. */
    c = task_config_new();
    chmod(path_of("alice", "key"), 0644);
    assert_int_equal(task_config_set(c, "security.key", path_of("alice", "key"), "test", &err),
                     TASK_ECONFIG);
    chmod(path_of("alice", "key"), 0600);
    task_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_envelope_junk),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
