/*
 * registry.c - the process-wide task registry: libtask's only global state.
 *
 * It lives in libtask.so alone (not in the static core that taskd also links), so the TASK()
 * constructors of a module that taskd dlopen()s fill the same table taskd reads. Registration
 * happens at load time and is rare; lookups happen per message and take the lock only briefly
 * (a read lock, so pool threads do not contend).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include <task/task.h>

static pthread_rwlock_t reg_lock = PTHREAD_RWLOCK_INITIALIZER;
static const task_def **reg_defs;
static int reg_count, reg_cap;

static const task_def *find_locked(const char *name)
{
    for (int i = 0; i < reg_count; i++) {
        if (strcmp(reg_defs[i]->name, name) == 0)
            return reg_defs[i];
    }
    return NULL;
}

int task_register(const task_def *def)
{
    if (def == NULL || def->name == NULL || def->name[0] == '\0' || def->fn == NULL)
        return TASK_EINVAL;
    int rc = 0;
    pthread_rwlock_wrlock(&reg_lock);
    if (find_locked(def->name) != NULL) {
        rc = TASK_EINVAL;
        goto out;
    }
    if (reg_count == reg_cap) {
        int cap = reg_cap ? reg_cap * 2 : 32;
        const task_def **v = realloc(reg_defs, (size_t)cap * sizeof(*v));
        if (v == NULL) {
            rc = TASK_ENOMEM;
            goto out;
        }
        reg_defs = v;
        reg_cap = cap;
    }
    reg_defs[reg_count++] = def;
out:
    pthread_rwlock_unlock(&reg_lock);
    return rc;
}

const task_def *task_registry_find(const char *name)
{
    if (name == NULL)
        return NULL;
    pthread_rwlock_rdlock(&reg_lock);
    const task_def *d = find_locked(name);
    pthread_rwlock_unlock(&reg_lock);
    return d;
}

int task_registry_count(void)
{
    pthread_rwlock_rdlock(&reg_lock);
    int n = reg_count;
    pthread_rwlock_unlock(&reg_lock);
    return n;
}

const task_def *task_registry_at(int i)
{
    const task_def *d = NULL;
    pthread_rwlock_rdlock(&reg_lock);
    if (i >= 0 && i < reg_count)
        d = reg_defs[i];
    pthread_rwlock_unlock(&reg_lock);
    return d;
}
