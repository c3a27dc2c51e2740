/*
 * test_secrets.c - keeping the broker password off the command line (issue 18): the
 * broker.password_file option (file, environment, flag; checked where it is set, so errors name
 * file:line and the option), task_config_resolve() putting the password into every URL, and
 * task__url_scrub() taking it out of an argv string in place.
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
#include <task/config.h>
#include "internal.h"

static char dir[64];

static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char path[8][128];
    static int slot;
    char *p = path[slot++ & 7];
    snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(p, mode), 0);
    return p;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/taskd-secrets-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static void url_with_password_keeps_the_user_and_escapes(void **state)
{
    (void)state;
    char buf[256];
    assert_int_equal(task__url_with_password("amqp://app:old@h:5673/v", "n3w", buf, sizeof(buf)),
                     0);
    assert_string_equal(buf, "amqp://app:n3w@h:5673/v");
    assert_int_equal(task__url_with_password("amqps://h//", "p", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "amqps://guest:p@h//");
    assert_int_equal(task__url_with_password("amqp://bob@h", "a@b:c/d%", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "amqp://bob:a%40b%3Ac%2Fd%25@h");
    /* ...and the parser reads back exactly the password that went in. */
    struct task__url u;
    task_error err = {0};
    assert_int_equal(task__url_parse(buf, &u, &err), 0);
    assert_string_equal(u.user, "bob");
    assert_string_equal(u.password, "a@b:c/d%");
    assert_string_equal(u.host, "h");
    assert_int_equal(task__url_with_password("no-scheme", "p", buf, sizeof(buf)), -1);
    assert_int_equal(task__url_with_password("amqp://h", "p", buf, 12), -1);
}

static void scrub_hides_the_password_in_place(void **state)
{
    (void)state;
    char arg[] = "amqp://guest:s3cretpass@127.0.0.1:5672//";
    size_t size = sizeof(arg);
    assert_int_equal(task__url_scrub(arg), 1);
    assert_string_equal(arg, "amqp://guest:***@127.0.0.1:5672//");
    for (size_t i = strlen(arg); i < size; i++) /* the freed tail is NULs, not old bytes */
        assert_int_equal(arg[i], '\0');
    char eq[] = "--broker=amqp://u:pw@h";
    assert_int_equal(task__url_scrub(eq), 1);
    assert_string_equal(eq, "--broker=amqp://u:**@h");
    char none[] = "amqp://u@h//";
    assert_int_equal(task__url_scrub(none), 0);
    assert_string_equal(none, "amqp://u@h//");
    char plain[] = "-Q";
    assert_int_equal(task__url_scrub(plain), 0);
    assert_string_equal(plain, "-Q");
}

static void password_file_fills_every_url(void **state)
{
    (void)state;
    const char *pw = write_file("pw", "t0p s3cret\n", 0600);
    task_config *c = task_config_new();
    task_error err = {0};
    assert_int_equal(task_config_set(c, "broker.urls", "amqp://app:wrong@h1//, amqp://h2/v",
                                     "--broker", &err), 0);
    assert_int_equal(task_config_set(c, "broker.password_file", pw, "--pw", &err), 0);
    assert_int_equal(task_config_resolve(c, &err), 0);
    assert_int_equal(c->broker_urls.n, 2);
    assert_string_equal(c->broker_urls.v[0], "amqp://app:t0p%20s3cret@h1//");
    assert_string_equal(c->broker_urls.v[1], "amqp://guest:t0p%20s3cret@h2/v");
    /* Resolving again (flags applied after the files) changes nothing. */
    assert_int_equal(task_config_resolve(c, &err), 0);
    assert_string_equal(c->broker_urls.v[0], "amqp://app:t0p%20s3cret@h1//");
    task_config_free(c);
}

static void password_file_from_the_environment(void **state)
{
    (void)state;
    const char *pw = write_file("envpw", "fromenv\r\nsecond line ignored\n", 0640);
    setenv("TASKD_BROKER_PASSWORD_FILE", pw, 1);
    setenv("TASKD_BROKER_URL", "amqp://svc@broker//", 1);
    task_config *c = task_config_new();
    task_error err = {0};
    assert_int_equal(task_config_load_default(c, "no-such-taskctl.conf", NULL, &err), 0);
    assert_string_equal(c->broker_urls.v[0], "amqp://svc:fromenv@broker//");
    task_config_free(c);
    unsetenv("TASKD_BROKER_PASSWORD_FILE");
    unsetenv("TASKD_BROKER_URL");
}

static void bad_password_files_are_named_where_set(void **state)
{
    (void)state;
    const char *open_pw = write_file("open", "visible\n", 0644);
    char text[512];
    snprintf(text, sizeof(text),
             "broker:\n{\n  urls = \"amqp://h//\";\n  password_file = \"%s\";\n};\n", open_pw);
    const char *conf = write_file("taskd.conf", text, 0600);
    task_config *c = task_config_new();
    task_error err = {0};
    assert_int_equal(task_config_load_file(c, conf, &err), TASK_ECONFIG);
    char want[512];
    snprintf(want, sizeof(want), "%s:4: broker.password_file: %s: refused: readable by others "
             "(chmod 600 or 640)", conf, open_pw);
    assert_string_equal(err.msg, want);
    assert_null(strstr(err.msg, "visible"));

    err = (task_error){0};
    const char *writable = write_file("gw", "x\n", 0660);
    assert_int_equal(task_config_set(c, "broker.password_file", writable, "--pw", &err),
                     TASK_ECONFIG);
    assert_non_null(strstr(err.msg, "--pw: broker.password_file: "));
    assert_non_null(strstr(err.msg, "writable by group or others"));

    err = (task_error){0};
    setenv("TASKD_BROKER_PASSWORD_FILE", "/nonexistent/pw", 1);
    assert_int_equal(task_config_load_env(c, &err), TASK_ECONFIG);
    assert_string_equal(err.msg, "TASKD_BROKER_PASSWORD_FILE: broker.password_file: "
                                 "/nonexistent/pw: No such file or directory");
    unsetenv("TASKD_BROKER_PASSWORD_FILE");
    task_config_free(c);
}

static void empty_or_vanished_file_fails_at_resolve(void **state)
{
    (void)state;
    const char *empty = write_file("empty", "\n", 0600);
    task_config *c = task_config_new();
    task_error err = {0};
    assert_int_equal(task_config_set(c, "broker.password_file", empty, "--pw", &err), 0);
    assert_int_equal(task_config_resolve(c, &err), TASK_ECONFIG);
    assert_non_null(strstr(err.msg, "empty first line"));
    /* A file removed between the check and the read is an error, not the URL's password. */
    const char *gone = write_file("gone", "p\n", 0600);
    assert_int_equal(task_config_set(c, "broker.password_file", gone, "--pw", &err), 0);
    unlink(gone);
    err = (task_error){0};
    assert_int_equal(task_config_resolve(c, &err), TASK_ECONFIG);
    assert_non_null(strstr(err.msg, "broker.password_file: "));
    assert_string_equal(c->broker_urls.v[0], "amqp://guest:guest@127.0.0.1:5672//");
    task_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_with_password_keeps_the_user_and_escapes),
        cmocka_unit_test(scrub_hides_the_password_in_place),
        cmocka_unit_test(password_file_fills_every_url),
        cmocka_unit_test(password_file_from_the_environment),
        cmocka_unit_test(bad_password_files_are_named_where_set),
        cmocka_unit_test(empty_or_vanished_file_fails_at_resolve),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
