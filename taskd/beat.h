/*
 * beat.h - periodic tasks: the scheduler run by `taskd --beat` (in a process forked from the
 * worker, as `celery worker -B`) and `taskd --beat-only` (alone).
 *
 * Any number of instances may run; the broker elects one leader (beat_leader.h), which alone
 * sends ticks: ordinary Celery v2 task messages sent through libtask's client, each under a
 * deterministic id (beat_entry.h), and records each entry's last tick in the broker
 * (beat_store.h) after the broker confirmed the task. On takeover or restart the leader reads
 * those records, so a tick is neither sent twice by two instances nor forgotten: ticks due
 * since then are sent late when at most the entry's grace late, and older ones follow the
 * entry's `missed` policy (the newest once, or none).
 *
 * Fencing: a leader sends only while the last word it had from the broker is younger than half
 * of broker.heartbeat; the broker declares a silent connection dead (and hands the token on)
 * only after a whole heartbeat, so an instance cut off from the broker stops before another
 * can start. Time zones: a cron entry's zone is set with TZ in the beat's own process, which
 * runs nothing else (beat_cron.h).
 */
#ifndef TASKD_BEAT_H
#define TASKD_BEAT_H

#include <sys/types.h>
#include <task/config.h>

/* Builds a fresh config (files, environment, flags), as for the worker's SIGHUP. */
typedef task_config *(*beat_reload_fn)(void *ud, task_error *err);

struct beat_opts {
    task_config *cfg;           /* owned by the caller, used (and changed) by the beat */
    const char *const *paths;   /* config files holding the `beat` section, in order */
    beat_reload_fn reload;
    void *reload_ud;
};

/* Check the schedule in the config files: 0, or -1 after printing the error on stderr. */
int beat_check(const char *const *paths);

/* Run the scheduler until SIGTERM or SIGINT. SIGHUP reloads the entries. Returns 0, or 2 for a
 * schedule that cannot be used at start. */
int beat_run(const struct beat_opts *o);

/* Fork a child that runs beat_run() (it ends when its parent does). Returns 0 or -errno. */
int beat_fork(const struct beat_opts *o);

/* The worker reaped `pid`: when it is the beat child, log how it ended (it is not forked again:
 * a child forked later would hold the worker's broker socket open). */
void beat_child_reaped(pid_t pid, int status);

/* Pass the worker's signal `sig` on to the beat child, if there is one. */
void beat_child_signal(int sig);

#endif
