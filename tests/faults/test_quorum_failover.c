/*
 * test_quorum_failover.c - fault (c) of issue 7: a 3-node cluster of its own, the task queue a
 * quorum queue; in the middle of 10k test.add tasks, kill -9 the node that leads the queue. The
 * worker and the client (both given all three URLs, both connected to the leader) reconnect to
 * a survivor by themselves and every task ends with a SUCCESS record in the (replicated) results
 * stream: 0 lost. Prints sent / results / lost / duplicates / time to recover.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ctype.h>
#include <task/client.h>
#include "faultlib.h"
#include "internal.h"
#include "../integration/itest.h"

enum { N = 10000, KILL_AT = 3000 };
#define PREFIX "fccccccc-0000-4000-8000-"

static char rmq[512], dir[64];

/* Run tests/harness/rmq-node on our cluster; its stdout into `out` (may be NULL). */
static int rabbit(const char *args, char *out, size_t size)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "TASKD_RMQ_DIR=%s %s %s 2>>%s.err", dir, rmq, args, dir);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t n = out != NULL ? fread(out, 1, size - 1, p) : 0;
    if (out != NULL)
        out[n] = '\0';
    char sink[4096];
    while (fread(sink, 1, sizeof(sink), p) > 0) {
    }
    return pclose(p);
}

/* The value of KEY=... in `text` (rmq-node's start output), into `out`. */
static bool value_of(const char *text, const char *key, char *out, size_t size)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "%s=", key);
    const char *at = strstr(text, pat);
    if (at == NULL)
        return false;
    at += strlen(pat);
    snprintf(out, size, "%.*s", (int)strcspn(at, "\n"), at);
    return true;
}

/* Index (1..3) of the node leading `queue`, from list_queues; -1 if unknown. */
static int leader_of(const char *queue, int via)
{
    char out[8192], args[64];
    snprintf(args, sizeof(args), "ctl %d list_queues -q name leader", via);
    if (rabbit(args, out, sizeof(out)) != 0)
        return -1;
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        size_t len = strlen(queue);
        if (strncmp(line, queue, len) != 0 || (line[len] != ' ' && line[len] != '\t'))
            continue;
        /* taskd<port>n<i>@localhost: the digits before '@', after an 'n' */
        char *at = strchr(line + len, '@');
        if (at == NULL)
            return -1;
        char *p = at;
        while (p > line && isdigit((unsigned char)p[-1]))
            p--;
        return p > line && p[-1] == 'n' && p < at ? atoi(p) : -1;
    }
    return -1;
}

/* itest_now() of the worker's second broker_connected (its reconnect), from the log's wall
 * clock timestamps; `fallback` if there is none. */
static double reconnected_at(const char *path, double fallback)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int n = 0;
    double at = fallback;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, "event=broker_connected") == NULL || ++n != 2)
            continue;
        double wall;
        char ts[40];
        if (sscanf(line, "ts=%39s", ts) == 1 && task__iso8601_parse(ts, &wall) == 0)
            at = itest_now() - (task__now_wall() - wall);
    }
    if (f != NULL)
        fclose(f);
    return at;
}

static void leader_kill_mid_run_loses_nothing(void **state)
{
    (void)state;
    char q[64], qargs[128], setting[200], opt[160];
    snprintf(q, sizeof(q), "t_fault_quorum_%d", (int)getpid());
    snprintf(qargs, sizeof(qargs), "%s x-queue-type=quorum", q);
    /* taskd's own dead queue too: a classic queue is lost with its node */
    snprintf(setting, sizeof(setting), "TASKD_QUEUES_ARGUMENTS=%s,taskd.dead x-queue-type=quorum",
             qargs);
    snprintf(opt, sizeof(opt), "queues.arguments=%s", qargs);
    const char *env[] = {setting, NULL};
    const char *args[] = {"-c", "2", NULL};
    struct itest_worker w;
    assert_int_equal(itest_worker_start(&w, q, env, args), 0);
    const char *settings[] = {"client.send_timeout=60", opt, NULL};
    task_client *c = itest_client(q, settings);
    assert_non_null(c);

    double t0 = itest_now(), wall0 = (double)time(NULL), t_kill = 0;
    int leader = -1;
    for (long i = 0; i < N; i++) {
        fault_send_add(c, PREFIX, i, 0);
        if (i != KILL_AT)
            continue;
        leader = leader_of(q, 2);
        assert_true(leader >= 1 && leader <= 3);
        char kill_args[32];
        snprintf(kill_args, sizeof(kill_args), "kill-node %d", leader);
        t_kill = itest_now();
        assert_int_equal(rabbit(kill_args, NULL, 0), 0);
    }
    double send_s = itest_now() - t0;
    static unsigned char seen[N];
    struct want wt = {.prefix = PREFIX, .n = N, .seen = seen};
    int found = fault_collect(wall0, &wt, itest_now() + 180);
    double recovered = reconnected_at(w.log, t_kill);
    int lost = N - found;
    int new_leader = leader_of(q, leader == 1 ? 2 : 1);
    int connects = itest_file_count(w.log, "event=broker_connected");
    printf("quorum leader kill: leader=n%d new_leader=n%d sent=%d results=%d lost=%d "
           "duplicates=%d worker_connects=%d send_s=%.2f recover_s=%.2f total_s=%.2f\n",
           leader, new_leader, N, found, lost, wt.dups, connects, send_s, recovered - t_kill,
           itest_now() - t0);
    if (lost > 0)
        printf("first lost: %d\n", fault_first_lost(&wt));
    assert_int_equal(lost, 0);
    assert_true(new_leader >= 1 && new_leader != leader);
    assert_true(itest_worker_alive(&w)); /* it reconnected instead of dying */
    assert_true(connects >= 2);
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&w, SIGTERM, 30), 0);
}

static int setup(void **state)
{
    (void)state;
    const char *src = getenv("TASKD_SOURCE_ROOT");
    if (src == NULL)
        return -1;
    snprintf(rmq, sizeof(rmq), "%s/tests/harness/rmq-node", src);
    snprintf(dir, sizeof(dir), "/tmp/taskd-qq.XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    char out[8192], url[1024];
    char start[128];
    snprintf(start, sizeof(start), "start --nodes 3 --base-port auto --dir %s", dir);
    if (rabbit(start, out, sizeof(out)) != 0 ||
        !value_of(out, "TASKD_BROKER_URL", url, sizeof(url))) {
        fprintf(stderr, "3-node cluster did not start; see %s.err\n", dir);
        return -1;
    }
    /* printf %q quoting of a plain URL list is the list itself */
    setenv("TASKD_BROKER_URL", url, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = rabbit("stop", NULL, 0);
    rmdir(dir);
    char err[96];
    snprintf(err, sizeof(err), "%s.err", dir);
    if (rc == 0)
        unlink(err);
    return rc == 0 ? 0 : -1;
}

int main(void)
{
    itest_broker(); /* skip (or fail) like the others when there is no broker harness */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(leader_kill_mid_run_loses_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
