/* child.h - the pool child's entry point (runs after fork(), never returns). */
#ifndef TASKD_CHILD_H
#define TASKD_CHILD_H

#define CHILD_EXIT_FATAL 2 /* setup failed: the supervisor must not respawn in a loop */

#include <stdint.h>

/* Run tasks from `fd` on `nthreads` threads; close the listed inherited fds first. `crash_jid`
 * (shared with the supervisor) gets the job id of a task whose thread crashes (SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL, SIGABRT), so only that task is blamed and its neighbours are requeued.
 * `cancel_jid` (shared, written by the supervisor before it sends SIGUSR1) names the job a
 * one-thread child must cancel: its main thread runs the task and reads no frames meanwhile. */
void child_main(int fd, int nthreads, const int *close_fds, int nclose, int64_t *crash_jid,
                int64_t *cancel_jid) __attribute__((noreturn));

#endif
