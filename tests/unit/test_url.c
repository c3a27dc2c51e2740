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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_path_slash_double_slash_and_2f_all_mean_root_vhost),
        cmocka_unit_test(named_vhost_and_escapes),
        cmocka_unit_test(bad_urls_are_refused_without_the_password),
        cmocka_unit_test(redact_hides_only_the_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
