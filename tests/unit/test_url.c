/* test_url.c - broker URLs as Celery users write them; passwords never shown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include "internal.h"

static void check(const char *text, const char *host, int port, const char *user,
                  const char *pass, const char *vhost)
{
    struct task__url u;
    task_error err = {0};
    assert_int_equal(task__url_parse(text, &u, &err), 0);
    assert_string_equal(u.host, host);
    assert_int_equal(u.port, port);
    assert_string_equal(u.user, user);
    assert_string_equal(u.password, pass);
    assert_string_equal(u.vhost, vhost);
}

static void no_path_slash_double_slash_and_2f_all_mean_root_vhost(void **state)
{
    (void)state;
    check("amqp://guest:guest@127.0.0.1:5672", "127.0.0.1", 5672, "guest", "guest", "/");
    check("amqp://guest:guest@127.0.0.1:5672/", "127.0.0.1", 5672, "guest", "guest", "/");
    check("amqp://guest:guest@127.0.0.1:5672//", "127.0.0.1", 5672, "guest", "guest", "/");
    check("amqp://guest:guest@127.0.0.1:5672/%2F", "127.0.0.1", 5672, "guest", "guest", "/");
    check("amqp://guest:guest@127.0.0.1:5672/%2f", "127.0.0.1", 5672, "guest", "guest", "/");
}

static void named_vhost_and_escapes(void **state)
{
    (void)state;
    check("amqp://u:p@h:1234/prod", "h", 1234, "u", "p", "prod");
    check("amqp://u%40x:p%3Aw@h/v%2Fx", "h", 5672, "u@x", "p:w", "v/x");
    check("amqps://h", "h", 5671, "guest", "guest", "/");
    check("amqp://", "localhost", 5672, "guest", "guest", "/");
    check("amqp://u:p@[::1]:99/", "::1", 99, "u", "p", "/");
    check("amqp://h:5672/v?heartbeat=5", "h", 5672, "guest", "guest", "v");
}

static void bad_urls_are_refused_without_the_password(void **state)
{
    (void)state;
    const char *bad[] = {"http://u:secret@h/", "amqp://u:secret@h:99999/",
                         "amqp://u:secret@h:12x/", "amqp://u:secret@h/%zz", "amqp://u:secret@[::1/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct task__url u;
        task_error err = {0};
        assert_int_equal(task__url_parse(bad[i], &u, &err), TASK_EINVAL);
        assert_true(err.msg[0] != '\0');
        assert_null(strstr(err.msg, "secret"));
    }
}

static void redact_hides_only_the_password(void **state)
{
    (void)state;
    char buf[256];
    task__url_redact("amqp://guest:s3cr3t@h:5672//", buf, sizeof(buf));
    assert_string_equal(buf, "amqp://guest:***@h:5672//");
    task__url_redact("amqp://h:5672/v", buf, sizeof(buf));
    assert_string_equal(buf, "amqp://h:5672/v");
    task__url_redact("amqp://user@h/", buf, sizeof(buf));
    assert_string_equal(buf, "amqp://user@h/");
}

/* kombu's ?ssl_... names reach the connection instead of being dropped (issue 19). */
static void query_carries_tls_options_and_unknown_names_are_refused(void **state)
{
    (void)state;
    struct task__url u;
    task_error err = {0};
    assert_int_equal(task__url_parse("amqps://u:p@h/v?ssl_ca_certs=/e/ca.pem&ssl_certfile=%2Fc.pem"
                                     "&ssl_keyfile=/k.pem&ssl_cert_reqs=CERT_REQUIRED"
                                     "&login_method=EXTERNAL&heartbeat=7",
                                     &u, &err), 0);
    assert_string_equal(u.vhost, "v");
    assert_string_equal(u.ssl_ca_certs, "/e/ca.pem");
    assert_string_equal(u.ssl_certfile, "/c.pem");
    assert_string_equal(u.ssl_keyfile, "/k.pem");
    assert_int_equal(u.ssl_verify, 1);
    assert_int_equal(u.login_external, 1);
    assert_int_equal(u.heartbeat, 7);
    assert_int_equal(u.ssl_check_hostname, -1);
    /* kombu: any ssl_* parameter turns TLS on, and with it the TLS port */
    assert_int_equal(task__url_parse("amqp://h?ssl_cert_reqs=none&ssl_check_hostname=false", &u,
                                     &err), 0);
    assert_true(u.tls);
    assert_int_equal(u.port, 5671);
    assert_int_equal(u.ssl_verify, 0);
    assert_int_equal(u.ssl_check_hostname, 0);
    assert_string_equal(u.vhost, "/");
    assert_int_equal(task__url_parse("amqp://h:5672//", &u, &err), 0);
    assert_false(u.tls);
    assert_int_equal(u.ssl_verify, -1);
    const char *bad[] = {"amqps://u:secret@h/?ssl_cert_reqs=maybe", "amqps://u:secret@h/?nope=1",
                         "amqps://u:secret@h/?ssl_ca_certs", "amqps://u:secret@h/?login_method=X",
                         "amqps://u:secret@h/?heartbeat=-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        task_error e = {0};
        assert_int_equal(task__url_parse(bad[i], &u, &e), TASK_EINVAL);
        assert_null(strstr(e.msg, "secret"));
        assert_non_null(strstr(e.msg, "broker URL"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(query_carries_tls_options_and_unknown_names_are_refused),
        cmocka_unit_test(no_path_slash_double_slash_and_2f_all_mean_root_vhost),
        cmocka_unit_test(named_vhost_and_escapes),
        cmocka_unit_test(bad_urls_are_refused_without_the_password),
        cmocka_unit_test(redact_hides_only_the_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
