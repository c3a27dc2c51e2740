/*
 * replies.h - the states a client has received, by task id: a chained hash table, because a
 * producer may send thousands of tasks before it waits for any of them. Replies nobody waits
 * for must not grow a long-lived client without end, so the table is bounded: past `max`
 * entries the one whose last state came longest ago is dropped (taskd's revoked set uses the
 * same table, bounded the same way).
 */
#ifndef TASK_REPLIES_H
#define TASK_REPLIES_H

#include <task/client.h>

struct task__reply {
    struct task__reply *next;
    struct task__reply *older, *newer; /* by the time of the last state put */
    char *id;
    task_state state;
    char *status;           /* the state's name as sent (custom states keep theirs) */
    json_object *result;    /* owned */
    unsigned version;       /* bumped on every state message, so waiters see repeats */
};

struct task__replies {
    struct task__reply **buckets;
    size_t nbuckets, count;
    struct task__reply *oldest, *newest;
    size_t max;             /* entries kept; task__replies_init() sets TASK__REPLIES_MAX */
    uint64_t evicted;       /* entries dropped to stay within max */
};

/* The default bound: a client's replies nobody waited for yet (task/client.h). */
#define TASK__REPLIES_MAX 65536

int task__replies_init(struct task__replies *r);
void task__replies_free(struct task__replies *r);
struct task__reply *task__replies_find(struct task__replies *r, const char *id);
/* Record a state for id; `result` is taken over (new reference). Later states replace earlier
 * ones, except that a final state is never replaced by a non-final one (replies can race).
 * The entry becomes the newest; when a new one makes count exceed max, the oldest is dropped
 * (pointers from task__replies_find() are valid only until the next put). */
int task__replies_put(struct task__replies *r, const char *id, const char *status,
                      json_object *result);
void task__replies_remove(struct task__replies *r, const char *id);

#endif
