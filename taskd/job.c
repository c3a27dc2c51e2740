/* job.c - see job.h. */
#include <stdlib.h>
#include "job.h"

struct job *job_new(uint64_t dtag)
{
    struct job *job = calloc(1, sizeof(*job));
    if (job != NULL) {
        job->dtag = dtag;
        job->child = -1;
        job->m.group_index = -1;
    }
    return job;
}

void job_free(struct job *job)
{
    json_object_put(job->stash_reply);
    task__delivery_free(&job->d);
    task__msg_clear(&job->m);
    free(job);
}

void joblist_push(struct joblist *l, struct job *job)
{
    job->next = NULL;
    if (l->tail != NULL)
        l->tail->next = job;
    else
        l->head = job;
    l->tail = job;
    l->n++;
}

void joblist_push_front(struct joblist *l, struct job *job)
{
    job->next = l->head;
    l->head = job;
    if (l->tail == NULL)
        l->tail = job;
    l->n++;
}

struct job *joblist_pop(struct joblist *l)
{
    struct job *job = l->head;
    if (job == NULL)
        return NULL;
    l->head = job->next;
    if (l->head == NULL)
        l->tail = NULL;
    job->next = NULL;
    l->n--;
    return job;
}

struct job *joblist_take_before(struct joblist *l, double before)
{
    struct job *taken = NULL, **end = &taken;
    struct job **pp = &l->head;
    l->tail = NULL;
    while (*pp != NULL) {
        struct job *j = *pp;
        if (j->d.received >= before) {
            l->tail = j;
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        j->next = NULL;
        *end = j;
        end = &j->next;
        l->n--;
    }
    return taken;
}

void job_free_chain(struct job *chain)
{
    while (chain != NULL) {
        struct job *next = chain->next;
        job_free(chain);
        chain = next;
    }
}
