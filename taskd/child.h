/* child.h - the pool child's entry point (runs after fork(), never returns). */
#ifndef TASKD_CHILD_H
#define TASKD_CHILD_H

#define CHILD_EXIT_FATAL 2 /* setup failed: the supervisor must not respawn in a loop */

/* Run tasks from `fd` on `nthreads` threads; close the listed inherited fds first. */
void child_main(int fd, int nthreads, const int *close_fds, int nclose)
    __attribute__((noreturn));

#endif
