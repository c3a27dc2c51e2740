/*
 * config_opts.h - the one table of configuration options. The file loader, the TASKD_*
 * environment mapping, flags, and the docs test (every option documented in config/taskd.conf)
 * all read it. Adding an option: a field in task_config, a row here, a paragraph in
 * config/taskd.conf (the docs test fails until all three agree).
 */
#ifndef TASK_CONFIG_OPTS_H
#define TASK_CONFIG_OPTS_H

#include <stdbool.h>
#include <stddef.h>

enum task__opt_type { OPT_INT, OPT_SECONDS, OPT_BOOL, OPT_STRING, OPT_STRLIST };

struct task__opt {
    const char *path;          /* "section.name" */
    enum task__opt_type type;
    size_t off;                /* offsetof(task_config, field) */
    const char *def;           /* default, as text (parsed like a flag) */
    double min, max;           /* OPT_INT / OPT_SECONDS */
    const char *const *choices;/* OPT_STRING limited to these (NULL-terminated); NULL: any */
    bool reload;               /* may change on SIGHUP */
    const char *env;           /* environment variable; NULL: TASKD_<SECTION>_<NAME> */
    const char *doc;
    /* OPT_STRING: more checks of a non-empty value; 0, or -1 with a reason in why. NULL: none. */
    int (*check)(const char *value, char *why, size_t size);
};

const struct task__opt *task__config_opts(size_t *n);
const struct task__opt *task__config_opt_find(const char *path);
/* The environment variable of `o` into buf. */
void task__config_opt_env(const struct task__opt *o, char *buf, size_t size);
struct task_config;
struct task__tls_opts;
/* The broker.ssl_* and broker.login_method options of cfg (borrowed: cfg must outlive o). */
void task__tls_from_config(const struct task_config *cfg, struct task__tls_opts *o);
struct task_strlist;
struct task_error;
/* Puts the password from `password_file` (NULL or "": nothing to do) into every URL of `urls`
 * (task_config_resolve() on a list; the client applies it to its own copy). */
int task__urls_resolve(struct task_strlist *urls, const char *password_file,
                       struct task_error *err);

struct task_config;
/*
 * task__config_reload - move every reloadable option that differs from `next` into `cur`
 * (SIGHUP). Options that cannot change at run time keep their value in `cur`, and `kept` is
 * called with each such path. Returns how many options changed. `next` is left with the old
 * values; the caller frees it.
 */
int task__config_reload(struct task_config *cur, struct task_config *next,
                        void (*kept)(const char *path, void *ud), void *ud);

#endif
