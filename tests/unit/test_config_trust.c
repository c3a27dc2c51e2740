/*
 * test_config_trust.c - which files the config loader (and taskd, for modules) trusts, and
 * which sources each program reads: a file someone other than root and us could change is
 * refused with one line naming it and why; taskd never reads ./taskd.conf; taskctl keeps
 * ./taskctl.conf only when it is trusted.
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

struct dir {
    char path[64];
    char file[96];
    char cwd[4096];
};

/* A private directory (0755) holding `name` with `text` at mode `mode`. */
static void make(struct dir *d, const char *name, const char *text, mode_t mode)
{
    snprintf(d->path, sizeof(d->path), "/tmp/t_cfgtrust_%d_XXXXXX", (int)getpid());
    assert_non_null(mkdtemp(d->path));
    assert_int_equal(chmod(d->path, 0755), 0);
    snprintf(d->file, sizeof(d->file), "%s/%s", d->path, name);
    FILE *f = fopen(d->file, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(d->file, mode), 0);
    assert_non_null(getcwd(d->cwd, sizeof(d->cwd)));
}

static void cleanup(struct dir *d)
{
    assert_int_equal(chdir(d->cwd), 0);
    unlink(d->file);
    rmdir(d->path);
}

static int trusted(const char *path, char *msg, size_t size)
{
    task_error err = {0};
    int rc = task_config_file_trusted(path, &err);
    snprintf(msg, size, "%s", err.msg);
    return rc;
}

static void only_root_and_us_may_change_a_trusted_file(void **state)
{
    (void)state;
    struct dir d;
    char msg[256];
    make(&d, "taskd.conf", "", 0644);
    assert_int_equal(trusted(d.file, msg, sizeof(msg)), 0);

    assert_int_equal(chmod(d.file, 0664), 0);
    assert_int_equal(trusted(d.file, msg, sizeof(msg)), TASK_ECONFIG);
    assert_non_null(strstr(msg, d.file));
    assert_non_null(strstr(msg, "refused: writable by group or others"));

    assert_int_equal(chmod(d.file, 0646), 0);
    assert_int_equal(trusted(d.file, msg, sizeof(msg)), TASK_ECONFIG);

    /* Others could replace it in a directory they may write... */
    assert_int_equal(chmod(d.file, 0644), 0);
    assert_int_equal(chmod(d.path, 0777), 0);
    assert_int_equal(trusted(d.file, msg, sizeof(msg)), TASK_ECONFIG);
    assert_non_null(strstr(msg, "its directory is writable by group or others"));
    /* ...but not in a sticky one, as /tmp is. */
    assert_int_equal(chmod(d.path, 01777), 0);
    assert_int_equal(trusted(d.file, msg, sizeof(msg)), 0);
    assert_int_equal(chmod(d.path, 0755), 0);

    /* Relative paths are checked against the working directory. */
    assert_int_equal(chdir(d.path), 0);
    assert_int_equal(trusted("taskd.conf", msg, sizeof(msg)), 0);
    assert_int_equal(trusted("./missing.conf", msg, sizeof(msg)), TASK_EIO);
    cleanup(&d);
}

static void a_file_owned_by_another_user_is_refused(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip(); /* only root can give a file away */
    struct dir d;
    char msg[256];
    make(&d, "libmod.so", "", 0644);
    assert_int_equal(chown(d.file, 65534, 65534), 0);
    assert_int_equal(trusted(d.file, msg, sizeof(msg)), TASK_ECONFIG);
    assert_non_null(strstr(msg, "refused: owned by another user"));
    assert_int_equal(chown(d.file, 0, 0), 0);
    assert_int_equal(chown(d.path, 65534, 65534), 0);
    assert_int_equal(trusted(d.file, msg, sizeof(msg)), TASK_ECONFIG);
    assert_non_null(strstr(msg, "its directory is owned by another user"));
    cleanup(&d);
}

static void the_daemon_does_not_read_its_working_directory(void **state)
{
    (void)state;
    struct dir d;
    make(&d, "taskd.conf", "worker: { pool_size = 3; modules = [ \"/tmp/planted.so\" ]; };\n",
         0644);
    assert_int_equal(chdir(d.path), 0);
    task_error err = {0};
    task_config *cfg = task_config_new();
    assert_int_equal(task_config_load_default_ex(cfg, "taskd.conf", NULL, TASK_CONFIG_NO_CWD,
                                                 &err), 0);
    assert_int_equal(cfg->pool_size, 0);
    assert_int_equal(cfg->modules.n, 0);
    task_config_free(cfg);
    /* Without the flag (taskctl, clients) the file is read: the flag is what keeps it out. */
    cfg = task_config_new();
    assert_int_equal(task_config_load_default(cfg, "taskd.conf", NULL, &err), 0);
    assert_int_equal(cfg->pool_size, 3);
    task_config_free(cfg);
    cleanup(&d);
}

static void an_implicit_file_others_can_write_is_refused(void **state)
{
    (void)state;
    struct dir d;
    make(&d, "taskctl.conf", "client: { default_queue = \"elsewhere\"; };\n", 0666);
    assert_int_equal(chdir(d.path), 0);
    task_error err = {0};
    task_config *cfg = task_config_new();
    assert_int_equal(task_config_load_default(cfg, "taskctl.conf", NULL, &err), TASK_ECONFIG);
    assert_string_equal(err.msg, "taskctl.conf: refused: writable by group or others");
    assert_string_equal(cfg->default_queue, "celery");
    task_config_free(cfg);
    cleanup(&d);
}

static void an_explicit_file_is_checked_when_asked_unless_allowed(void **state)
{
    (void)state;
    struct dir d;
    make(&d, "mine.conf", "worker: { pool_size = 2; };\n", 0666);
    unsigned taskd = TASK_CONFIG_NO_CWD | TASK_CONFIG_CHECK_EXPLICIT;
    task_error err = {0};
    task_config *cfg = task_config_new();
    assert_int_equal(task_config_load_default_ex(cfg, "taskd.conf", d.file, taskd, &err),
                     TASK_ECONFIG);
    assert_non_null(strstr(err.msg, "refused: writable by group or others"));
    assert_int_equal(cfg->pool_size, 0);
    task_config_free(cfg);

    task_error err2 = {0};
    cfg = task_config_new();
    assert_int_equal(task_config_load_default_ex(cfg, "taskd.conf", d.file,
                                                 taskd | TASK_CONFIG_ALLOW_INSECURE, &err2), 0);
    assert_int_equal(cfg->pool_size, 2);
    task_config_free(cfg);

    /* taskctl names its file itself: no check of --config. */
    task_error err3 = {0};
    cfg = task_config_new();
    assert_int_equal(task_config_load_default(cfg, "taskctl.conf", d.file, &err3), 0);
    assert_int_equal(cfg->pool_size, 2);
    task_config_free(cfg);
    cleanup(&d);
}

static void allow_insecure_files_is_an_option_off_by_default(void **state)
{
    (void)state;
    task_config *cfg = task_config_new();
    assert_false(cfg->allow_insecure_files);
    task_error err = {0};
    assert_int_equal(task_config_set(cfg, "worker.allow_insecure_files", "yes", "test", &err), 0);
    assert_true(cfg->allow_insecure_files);
    task_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_root_and_us_may_change_a_trusted_file),
        cmocka_unit_test(a_file_owned_by_another_user_is_refused),
        cmocka_unit_test(the_daemon_does_not_read_its_working_directory),
        cmocka_unit_test(an_implicit_file_others_can_write_is_refused),
        cmocka_unit_test(an_explicit_file_is_checked_when_asked_unless_allowed),
        cmocka_unit_test(allow_insecure_files_is_an_option_off_by_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
