/*
 * itest.h - helpers for integration tests against the private broker the harness started
 * (TASKD_BROKER_URL). Without a broker a test exits 77 (skip), or fails when the harness says
 * TASKD_REQUIRE_BROKER=1. Every test names its queues t_<test>_<pid>_... so tests can share
 * one node in parallel.
 */
#ifndef ITEST_H
#define ITEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <task/client.h>
#include <task/config.h>

static inline const char *itest_broker(void)
{
    const char *url = getenv("TASKD_BROKER_URL");
    if (url == NULL || url[0] == '\0') {
        const char *req = getenv("TASKD_REQUIRE_BROKER");
        fprintf(stderr, "no TASKD_BROKER_URL: run under tests/harness/with-broker\n");
        exit(req && req[0] == '1' ? 1 : 77);
    }
    return url;
}

/* A loopback TCP port nobody listens on now (the kernel's pick for port 0); -1 on error. */
static inline int itest_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
             getsockname(fd, (struct sockaddr *)&a, &len) == 0;
    if (fd >= 0)
        close(fd);
    return ok ? ntohs(a.sin_port) : -1;
}

static inline const char *itest_build_root(void)
{
    const char *b = getenv("TASKD_BUILD_ROOT");
    return b ? b : ".";
}

static inline double itest_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct itest_worker {
    pid_t pid;
    char log[256];
};

/* True once `needle` appears in the file at `path`. */
static inline int itest_file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* How many lines of the file at `path` contain `needle` (0 if it cannot be read). */
static inline int itest_file_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int n = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    if (f != NULL)
        fclose(f);
    return n;
}

/* itest_file_has within `timeout_s`: a worker logs an event just after it acts on it. */
static inline int itest_file_waits_for(const char *path, const char *needle, double timeout_s)
{
    double deadline = itest_now() + timeout_s;
    while (!itest_file_has(path, needle) && itest_now() < deadline)
        usleep(20000);
    return itest_file_has(path, needle);
}

/*
 * Start taskd with the test-task module, consuming `queue`, with extra environment assignments
 * (NULL-terminated "NAME=value" list, may be NULL). Waits for its worker_ready log line.
 * Returns 0 or -1.
 */
static inline int itest_worker_start(struct itest_worker *w, const char *queue,
                                     const char *const *env, const char *const *extra_args)
{
    char taskd[512], module[512];
    snprintf(taskd, sizeof(taskd), "%s/taskd/taskd", itest_build_root());
    snprintf(module, sizeof(module), "%s/tests/tasks/libtesttasks.so", itest_build_root());
    static int started; /* two workers on one queue get two logs */
    snprintf(w->log, sizeof(w->log), "/tmp/itest-taskd-%d-%s-%d.log", (int)getpid(), queue,
             started++);
    unlink(w->log);
    w->pid = fork();
    if (w->pid < 0)
        return -1;
    if (w->pid == 0) {
        FILE *f = freopen(w->log, "w", stderr);
        (void)f;
        for (int i = 0; env != NULL && env[i] != NULL; i++)
            putenv((char *)env[i]);
        const char *argv[32] = {taskd, "--broker", itest_broker(), "-Q", queue,
                                "--module", module, "--loglevel", "debug"};
        int n = 9;
        for (int i = 0; extra_args != NULL && extra_args[i] != NULL && n < 31; i++)
            argv[n++] = extra_args[i];
        argv[n] = NULL;
        execv(taskd, (char *const *)argv);
        _exit(127);
    }
    double deadline = itest_now() + 20;
    while (itest_now() < deadline) {
        if (itest_file_has(w->log, "event=worker_ready"))
            return 0;
        int st;
        if (waitpid(w->pid, &st, WNOHANG) == w->pid) {
            fprintf(stderr, "taskd exited early; log %s\n", w->log);
            w->pid = 0;
            return -1;
        }
        usleep(20000);
    }
    return -1;
}

/* Send `sig` and wait for the exit; returns the exit status (or 128+signal), -1 on timeout. */
static inline int itest_worker_stop(struct itest_worker *w, int sig, double timeout_s)
{
    if (w->pid <= 0)
        return -1;
    if (sig != 0)
        kill(w->pid, sig);
    double deadline = itest_now() + timeout_s;
    int st;
    while (itest_now() < deadline) {
        if (waitpid(w->pid, &st, WNOHANG) == w->pid) {
            w->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(10000);
    }
    kill(w->pid, SIGKILL);
    waitpid(w->pid, &st, 0);
    w->pid = 0;
    return -1;
}

static inline int itest_worker_alive(const struct itest_worker *w)
{
    return w->pid > 0 && kill(w->pid, 0) == 0 && waitpid(w->pid, NULL, WNOHANG) == 0;
}

/* A client on the test broker whose default queue is `queue`. `settings` (NULL-terminated
 * "option=value" strings, may be NULL) go through task_config_set. NULL, with a message on
 * stderr, on error. */
static inline task_client *itest_client(const char *queue, const char *const *settings)
{
    task_config *cfg = task_config_new();
    task_error err = {0};
    int rc = cfg ? 0 : -1;
    if (rc == 0)
        rc = task_config_set(cfg, "broker.urls", itest_broker(), "test", &err);
    if (rc == 0)
        rc = task_config_set(cfg, "client.default_queue", queue, "test", &err);
    for (int i = 0; rc == 0 && settings != NULL && settings[i] != NULL; i++) {
        char path[128];
        const char *eq = strchr(settings[i], '=');
        snprintf(path, sizeof(path), "%.*s", eq ? (int)(eq - settings[i]) : 0, settings[i]);
        rc = task_config_set(cfg, path, eq ? eq + 1 : "", "test", &err);
    }
    task_client *c = rc == 0 ? task_client_new(cfg, &err) : NULL;
    if (c == NULL)
        fprintf(stderr, "itest client: %s\n", err.msg);
    task_config_free(cfg);
    return c;
}

#endif
