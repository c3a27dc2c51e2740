/* strlist.h - owned lists of strings (task_strlist): the config's list options and the topology
 * built from them. */
#ifndef TASK_STRLIST_H
#define TASK_STRLIST_H

#include <stddef.h>
#include <task/config.h>

/* Append a copy of s[0..len). 0 or TASK_ENOMEM (the list is unchanged). */
int task__strlist_add(task_strlist *l, const char *s, size_t len);
/* Append copies of src's items to dst. 0 or TASK_ENOMEM. */
int task__strlist_append(task_strlist *dst, const task_strlist *src);
/* Free the items and the array; the list is empty again. */
void task__strlist_free(task_strlist *l);

#endif
