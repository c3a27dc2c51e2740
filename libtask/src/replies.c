/* replies.c - see replies.h. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "replies.h"

static size_t hash_id(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return (size_t)(h % n);
}

int task__replies_init(struct task__replies *r)
{
    r->nbuckets = 1024;
    r->count = 0;
    r->oldest = r->newest = NULL;
    r->max = TASK__REPLIES_MAX;
    r->evicted = 0;
    r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
    return r->buckets ? 0 : TASK_ENOMEM;
}

static void reply_free(struct task__reply *e)
{
    free(e->id);
    free(e->status);
    json_object_put(e->result);
    free(e);
}

void task__replies_free(struct task__replies *r)
{
    for (size_t i = 0; r->buckets != NULL && i < r->nbuckets; i++) {
        struct task__reply *e = r->buckets[i];
        while (e != NULL) {
            struct task__reply *next = e->next;
            reply_free(e);
            e = next;
        }
    }
    free(r->buckets);
    memset(r, 0, sizeof(*r));
}

struct task__reply *task__replies_find(struct task__replies *r, const char *id)
{
    for (struct task__reply *e = r->buckets[hash_id(id, r->nbuckets)]; e != NULL; e = e->next) {
        if (strcmp(e->id, id) == 0)
            return e;
    }
    return NULL;
}

static void age_unlink(struct task__replies *r, struct task__reply *e)
{
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        r->oldest = e->newer;
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        r->newest = e->older;
    e->older = e->newer = NULL;
}

static void age_push(struct task__replies *r, struct task__reply *e)
{
    e->newer = NULL;
    e->older = r->newest;
    if (r->newest != NULL)
        r->newest->newer = e;
    else
        r->oldest = e;
    r->newest = e;
}

/* Take e out of its bucket chain and the age list, and free it. */
static void unlink_free(struct task__replies *r, struct task__reply *e)
{
    struct task__reply **pp = &r->buckets[hash_id(e->id, r->nbuckets)];
    while (*pp != NULL && *pp != e)
        pp = &(*pp)->next;
    if (*pp == e)
        *pp = e->next;
    age_unlink(r, e);
    reply_free(e);
    r->count--;
}

static void grow(struct task__replies *r)
{
    size_t n = r->nbuckets * 4;
    struct task__reply **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return; /* keep the old table: slower, still correct */
    for (size_t i = 0; i < r->nbuckets; i++) {
        struct task__reply *e = r->buckets[i];
        while (e != NULL) {
            struct task__reply *next = e->next;
            size_t h = hash_id(e->id, n);
            e->next = b[h];
            b[h] = e;
            e = next;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->nbuckets = n;
}

int task__replies_put(struct task__replies *r, const char *id, const char *status,
                      json_object *result)
{
    task_state st = task_state_from_name(status);
    struct task__reply *e = task__replies_find(r, id);
    if (e != NULL) {
        if (task_state_is_final(e->state) && !task_state_is_final(st)) {
            json_object_put(result);
            return 0;
        }
        char *s = task__strdup(status);
        if (s == NULL) {
            json_object_put(result);
            return TASK_ENOMEM;
        }
        free(e->status);
        json_object_put(e->result);
        e->status = s;
        e->state = st;
        e->result = result;
        e->version++;
        age_unlink(r, e);
        age_push(r, e);
        return 0;
    }
    if (r->count >= r->nbuckets * 2)
        grow(r);
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->id = task__strdup(id)) == NULL ||
        (e->status = task__strdup(status)) == NULL) {
        if (e != NULL)
            free(e->id);
        free(e);
        json_object_put(result);
        return TASK_ENOMEM;
    }
    e->state = st;
    e->result = result;
    size_t h = hash_id(id, r->nbuckets);
    e->next = r->buckets[h];
    r->buckets[h] = e;
    r->count++;
    age_push(r, e);
    while (r->max > 0 && r->count > r->max && r->oldest != e) {
        unlink_free(r, r->oldest);
        r->evicted++;
    }
    return 0;
}

void task__replies_remove(struct task__replies *r, const char *id)
{
    struct task__reply *e = task__replies_find(r, id);
    if (e != NULL)
        unlink_free(r, e);
}
