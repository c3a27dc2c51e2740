/*
 * test_config.c - the configuration loader: defaults, files, environment, flags, and errors that
 * name file:line (or the variable, or the flag) and the option. Also checks the documentation
 * against the option table: every option is in config/taskd.conf with its real default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <task/config.h>
#include "config_opts.h"
#include "internal.h"
#include "topology.h"

static char tmpfile_path[64];

static const char *write_conf(const char *text)
{
    snprintf(tmpfile_path, sizeof(tmpfile_path), "/tmp/taskd-test-%d.conf", (int)getpid());
    FILE *f = fopen(tmpfile_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return tmpfile_path;
}

static void expect_file_error(const char *text, const char *msg_suffix)
{
    task_config *c = task_config_new();
    task_error err = {0};
    const char *path = write_conf(text);
    assert_int_equal(task_config_load_file(c, path, &err), TASK_ECONFIG);
    char want[512];
    snprintf(want, sizeof(want), "%s:%s", path, msg_suffix);
    assert_string_equal(err.msg, want);
    task_config_free(c);
    unlink(path);
}

static void defaults_are_set(void **state)
{
    (void)state;
    task_config *c = task_config_new();
    assert_non_null(c);
    assert_int_equal(c->broker_urls.n, 1);
    assert_string_equal(c->broker_urls.v[0], "amqp://guest:guest@127.0.0.1:5672//");
    assert_int_equal(c->queues.n, 1);
    assert_string_equal(c->queues.v[0], "celery");
    assert_int_equal(c->modules.n, 0);
    assert_int_equal(c->prefetch_multiplier, 4);
    assert_string_equal(c->dead_queue, "taskd.dead");
    assert_true(c->send_timeout_s == 30);
    assert_true(c->results_max_age_s == 86400);
    task_config_free(c);
    task_config_free(NULL);
}

static void file_values_of_every_type(void **state)
{
    (void)state;
    task_config *c = task_config_new();
    task_error err = {0};
    const char *path = write_conf(
        "broker: { urls = [\"amqp://a//\", \"amqp://b//\"]; connect_timeout = 2.5; };\n"
        "worker: { pool_size = 3; queues = \"one\"; modules = (\"x.so\", \"y.so\");\n"
        "          shutdown_grace = \"500ms\"; log_level = \"debug\"; };\n"
        "results: { max_age = \"2h\"; };\n");
    assert_int_equal(task_config_load_file(c, path, &err), 0);
    assert_int_equal(c->broker_urls.n, 2);
    assert_string_equal(c->broker_urls.v[1], "amqp://b//");
    assert_true(c->connect_timeout_s == 2.5);
    assert_int_equal(c->pool_size, 3);
    assert_int_equal(c->queues.n, 1);
    assert_string_equal(c->queues.v[0], "one");
    assert_int_equal(c->modules.n, 2);
    assert_true(fabs(c->shutdown_grace_s - 0.5) < 1e-9);
    assert_string_equal(c->log_level, "debug");
    assert_true(c->results_max_age_s == 7200);
    task_config_free(c);
    unlink(path);
}

/* The beat section (a list of entries) is taskd's scheduler's to read and check
 * (taskd/beat_entry.c): the option loader passes over it, and only it. */
static void beat_section_is_left_to_the_scheduler(void **state)
{
    (void)state;
    task_config *c = task_config_new();
    task_error err = {0};
    const char *path = write_conf(
        "worker: { threads = 3; };\n"
        "beat = { entries = ( { name = \"t\"; task = \"test.add\"; every = 1.0; } ); };\n");
    assert_int_equal(task_config_load_file(c, path, &err), 0);
    assert_int_equal(c->threads, 3);
    task_config_free(c);
    unlink(path);
    expect_file_error("beats = { x = 1; };\n", "1: beats.x: unknown option");
}

static void file_errors_name_file_line_and_option(void **state)
{
    (void)state;
    expect_file_error("worker: {\n  pool_size = 5000;\n};\n",
                      "2: worker.pool_size: 5000 is out of range 0..1024");
    expect_file_error("worker: {\n\n  pool_sise = 2;\n};\n", "3: worker.pool_sise: unknown option");
    expect_file_error("worker: { threads = \"four\"; };\n",
                      "1: worker.threads: expected an integer");
    expect_file_error("worker: { log_level = \"loud\"; };\n",
                      "1: worker.log_level: \"loud\" is not one of the allowed values");
    expect_file_error("pool_size = 3;\n",
                      "1: pool_size: expected a section like pool_size: { ... }");
    expect_file_error("worker: { modules = [1, 2]; };\n",
                      "1: worker.modules: element 0 is not a string");
    expect_file_error("broker: {\n  urls = [\"a\" ;\n};\n", "2: syntax error: syntax error");
    expect_file_error("queues: {\n  arguments = [ \"celery x-max-priority=9\" ];\n};\n",
                      "2: queues.arguments: celery: the default queue takes no arguments (stock "
                      "Celery clients declare it without any and would get 406)");
    expect_file_error("queues: { arguments = [ \"urgent\" ]; };\n",
                      "1: queues.arguments: \"urgent\": expected 1 to 16 KEY=VALUE arguments "
                      "after the queue");
    expect_file_error("queues: { arguments = [ \"urgent x-max-priority\" ]; };\n",
                      "1: queues.arguments: \"x-max-priority\": expected KEY=VALUE");
    expect_file_error("queues: {\n\n routes = [ \"audio.* media extra\" ];\n};\n",
                      "3: queues.routes: \"audio.* media extra\": expected \"TASK-GLOB QUEUE\"");
    expect_file_error("queues: { routes = [ \"audio.*\" ]; };\n",
                      "1: queues.routes: \"audio.*\": expected \"TASK-GLOB QUEUE\"");
}

/* Routes: first matching glob wins, else the default; trailing blanks do not reach queue names. */
static void routes_pick_the_first_matching_glob(void **state)
{
    (void)state;
    task_config *c = task_config_new();
    task_error err = {0};
    assert_int_equal(task_config_set(c, "queues.routes", "audio.* media , audio.mix mixer,"
                                     "test.?dd  adders  ", "test", &err), 0);
    struct task__topo t;
    assert_int_equal(task__topo_init(&t, c), 0);
    assert_string_equal(task__topo_route(&t, "audio.render", "celery"), "media");
    assert_string_equal(task__topo_route(&t, "audio.mix", "celery"), "media");
    assert_string_equal(task__topo_route(&t, "test.add", "celery"), "adders");
    assert_string_equal(task__topo_route(&t, "test.echo", "celery"), "celery");
    assert_null(task__topo_route(&t, "video.cut", NULL));
    task__topo_free(&t);
    assert_int_equal(task_config_set(c, "queues.routes", "bad", "--route", &err), TASK_ECONFIG);
    assert_string_equal(err.msg, "--route: queues.routes: \"bad\": expected \"TASK-GLOB QUEUE\"");
    task_config_free(c);
}

/* Which configured arguments a queue has (taskd keeps a single-active-consumer queue's
 * consumer when it resizes its window). */
static void queue_arguments_are_found_by_queue_and_key(void **state)
{
    (void)state;
    task_config *c = task_config_new();
    task_error err = {0};
    assert_int_equal(task_config_set(c, "queues.arguments", "sac x-single-active-consumer=true "
                                     "x-max-priority=9, other x-max-priority=5", "test", &err), 0);
    struct task__topo t;
    assert_int_equal(task__topo_init(&t, c), 0);
    assert_true(task__topo_has_arg(&t, "sac", "x-single-active-consumer"));
    assert_true(task__topo_has_arg(&t, "sac", "x-max-priority"));
    assert_false(task__topo_has_arg(&t, "other", "x-single-active-consumer"));
    assert_false(task__topo_has_arg(&t, "celery", "x-single-active-consumer"));
    assert_false(task__topo_has_arg(&t, "sac", "x-single"));
    task__topo_free(&t);
    task_config_free(c);
}

static void missing_file_is_an_io_error(void **state)
{
    (void)state;
    task_config *c = task_config_new();
    task_error err = {0};
    assert_int_equal(task_config_load_file(c, "/nonexistent/taskd.conf", &err), TASK_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/taskd.conf"));
    err = (task_error){0};
    assert_int_equal(task_config_load_default(c, "taskd.conf", "/nonexistent/x.conf", &err),
                     TASK_EIO);
    task_config_free(c);
}

static void environment_maps_and_errors_name_the_variable(void **state)
{
    (void)state;
    task_config *c = task_config_new();
    task_error err = {0};
    setenv("TASKD_BROKER_URL", "amqp://u:p@h1//, amqp://h2//", 1);
    setenv("TASKD_WORKER_POOL_SIZE", "7", 1);
    setenv("TASKD_RMQ_DIR", "/tmp/ignored", 1); /* other tools' variables are not ours */
    assert_int_equal(task_config_load_env(c, &err), 0);
    assert_int_equal(c->broker_urls.n, 2);
    assert_string_equal(c->broker_urls.v[1], "amqp://h2//");
    assert_int_equal(c->pool_size, 7);
    setenv("TASKD_WORKER_POOL_SIZE", "four", 1);
    assert_int_equal(task_config_load_env(c, &err), TASK_ECONFIG);
    assert_string_equal(err.msg, "TASKD_WORKER_POOL_SIZE: worker.pool_size: \"four\" is not an "
                                 "integer");
    unsetenv("TASKD_WORKER_POOL_SIZE");
    unsetenv("TASKD_BROKER_URL");
    unsetenv("TASKD_RMQ_DIR");
    task_config_free(c);
}

static void flags_set_values_and_never_echo_passwords(void **state)
{
    (void)state;
    task_config *c = task_config_new();
    task_error err = {0};
    assert_int_equal(task_config_set(c, "worker.queues", "a, b,c", "-Q", &err), 0);
    assert_int_equal(c->queues.n, 3);
    assert_string_equal(c->queues.v[1], "b");
    assert_int_equal(task_config_set(c, "worker.threads", "0", "--threads", &err), TASK_ECONFIG);
    assert_string_equal(err.msg, "--threads: worker.threads: 0 is out of range 1..4096");
    err = (task_error){0};
    assert_int_equal(task_config_set(c, "nope.x", "1", "--x", &err), TASK_ECONFIG);
    assert_string_equal(err.msg, "--x: nope.x: unknown option");
    err = (task_error){0};
    assert_int_equal(task_config_set(c, "client.send_timeout", "soon", "--t", &err),
                     TASK_ECONFIG);
    assert_non_null(strstr(err.msg, "is not a duration"));
    task_config_free(c);
}

/* config/taskd.conf documents every option of the table, with the default the code uses. */
static void every_option_is_documented_with_its_default(void **state)
{
    (void)state;
    char path[1024];
    const char *root = getenv("TASKD_SOURCE_ROOT");
    snprintf(path, sizeof(path), "%s/config/taskd.conf", root ? root : ".");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    size_t nopts;
    const struct task__opt *o = task__config_opts(&nopts);
    for (size_t i = 0; i < nopts; i++) {
        const char *dot = strchr(o[i].path, '.');
        char section[64], line[128], env[96];
        snprintf(section, sizeof(section), "\n%.*s:\n", (int)(dot - o[i].path), o[i].path);
        snprintf(line, sizeof(line), "# %s = ", dot + 1);
        task__config_opt_env(&o[i], env, sizeof(env));
        const char *sec = strstr(text, section);
        if (sec == NULL || strstr(sec, line) == NULL)
            fail_msg("config/taskd.conf does not document %s", o[i].path);
        if (strstr(text, env) == NULL)
            fail_msg("config/taskd.conf does not name %s for %s", env, o[i].path);
    }
    /* Uncomment every "# name = value;" line: the result must load and equal the defaults. */
    char *active = strdup(text);
    for (char *p = active; (p = strstr(p, "\n    # ")) != NULL; p++) {
        char *eq = strstr(p, " = ");
        char *nl = strchr(p + 1, '\n');
        if (eq != NULL && nl != NULL && eq < nl && nl[-1] == ';')
            p[5] = ' ';
    }
    const char *tmp = write_conf(active);
    task_config *doc = task_config_new();
    task_config *def = task_config_new();
    task_error err = {0};
    assert_int_equal(task_config_load_file(doc, tmp, &err), 0);
    for (size_t i = 0; i < nopts; i++) {
        const char *a = (const char *)doc + o[i].off, *b = (const char *)def + o[i].off;
        int same = 1;
        switch (o[i].type) {
        case OPT_INT: same = *(const int *)a == *(const int *)b; break;
        case OPT_SECONDS: same = *(const double *)a == *(const double *)b; break;
        case OPT_BOOL: same = *(const bool *)a == *(const bool *)b; break;
        case OPT_STRING: same = !strcmp(*(char *const *)a, *(char *const *)b); break;
        case OPT_STRLIST: {
            const task_strlist *x = (const void *)a, *y = (const void *)b;
            same = x->n == y->n;
            for (int k = 0; same && k < x->n; k++)
                same = !strcmp(x->v[k], y->v[k]);
            break;
        }
        }
        if (!same)
            fail_msg("config/taskd.conf shows a default for %s that the code does not use",
                     o[i].path);
    }
    task_config_free(doc);
    task_config_free(def);
    free(active);
    unlink(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_set),
        cmocka_unit_test(file_values_of_every_type),
        cmocka_unit_test(file_errors_name_file_line_and_option),
        cmocka_unit_test(beat_section_is_left_to_the_scheduler),
        cmocka_unit_test(missing_file_is_an_io_error),
        cmocka_unit_test(environment_maps_and_errors_name_the_variable),
        cmocka_unit_test(flags_set_values_and_never_echo_passwords),
        cmocka_unit_test(every_option_is_documented_with_its_default),
        cmocka_unit_test(routes_pick_the_first_matching_glob),
        cmocka_unit_test(queue_arguments_are_found_by_queue_and_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
