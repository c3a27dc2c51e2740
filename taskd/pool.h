/*
 * pool.h - the supervisor's side of the process pool: children, slots, the backlog, time
 * limits. It reports what happens to jobs through its hooks (struct pool_hooks, worker.h) and
 * decides nothing about outcomes.
 */
#ifndef TASKD_POOL_H
#define TASKD_POOL_H

#include "worker.h"

int pool_start(struct worker *w);
void pool_submit(struct worker *w, struct job *job);
/* Hand waiting jobs to free slots (after a child reports, or the broker unblocks us). */
void pool_drain_backlog(struct worker *w);
void pool_on_readable(struct worker *w, int i);
/* The child's socket takes more: write what waits for it. */
void pool_on_writable(struct worker *w, int i);
void pool_reap(struct worker *w);
void pool_check_limits(struct worker *w);
int pool_next_deadline_ms(const struct worker *w);
bool pool_idle(const struct worker *w);
/* Pool children alive now. */
int pool_live(const struct worker *w);
int pool_running(const struct worker *w);
/* Warm: children finish their jobs and exit. Cold: SIGKILL. */
void pool_stop(struct worker *w, bool cold);
bool pool_all_exited(const struct worker *w);
/* A revoke of task `id` that is running: --terminate kills its child (it ends REVOKED, its
 * neighbours are requeued); without, its child is asked to cancel it (task_cancelled()). */
void pool_revoke(struct worker *w, const char *id, bool terminate);
/* Forget the jobs of a lost connection (running ones become orphans). */
void pool_drop_jobs(struct worker *w);
/* Unlink the backlog's jobs received before `before` (task__now_mono(); INFINITY: all) and
 * return them as a chain; the caller owns them. */
struct job *pool_take_backlog(struct worker *w, double before);
/* pidbox pool_grow / pool_shrink: fork `k` more children (up to POOL_GROW_MAX beyond the
 * configured size) or retire `k` (after their running tasks; one always stays). The number
 * added or removed, or TASK_EINVAL (k < 1, stopping). */
int pool_grow(struct worker *w, int k);
int pool_shrink(struct worker *w, int k);
/* pidbox pool_restart: every child finishes its tasks, exits and is replaced by a fresh fork.
 * The number of children recycled, or TASK_EINVAL (stopping). */
int pool_restart(struct worker *w);

#endif
