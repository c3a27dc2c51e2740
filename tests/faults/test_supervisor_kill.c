/*
 * test_supervisor_kill.c - fault (a) of issue 7: kill -9 the taskd supervisor (the process that
 * owns the AMQP connection) in the middle of a run of 10k test.add tasks, then start taskd again.
 * Its pool children must not outlive it (they arm PR_SET_PDEATHSIG), the broker gives the
 * unacked deliveries back, and every task sent ends with a SUCCESS record in the results stream:
 * 0 lost. A task may run twice (acks late = at-least-once): those are counted, not refused.
 * Prints sent / results / lost / duplicates / time to recover.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <task/client.h>
#include "faultlib.h"
#include "../integration/itest.h"

enum { N = 10000, KILL_AT = 4000, MAX_CHILDREN = 16 };
#define PREFIX "fbbbbbbb-0000-4000-8000-"

/* How many of `pids` still run after `timeout_s` (the survivors are then killed). */
static int survivors_after(const pid_t *pids, int n, double timeout_s)
{
    double deadline = itest_now() + timeout_s;
    int alive = n;
    while (alive > 0 && itest_now() < deadline) {
        usleep(10000);
        alive = 0;
        for (int i = 0; i < n; i++)
            alive += fault_pid_alive(pids[i]);
    }
    for (int i = 0; i < n && alive > 0; i++)
        if (fault_pid_alive(pids[i])) {
            printf("pool child %d survived its supervisor\n", (int)pids[i]);
            kill(pids[i], SIGKILL);
        }
    return alive;
}

/* kill -9 the supervisor, check its children go too, start a new taskd on the same queue.
 * Returns the seconds from the kill to the new worker's worker_ready. */
static double kill_and_restart(struct itest_worker *wk, const char *q, const char *const *args)
{
    pid_t kids[MAX_CHILDREN];
    int nkids = fault_children(wk->pid, kids, MAX_CHILDREN);
    assert_int_equal(nkids, 2); /* -c 2 */
    double t_kill = itest_now();
    assert_int_equal(itest_worker_stop(wk, SIGKILL, 10), 128 + SIGKILL);
    int survivors = survivors_after(kids, nkids, 5);
    double children_gone_s = itest_now() - t_kill;
    char old_log[300];
    snprintf(old_log, sizeof(old_log), "%s.killed", wk->log);
    rename(wk->log, old_log); /* the new worker writes the same log name */
    assert_int_equal(itest_worker_start(wk, q, NULL, args), 0);
    double recover_s = itest_now() - t_kill;
    printf("supervisor kill: children=%d survivors=%d children_gone_s=%.3f\n", nkids, survivors,
           children_gone_s);
    assert_int_equal(survivors, 0);
    return recover_s;
}

static void supervisor_kill_mid_run_loses_nothing(void **state)
{
    (void)state;
    char q[64];
    snprintf(q, sizeof(q), "t_fault_supkill_%d", (int)getpid());
    const char *args[] = {"-c", "2", NULL};
    assert_int_equal(itest_worker_start(&fault_worker, q, NULL, args), 0);
    pid_t first_pid = fault_worker.pid;
    task_client *c = fault_client(q);
    double t0 = itest_now(), wall0 = (double)time(NULL);
    double recover_s = 0;
    for (long i = 0; i < N; i++) {
        fault_send_add(c, PREFIX, i, 0);
        if (i == KILL_AT)
            recover_s = kill_and_restart(&fault_worker, q, args);
    }
    double sent_s = itest_now() - t0;
    assert_true(fault_worker.pid != first_pid);
    static unsigned char seen[N];
    struct want wt = {.prefix = PREFIX, .n = N, .seen = seen};
    int found = fault_collect(wall0, &wt, itest_now() + 180);
    int lost = N - found;
    printf("supervisor kill: sent=%d results=%d lost=%d duplicates=%d recover_s=%.2f "
           "send_s=%.2f total_s=%.2f\n",
           N, found, lost, wt.dups, recover_s, sent_s, itest_now() - t0);
    if (lost > 0)
        printf("first lost: %d\n", fault_first_lost(&wt));
    assert_int_equal(lost, 0);
    assert_true(itest_worker_alive(&fault_worker));
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&fault_worker, SIGTERM, 30), 0);
}

int main(void)
{
    itest_broker();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(supervisor_kill_mid_run_loses_nothing, fault_stop_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
