/* strlist.c - see strlist.h. */
#include <stdlib.h>
#include <string.h>
#include "strlist.h"

void task__strlist_free(task_strlist *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int task__strlist_add(task_strlist *l, const char *s, size_t len)
{
    char *copy = strndup(s, len);
    if (copy == NULL)
        return TASK_ENOMEM;
    char **v = realloc(l->v, (size_t)(l->n + 1) * sizeof(*v));
    if (v == NULL) {
        free(copy);
        return TASK_ENOMEM;
    }
    l->v = v;
    v[l->n++] = copy;
    return 0;
}

int task__strlist_append(task_strlist *dst, const task_strlist *src)
{
    for (int i = 0; i < src->n; i++)
        if (task__strlist_add(dst, src->v[i], strlen(src->v[i])) != 0)
            return TASK_ENOMEM;
    return 0;
}
