/* canvas_sig.h - reading the canvas JSON a worker gets from outside, with no broker involved:
 * a signature (link, link_error, chain step, chord callback; Celery's dict form) and a chord
 * barrier part. Both come from any client that can publish a task, so every field is
 * type-checked; anything else is refused with a reason, never dereferenced. */
#ifndef TASKD_CANVAS_SIG_H
#define TASKD_CANVAS_SIG_H

#include <json-c/json.h>

/* A signature read for sending: strings are borrowed from the signature. */
struct canvas_call {
    const char *name;     /* the task */
    json_object *args;    /* new reference: `first` (unless immutable), then the signature's */
    json_object *kwargs;  /* borrowed; NULL: {} */
    const char *task_id;  /* options.task_id; NULL: make one */
    const char *queue;    /* options.queue; NULL: route it */
    const char *reply_to; /* options.reply_to; NULL: the parent's */
    double eta;           /* Unix seconds from options.countdown or options.eta; 0: now */
    double expires;       /* Unix seconds from options.expires; 0: never */
    json_object *link;    /* new reference: options.link as a list, or NULL */
    json_object *link_error; /* new reference: options.link_error as a list, or NULL */
    /* A chord header member that is a chain: Celery puts the chord on the chain's last step
     * (options.chord, group_id, group_index), and that step counts in the barrier. */
    json_object *chord;   /* borrowed: options.chord when an object, else NULL */
    const char *group_id; /* options.group_id; NULL: none */
    int group_index;      /* options.group_index; -1: none */
};

/* Read signature `sig` with `first` (borrowed, may be NULL) to prepend to its args, as of `now`
 * (Unix seconds, for a countdown). 0 and *out (release with canvas_call_clear()), or -1 with
 * *why (a static string) for a signature that can never run: not an object, no task name, a
 * nested canvas (subtask_type), an id, queue or reply_to longer than AMQP's 255 bytes, an eta or
 * expires that is not a number or an ISO 8601 time. */
int canvas_sig_read(json_object *sig, json_object *first, double now, struct canvas_call *out,
                    const char **why);
void canvas_call_clear(struct canvas_call *c);

/* The string option `key` of `sig` (options.<key>), or NULL. */
const char *canvas_opt_str(json_object *sig, const char *key);

/* The header position of chord part `part` (an object with an integer "i" in 0..size-1), or -1
 * when it has none (a junk part is dropped like a duplicate). */
int chord_part_index(json_object *part, int size);

#endif
