/* orphan.c - see orphan.h. */
#include <string.h>
#include "log.h"
#include "orphan.h"

void orphan_keep(struct worker *w, struct job *job, int why, json_object *reply)
{
    log_event(LV_WARN, 0, "task_outcome_orphaned", "task=%s task_id=%s reason=\"its connection "
              "broke while it ran\" action=\"kept %.0f s for its redelivery\"",
              log_v(job->m.task), log_v(job->m.id), ORPHAN_KEEP_S);
    json_object_put(job->stash_reply);
    job->stash = why;
    job->stash_reply = reply;
    job->orphan_until = task__now_mono() + ORPHAN_KEEP_S;
    job->next = w->orphans;
    w->orphans = job;
    if (++w->norphans <= ORPHAN_KEEP_MAX)
        return;
    /* Too many: the oldest (last) goes; its redelivery runs again, as without this. */
    struct job **pp = &w->orphans;
    while ((*pp)->next != NULL)
        pp = &(*pp)->next;
    job_free(*pp);
    *pp = NULL;
    w->norphans--;
}

static void take_delivery(struct worker *w, struct job *job, struct task__delivery *d)
{
    task__delivery_free(&job->d);
    job->d = *d;
    memset(d, 0, sizeof(*d));
    job->dtag = job->d.tag;
    job->orphan = false;
    w->inflight++;
}

static struct job *running_orphan(struct worker *w, const char *id)
{
    for (int i = 0; i < w->pool.n; i++)
        for (struct job *j = w->pool.ch[i].running; j != NULL; j = j->next)
            if (j->orphan && j->m.id != NULL && strcmp(j->m.id, id) == 0)
                return j;
    return NULL;
}

static struct job *ended_orphan(struct worker *w, const char *id)
{
    for (struct job **pp = &w->orphans; *pp != NULL; pp = &(*pp)->next) {
        struct job *j = *pp;
        if (j->m.id != NULL && strcmp(j->m.id, id) == 0) {
            *pp = j->next;
            j->next = NULL;
            w->norphans--;
            return j;
        }
    }
    return NULL;
}

bool orphan_adopt(struct worker *w, struct task__delivery *d, const char *id,
                  struct job **ended)
{
    *ended = NULL;
    struct job *j = running_orphan(w, id);
    if (j != NULL) {
        take_delivery(w, j, d);
        log_event(LV_INFO, 0, "task_adopted", "task_id=%s state=running detail=\"its redelivery "
                  "joins the run that is still going\"", log_v(id));
        return true;
    }
    j = ended_orphan(w, id);
    if (j == NULL)
        return false;
    take_delivery(w, j, d);
    log_event(LV_INFO, 0, "task_adopted", "task_id=%s state=ended detail=\"its redelivery gets "
              "the outcome of the run that ended\"", log_v(id));
    *ended = j;
    return true;
}

struct job *orphan_take_expired(struct worker *w)
{
    double now = task__now_mono();
    struct job *taken = NULL, **end = &taken;
    for (struct job **pp = &w->orphans; *pp != NULL;) {
        struct job *j = *pp;
        if (j->orphan_until > now) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        j->next = NULL;
        w->norphans--;
        *end = j;
        end = &j->next;
    }
    return taken;
}

void orphan_free(struct worker *w)
{
    while (w->orphans != NULL) {
        struct job *j = w->orphans;
        w->orphans = j->next;
        job_free(j);
    }
    w->norphans = 0;
}
