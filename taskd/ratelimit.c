/*
 * ratelimit.c - per-task rate limits ("10/s", "100/m", "5/h"), as Celery applies them: a token
 * bucket per task name in each worker (so the limit is per worker, not global), holding one
 * token, refilled at the rate. A task without a token waits in the supervisor (its message stays
 * unacked, like a prefetched one) and is dispatched when its token is due. Limits come from
 * TASK(.rate_limit) and can be changed at run time with the pidbox `rate_limit` command.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "log.h"
#include "ratelimit.h"
#include "worker.h"

struct bucket {
    char name[200];
    double rate;            /* tokens per second; 0: no limit */
    double tokens;
    double last;            /* task__now_mono() of the last refill */
    char text[40];          /* the limit as set ("10/s"), for inspect registered; "": none */
    bool tl_set;            /* time limits set at run time (pidbox time_limit) */
    double soft, hard;      /* those limits; 0: the worker's default */
};

/* "10/s" -> 10.0; "100/m" -> 1.67; "" or "0" -> 0 (no limit); -1 for nonsense. */
double rate_parse(const char *text)
{
    if (text == NULL || text[0] == '\0')
        return 0;
    char *end;
    double n = strtod(text, &end);
    /* NaN and infinity are no rates; nothing slower than one a day (a token due in 1e300 s
     * would hold its message, and a prefetch slot, for ever). */
    if (end == text || !(n >= 0 && n <= 1e9))
        return -1;
    double per_s;
    if (*end == '\0')
        per_s = n; /* per second, as Celery reads a bare number */
    else if (end[0] == '/' && end[1] == 's') /* Celery reads the unit's first letter only */
        per_s = n;
    else if (end[0] == '/' && end[1] == 'm')
        per_s = n / 60.0;
    else if (end[0] == '/' && end[1] == 'h')
        per_s = n / 3600.0;
    else
        return -1;
    return per_s == 0 || per_s >= 1.0 / 86400 ? per_s : -1;
}

static struct bucket *bucket_for(struct worker *w, const char *name, bool create)
{
    for (int i = 0; i < w->nbuckets; i++)
        if (strcmp(w->buckets[i].name, name) == 0)
            return &w->buckets[i];
    if (!create)
        return NULL;
    struct bucket *b = realloc(w->buckets, (size_t)(w->nbuckets + 1) * sizeof(*b));
    if (b == NULL)
        return NULL;
    w->buckets = b;
    b = &w->buckets[w->nbuckets++];
    memset(b, 0, sizeof(*b));
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->tokens = 1;
    b->last = task__now_mono();
    const task_def *def = task_registry_find(name);
    b->rate = def && def->rate_limit ? rate_parse(def->rate_limit) : 0;
    if (b->rate > 0)
        snprintf(b->text, sizeof(b->text), "%s", def->rate_limit);
    if (b->rate < 0) {
        log_event(LV_WARN, 0, "rate_limit_invalid", "task=%s rate_limit=%s action=ignored",
                  log_v(name), log_v(def->rate_limit));
        b->rate = 0;
    }
    return b;
}

int rate_set(struct worker *w, const char *name, const char *limit)
{
    double rate = rate_parse(limit);
    struct bucket *b = rate < 0 ? NULL : bucket_for(w, name, true);
    if (b == NULL)
        return -1;
    b->rate = rate;
    snprintf(b->text, sizeof(b->text), "%s", rate > 0 ? limit : "");
    log_event(LV_INFO, 0, "rate_limit_set", "task=%s rate_limit=%s", log_v(name), log_v(limit));
    return 0;
}

/* Seconds until `name` may run (0: now, and the token is taken). */
double rate_take(struct worker *w, const char *name)
{
    struct bucket *b = bucket_for(w, name, true);
    if (b == NULL || b->rate <= 0)
        return 0;
    double now = task__now_mono();
    b->tokens += (now - b->last) * b->rate;
    if (b->tokens > 1)
        b->tokens = 1;
    b->last = now;
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return 0;
    }
    return (1 - b->tokens) / b->rate;
}

void rate_wait(struct worker *w, struct job *job, double delay_s)
{
    job->rate_due = task__now_mono() + delay_s;
    joblist_push(&w->rate, job);
}

struct job *rate_release(struct worker *w)
{
    if (w->blocked)
        return NULL;
    struct joblist keep = {0};
    struct job *due = NULL, **end = &due;
    struct job *j;
    while ((j = joblist_pop(&w->rate)) != NULL) {
        double wait = task__now_mono() >= j->rate_due ? rate_take(w, j->m.task) : 1;
        if (wait <= 0) {
            *end = j;
            end = &j->next;
            continue;
        }
        if (j->rate_due <= task__now_mono())
            j->rate_due = task__now_mono() + wait;
        joblist_push(&keep, j);
    }
    w->rate = keep;
    return due;
}

int rate_next_ms(const struct worker *w)
{
    double first = 0;
    for (const struct job *j = w->rate.head; j != NULL; j = j->next)
        if (first == 0 || j->rate_due < first)
            first = j->rate_due;
    if (first == 0)
        return -1;
    double ms = (first - task__now_mono()) * 1000;
    return ms <= 0 ? 0 : (int)ms + 1;
}

struct job *rate_take_waiting(struct worker *w, double before)
{
    return joblist_take_before(&w->rate, before);
}

void rate_free(struct worker *w)
{
    free(w->buckets);
    w->buckets = NULL;
    w->nbuckets = 0;
}

const char *rate_limit_text(struct worker *w, const char *name)
{
    struct bucket *b = bucket_for(w, name, true);
    return b != NULL && b->text[0] != '\0' ? b->text : NULL;
}

int time_limit_set(struct worker *w, const char *name, double soft, double hard)
{
    if (!(soft >= 0 && soft <= 1e9) || !(hard >= 0 && hard <= 1e9))
        return TASK_EINVAL; /* also NaN */
    struct bucket *b = bucket_for(w, name, true);
    if (b == NULL)
        return TASK_ENOMEM;
    b->tl_set = true;
    b->soft = soft;
    b->hard = hard;
    log_event(LV_INFO, 0, "time_limit_set", "task=%s soft_s=%g hard_s=%g", log_v(name), soft,
              hard);
    return 0;
}

bool time_limit_get(const struct worker *w, const char *name, double *soft, double *hard)
{
    for (int i = 0; i < w->nbuckets; i++) {
        const struct bucket *b = &w->buckets[i];
        if (b->tl_set && strcmp(b->name, name) == 0) {
            *soft = b->soft;
            *hard = b->hard;
            return true;
        }
    }
    return false;
}
