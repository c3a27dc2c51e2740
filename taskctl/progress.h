/*
 * progress.h - the live status line of taskctl wait/call on a terminal: STARTED, RETRY and
 * PROGRESS states rewrite one line in place (\r), "PROGRESS 3/10 [#####.....] 30%" when the
 * meta has a numeric current and total, the meta JSON otherwise. Cut to the terminal's width so
 * that it never wraps (a wrapped line cannot be rewritten with \r).
 */
#ifndef TASKCTL_PROGRESS_H
#define TASKCTL_PROGRESS_H

#include <stdbool.h>
#include <task/client.h>

/* True when the line should be shown: stdout is a terminal and --json is off. */
bool progress_wanted(bool json);

/* A task_state_cb drawing the line on stdout (userdata unused). */
void progress_show(const char *id, task_state st, const char *name, json_object *meta, void *ud);

/* Erase the line (before the result is printed). */
void progress_clear(void);

#endif
