/*
 * task/canvas.h - workflows: chain, group and chord, sent the way Celery sends them.
 *
 * A signature is Celery's JSON form of a call: {"task", "args", "kwargs", "options",
 * "subtask_type", "immutable"}. The worker runs the follow-ups (celery-protocol.md 3.3), so the
 * sender may exit once these calls return; results come to this client's reply queue and to the
 * results stream (task_wait(), task_lookup()).
 */
#ifndef TASK_CANVAS_H
#define TASK_CANVAS_H

#include <stdbool.h>
#include <json-c/json.h>
#include <task/client.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * task_sig_new - a signature of task `name` with `args` (array) and `kwargs` (object), both
 * borrowed (a reference is taken; NULL: [] and {}); `queue` (borrowed, NULL: routed as usual).
 * `immutable`: the previous result is not prepended to args. Returns a new reference (release
 * with json_object_put()) or NULL on bad arguments. Since: 0.2.
 */
TASK_API json_object *task_sig_new(const char *name, json_object *args, json_object *kwargs,
                                   const char *queue, bool immutable);

/*
 * task_send_chain - run sigs[0], then each next one with the previous result prepended to its
 * args; a failure stops the chain. `sigs` (n >= 1) are borrowed; `opts` (may be NULL) apply to
 * the first call. *last gets the id of the last step: task_wait() on it gives the chain's
 * result. Returns 0 or a TASK_E* as task_send(). Since: 0.2.
 */
TASK_API int task_send_chain(task_client *c, json_object *const *sigs, int n,
                             const task_send_opts *opts, task_id *last);

/*
 * task_send_group - send every signature at once, all with one group id (*group); ids[i] (n
 * entries, caller's array) gets the id of sigs[i]. Wait for each id to collect the results in
 * order. On an error some members may already be sent (their ids are written). Since: 0.2.
 */
TASK_API int task_send_group(task_client *c, json_object *const *sigs, int n,
                             const task_send_opts *opts, task_id *group, task_id *ids);

/*
 * task_send_chord - a group (`header`, n >= 1 signatures) whose `callback` runs once every
 * member has ended, with the list of their results (in header order) prepended to its args.
 * When a member fails, the callback does not run and ends FAILURE with ChordError naming the
 * member. The barrier is counted in the broker (see README, "Chords"); members must run on
 * taskd workers. *callback_id: wait on it for the chord's result; ids (may be NULL) as
 * task_send_group(). Since: 0.2.
 */
TASK_API int task_send_chord(task_client *c, json_object *const *header, int n,
                             json_object *callback, const task_send_opts *opts,
                             task_id *callback_id, task_id *ids);

#ifdef __cplusplus
}
#endif
#endif
