/*
 * faultlib.h - what the fault tests share: a client that waits through outages, test.add sends
 * with ids the test can recognise, and collect(), which reads the results stream and counts
 * each id's SUCCESS records (a second record is a duplicate: at-least-once allows it).
 */
#ifndef FAULTLIB_H
#define FAULTLIB_H

#include <stdbool.h>
#include <sys/types.h>
#include <task/client.h>
#include "../integration/itest.h"

/* Ids of a run: a 24-character PREFIX ("xxxxxxxx-0000-4000-8000-") + 12 hex digits of the index. */
struct want {
    const char *prefix;
    int n;
    unsigned char *seen;    /* n counters, zeroed by the caller */
    int dups;
    double not_before;      /* a date_done earlier than this (Unix s) counts as early */
    int early;
};

/* A client on the test broker sending to `queue`, task_send() waiting up to 60 s for it. */
task_client *fault_client(const char *queue);

/* Send test.add(i, i) with the id prefix + i (fails the test if the send fails). */
void fault_send_add(task_client *c, const char *prefix, long i, double countdown_s);

/* Read the results stream from `since` (Unix s) until every wanted id has a SUCCESS whose result
 * is 2 * index (anything else fails the test), or until `deadline` (itest_now() clock).
 * Returns how many distinct ids were found, or -1 if the stream could not be read. */
int fault_collect(double since, struct want *wt, double deadline);

/* The first index not seen, or -1. */
int fault_first_lost(const struct want *wt);

/* The worker a fault test runs. fault_stop_worker(), its cmocka teardown, stops it (SIGKILL)
 * even when an assertion failed. */
extern struct itest_worker fault_worker;
int fault_stop_worker(void **state);

/* Pids of the live (not zombie) processes whose parent is `parent`, up to `max`; the count. */
int fault_children(pid_t parent, pid_t *out, int max);

/* True while `pid` runs (a zombie counts as dead). */
bool fault_pid_alive(pid_t pid);

#endif
