/* topology.c - see topology.h. */
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "strlist.h"
#include "topology.h"

#define MAX_ARGS 16
#define WS " \t"

int task__topo_init(struct task__topo *t, const task_config *cfg)
{
    memset(t, 0, sizeof(*t));
    if (task__strlist_append(&t->args, &cfg->queue_arguments) != 0 ||
        task__strlist_append(&t->routes, &cfg->queue_routes) != 0) {
        task__topo_free(t);
        return TASK_ENOMEM;
    }
    /* A route's queue is returned as the rest of its entry: no trailing blanks there. */
    for (int i = 0; i < t->routes.n; i++) {
        char *s = t->routes.v[i];
        size_t n = strlen(s);
        while (n > 0 && strchr(WS, s[n - 1]) != NULL)
            s[--n] = '\0';
    }
    return 0;
}

void task__topo_free(struct task__topo *t)
{
    task__strlist_free(&t->args);
    task__strlist_free(&t->routes);
    task__strlist_free(&t->declared);
}

void task__topo_forget(struct task__topo *t)
{
    task__strlist_free(&t->declared);
}

/* The first word of `s` into buf; returns what follows it, or NULL if it does not fit. */
static const char *word(const char *s, char *buf, size_t size)
{
    s += strspn(s, WS);
    size_t n = strcspn(s, WS);
    if (n >= size)
        return NULL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return s + n;
}

const char *task__topo_route(const struct task__topo *t, const char *task, const char *dflt)
{
    char glob[256];
    for (int i = 0; task != NULL && i < t->routes.n; i++) {
        const char *rest = word(t->routes.v[i], glob, sizeof(glob));
        if (rest != NULL && fnmatch(glob, task, 0) == 0)
            return rest + strspn(rest, WS);
    }
    return dflt;
}

static amqp_field_value_t typed(char *v)
{
    amqp_field_value_t f;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*v != '\0' && *end == '\0' && errno == 0) {
        if (n >= INT32_MIN && n <= INT32_MAX) {
            f.kind = AMQP_FIELD_KIND_I32;
            f.value.i32 = (int32_t)n;
        } else {
            f.kind = AMQP_FIELD_KIND_I64;
            f.value.i64 = n;
        }
    } else if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0) {
        f.kind = AMQP_FIELD_KIND_BOOLEAN;
        f.value.boolean = v[0] == 't';
    } else {
        f.kind = AMQP_FIELD_KIND_UTF8;
        f.value.bytes = amqp_cstring_bytes(v);
    }
    return f;
}

/* Splits the arguments of every entry for `queue` (in `copy`, modified) into e[]. */
static int collect(const struct task__topo *t, const char *queue, char **copies,
                   amqp_table_entry_t *e)
{
    int n = 0;
    char name[256];
    for (int i = 0; i < t->args.n; i++) {
        const char *rest = word(t->args.v[i], name, sizeof(name));
        if (rest == NULL || strcmp(name, queue) != 0)
            continue;
        char *save = NULL;
        copies[i] = task__strdup(rest);
        for (char *kv = copies[i] ? strtok_r(copies[i], WS, &save) : NULL; kv && n < MAX_ARGS;
             kv = strtok_r(NULL, WS, &save)) {
            char *eq = strchr(kv, '=');
            if (eq == NULL)
                continue; /* refused when the config was loaded */
            *eq = '\0';
            e[n].key = amqp_cstring_bytes(kv);
            e[n++].value = typed(eq + 1);
        }
    }
    return n;
}

bool task__topo_has_arg(const struct task__topo *t, const char *queue, const char *key)
{
    char name[256], kv[512];
    size_t k = strlen(key);
    for (int i = 0; i < t->args.n; i++) {
        const char *rest = word(t->args.v[i], name, sizeof(name));
        if (rest == NULL || strcmp(name, queue) != 0)
            continue;
        while ((rest = word(rest, kv, sizeof(kv))) != NULL && kv[0] != '\0')
            if (strncmp(kv, key, k) == 0 && kv[k] == '=')
                return true;
    }
    return false;
}

bool task__topo_declared(const struct task__topo *t, const char *queue)
{
    for (int i = 0; i < t->declared.n; i++)
        if (strcmp(t->declared.v[i], queue) == 0)
            return true;
    return false;
}

int task__topo_note_declared(struct task__topo *t, const char *queue)
{
    if (task__topo_declared(t, queue))
        return 0;
    task_strlist one = {.v = (char **)&queue, .n = 1};
    return task__strlist_append(&t->declared, &one);
}

/* How: 0 task queue, waiting; 1 plain queue, waiting; 2 task queue, sent without waiting;
 * 3 task queue, asked (task__conn_ask); 4 plain queue, asked. */
static int declare(struct task__topo *t, struct task__conn *c, uint16_t ch, const char *queue,
                   int how)
{
    /* Sent without waiting, it always goes: its caller counts the -oks to come. */
    if (how != 2 && task__topo_declared(t, queue))
        return 0;
    amqp_table_entry_t e[MAX_ARGS];
    char **copies = calloc((size_t)t->args.n + 1, sizeof(*copies));
    if (copies == NULL)
        return TASK_ENOMEM;
    int n = collect(t, queue, copies, e);
    amqp_table_t args = {.num_entries = n, .entries = e};
    int rc = how == 0   ? task__conn_declare_task_queue(c, ch, queue, args)
             : how == 1 ? task__conn_declare_queue(c, ch, queue, true, false, false, args)
             : how == 2 ? task__conn_send_task_queue(c, ch, queue, args)
                        : task__conn_ask_queue(c, ch, queue, how == 3, args);
    for (int i = 0; i < t->args.n; i++)
        free(copies[i]);
    free(copies);
    if (rc != 0 || how == 2)
        return rc; /* noted when its replies are in (task__topo_note_declared) */
    return task__topo_note_declared(t, queue);
}

int task__topo_declare(struct task__topo *t, struct task__conn *c, uint16_t ch, const char *queue)
{
    return declare(t, c, ch, queue, 0);
}

int task__topo_declare_plain(struct task__topo *t, struct task__conn *c, uint16_t ch,
                             const char *queue)
{
    return declare(t, c, ch, queue, 1);
}

int task__topo_send_declare(struct task__topo *t, struct task__conn *c, uint16_t ch,
                            const char *queue)
{
    return declare(t, c, ch, queue, 2);
}

int task__topo_ask_declare(struct task__topo *t, struct task__conn *c, uint16_t ch,
                           const char *queue, bool plain)
{
    return declare(t, c, ch, queue, plain ? 4 : 3);
}

static int bad(char *why, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(char *why, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
    return -1;
}

static int check_arguments(const char *item, char *why, size_t size)
{
    char name[256], kv[512];
    const char *rest = word(item, name, sizeof(name));
    if (rest == NULL || name[0] == '\0')
        return bad(why, size, "\"%s\": expected \"QUEUE KEY=VALUE ...\"", item);
    /* Celery declares its default queue with no arguments; any here would make stock Celery
     * clients fail with 406 PRECONDITION_FAILED. */
    if (strcmp(name, "celery") == 0)
        return bad(why, size, "%s: the default queue takes no arguments (stock Celery clients "
                              "declare it without any and would get 406)", name);
    int n = 0;
    while ((rest = word(rest, kv, sizeof(kv))) != NULL && kv[0] != '\0') {
        const char *eq = strchr(kv, '=');
        if (eq == NULL || eq == kv || eq[1] == '\0')
            return bad(why, size, "\"%s\": expected KEY=VALUE", kv);
        n++;
    }
    if (rest == NULL)
        return bad(why, size, "\"%s\": an argument is too long", item);
    if (n == 0 || n > MAX_ARGS)
        return bad(why, size, "\"%s\": expected 1 to 16 KEY=VALUE arguments after the queue",
                   item);
    return 0;
}

static int check_route(const char *item, char *why, size_t size)
{
    char glob[256], queue[256], extra[8];
    const char *rest = word(item, glob, sizeof(glob));
    if (rest != NULL)
        rest = word(rest, queue, sizeof(queue));
    if (rest == NULL || glob[0] == '\0' || queue[0] == '\0' ||
        word(rest, extra, sizeof(extra)) == NULL || extra[0] != '\0')
        return bad(why, size, "\"%s\": expected \"TASK-GLOB QUEUE\"", item);
    return 0;
}

int task__topo_check(const char *path, const char *item, char *why, size_t size)
{
    if (strcmp(path, "queues.arguments") == 0)
        return check_arguments(item, why, size);
    if (strcmp(path, "queues.routes") == 0)
        return check_route(item, why, size);
    return 0;
}
