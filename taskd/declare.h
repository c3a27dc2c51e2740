/*
 * declare.h - queues declared while the worker runs (canvas targets, the delay cascade, queues
 * added by pidbox), on their own channel CH_DECLARE: a refusal closes that channel, not the
 * publish channel, and is answered and the channel reopened at once, so the worker goes on.
 */
#ifndef TASKD_DECLARE_H
#define TASKD_DECLARE_H

#include "worker.h"

/* Declare `queue` as Celery declares task queues, once per connection: a message published to
 * a queue that does not exist yet would be dropped by the broker. 0, TASK_EBROKER (refused:
 * the broker's reason in the conn's error; the channel is open again) or another TASK_E*. */
int declare_queue(struct worker *w, const char *queue);
/* Reopen CH_DECLARE after a refusal (answered). 0 or the connection's error. */
int declare_refused(struct worker *w);

#endif
