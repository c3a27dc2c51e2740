/*
 * config.c - loads task_config from libconfig files, TASKD_* variables and flags, all through
 * the option table (config_opts.c). Every error is one line naming where the value came from
 * (file:line, the variable, or the flag) and the option.
 */
#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <task/config.h>
#include "config_opts.h"
#include "secret_file.h"
#include "tls.h"
#include "internal.h"
#include "strlist.h"
#include "topology.h"

extern char **environ;

static void *field(task_config *cfg, const struct task__opt *o)
{
    return (char *)cfg + o->off;
}

/* Moves list `l` into the option's field once every item passed the option's own check. */
static int strlist_store(task_config *cfg, const struct task__opt *o, task_strlist *l,
                         const char *where, task_error *err)
{
    char why[400];
    for (int i = 0; i < l->n; i++) {
        if (task__topo_check(o->path, l->v[i], why, sizeof(why)) != 0) {
            task__strlist_free(l);
            return task__fail(err, TASK_ECONFIG, "%s%s: %s", where, o->path, why);
        }
    }
    task_strlist *dst = field(cfg, o);
    task__strlist_free(dst);
    *dst = *l;
    return 0;
}

/* Parse "30", "2.5", "500ms", "10s", "5m", "2h", "1d" as seconds. */
static int parse_seconds(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || errno != 0 || !isfinite(v))
        return -1;
    double mul = 1;
    if (strcmp(end, "ms") == 0)
        mul = 0.001;
    else if (strcmp(end, "m") == 0)
        mul = 60;
    else if (strcmp(end, "h") == 0)
        mul = 3600;
    else if (strcmp(end, "d") == 0)
        mul = 86400;
    else if (*end != '\0' && strcmp(end, "s") != 0)
        return -1;
    *out = v * mul;
    return 0;
}

static int check_range(const struct task__opt *o, double v, const char *where, task_error *err)
{
    if (v < o->min || v > o->max)
        return task__fail(err, TASK_ECONFIG, "%s%s: %g is out of range %g..%g", where, o->path, v,
                          o->min, o->max);
    return 0;
}

static int set_string(task_config *cfg, const struct task__opt *o, const char *s,
                      const char *where, task_error *err)
{
    if (o->choices != NULL) {
        int ok = 0;
        for (int i = 0; o->choices[i] != NULL; i++)
            ok |= strcmp(o->choices[i], s) == 0;
        if (!ok)
            return task__fail(err, TASK_ECONFIG, "%s%s: \"%s\" is not one of the allowed values",
                              where, o->path, s);
    }
    char why[300];
    if (o->check != NULL && s[0] != '\0' && o->check(s, why, sizeof(why)) != 0)
        return task__fail(err, TASK_ECONFIG, "%s%s: %s", where, o->path, why);
    char *copy = strdup(s);
    if (copy == NULL)
        return task__fail(err, TASK_ENOMEM, "%s%s", where, o->path);
    char **dst = field(cfg, o);
    free(*dst);
    *dst = copy;
    return 0;
}

/* Shows a value in an error without leaking a password from a broker URL. */
static void shown(const struct task__opt *o, const char *text, char *buf, size_t size)
{
    if (o->type == OPT_STRLIST && strncmp(o->path, "broker.", 7) == 0)
        task__url_redact(text, buf, size);
    else
        snprintf(buf, size, "%s", text);
}

/* Set option `o` from text (flags, environment, defaults). `where` prefixes errors. */
static int set_text(task_config *cfg, const struct task__opt *o, const char *text,
                    const char *where, task_error *err)
{
    char show[300];
    shown(o, text, show, sizeof(show));
    switch (o->type) {
    case OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (end == text || *end != '\0' || errno != 0)
            return task__fail(err, TASK_ECONFIG, "%s%s: \"%s\" is not an integer", where, o->path,
                              show);
        int rc = check_range(o, (double)v, where, err);
        if (rc == 0)
            *(int *)field(cfg, o) = (int)v;
        return rc;
    }
    case OPT_SECONDS: {
        double v;
        if (parse_seconds(text, &v) != 0)
            return task__fail(err, TASK_ECONFIG, "%s%s: \"%s\" is not a duration (e.g. 30, 2.5s, "
                              "500ms, 5m)", where, o->path, show);
        int rc = check_range(o, v, where, err);
        if (rc == 0)
            *(double *)field(cfg, o) = v;
        return rc;
    }
    case OPT_BOOL: {
        bool v;
        if (!strcmp(text, "1") || !strcmp(text, "true") || !strcmp(text, "yes") ||
            !strcmp(text, "on"))
            v = true;
        else if (!strcmp(text, "0") || !strcmp(text, "false") || !strcmp(text, "no") ||
                 !strcmp(text, "off"))
            v = false;
        else
            return task__fail(err, TASK_ECONFIG, "%s%s: \"%s\" is not a boolean", where, o->path,
                              show);
        *(bool *)field(cfg, o) = v;
        return 0;
    }
    case OPT_STRING:
        return set_string(cfg, o, text, where, err);
    case OPT_STRLIST: {
        task_strlist l = {0};
        for (const char *p = text; *p != '\0';) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            while (len > 0 && (*p == ' ' || *p == '\t'))
                p++, len--;
            while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                len--;
            if (len > 0 && task__strlist_add(&l, p, len) != 0) {
                task__strlist_free(&l);
                return task__fail(err, TASK_ENOMEM, "%s%s", where, o->path);
            }
            p = comma ? comma + 1 : p + strlen(p);
        }
        return strlist_store(cfg, o, &l, where, err);
    }
    }
    return TASK_EINVAL;
}

task_config *task_config_new(void)
{
    task_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return NULL;
    size_t n;
    const struct task__opt *o = task__config_opts(&n);
    for (size_t i = 0; i < n; i++) {
        if (set_text(cfg, &o[i], o[i].def, "default ", NULL) != 0) {
            task_config_free(cfg);
            return NULL;
        }
    }
    return cfg;
}

void task_config_free(task_config *cfg)
{
    if (cfg == NULL)
        return;
    size_t n;
    const struct task__opt *o = task__config_opts(&n);
    for (size_t i = 0; i < n; i++) {
        if (o[i].type == OPT_STRING)
            free(*(char **)field(cfg, &o[i]));
        else if (o[i].type == OPT_STRLIST)
            task__strlist_free(field(cfg, &o[i]));
    }
    free(cfg);
}

int task_config_set(task_config *cfg, const char *path, const char *value, const char *origin,
                    task_error *err)
{
    if (cfg == NULL || path == NULL || value == NULL)
        return task__fail(err, TASK_EINVAL, "task_config_set: missing argument");
    const struct task__opt *o = task__config_opt_find(path);
    char where[128];
    snprintf(where, sizeof(where), "%s: ", origin ? origin : "set");
    if (o == NULL)
        return task__fail(err, TASK_ECONFIG, "%s%s: unknown option", where, path);
    return set_text(cfg, o, value, where, err);
}

int task_config_load_env(task_config *cfg, task_error *err)
{
    size_t n;
    const struct task__opt *o = task__config_opts(&n);
    for (size_t i = 0; i < n; i++) {
        char name[96];
        task__config_opt_env(&o[i], name, sizeof(name));
        const char *v = getenv(name);
        if (v == NULL)
            continue;
        char where[128];
        snprintf(where, sizeof(where), "%s: ", name);
        /* Errors name the variable, not the option path twice. */
        task_error e = {0};
        if (set_text(cfg, &o[i], v, where, &e) != 0)
            return task__fail(err, e.code, "%s", e.msg);
    }
    return 0;
}

/* ------------------------------------------------------------------ files */

static int file_value(task_config *cfg, const struct task__opt *o, config_setting_t *s,
                      const char *where, task_error *err)
{
    int t = config_setting_type(s);
    switch (o->type) {
    case OPT_INT:
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
            return task__fail(err, TASK_ECONFIG, "%s%s: expected an integer", where, o->path);
        long long v = config_setting_get_int64(s);
        int rc = check_range(o, (double)v, where, err);
        if (rc == 0)
            *(int *)field(cfg, o) = (int)v;
        return rc;
    case OPT_SECONDS:
        if (t == CONFIG_TYPE_STRING)
            return set_text(cfg, o, config_setting_get_string(s), where, err);
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64 && t != CONFIG_TYPE_FLOAT)
            return task__fail(err, TASK_ECONFIG, "%s%s: expected a number of seconds", where,
                              o->path);
        double d = t == CONFIG_TYPE_FLOAT ? config_setting_get_float(s)
                                          : (double)config_setting_get_int64(s);
        rc = check_range(o, d, where, err);
        if (rc == 0)
            *(double *)field(cfg, o) = d;
        return rc;
    case OPT_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            return task__fail(err, TASK_ECONFIG, "%s%s: expected true or false", where, o->path);
        *(bool *)field(cfg, o) = config_setting_get_bool(s) != 0;
        return 0;
    case OPT_STRING:
        if (t != CONFIG_TYPE_STRING)
            return task__fail(err, TASK_ECONFIG, "%s%s: expected a string", where, o->path);
        return set_string(cfg, o, config_setting_get_string(s), where, err);
    case OPT_STRLIST: {
        if (t == CONFIG_TYPE_STRING)
            return set_text(cfg, o, config_setting_get_string(s), where, err);
        if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
            return task__fail(err, TASK_ECONFIG, "%s%s: expected a list of strings", where,
                              o->path);
        task_strlist l = {0};
        for (int i = 0; i < config_setting_length(s); i++) {
            const char *e = config_setting_get_string_elem(s, i);
            if (e == NULL) {
                task__strlist_free(&l);
                return task__fail(err, TASK_ECONFIG, "%s%s: element %d is not a string", where,
                                  o->path, i);
            }
            if (task__strlist_add(&l, e, strlen(e)) != 0) {
                task__strlist_free(&l);
                return task__fail(err, TASK_ENOMEM, "%s%s", where, o->path);
            }
        }
        return strlist_store(cfg, o, &l, where, err);
    }
    }
    return TASK_EINVAL;
}

static int walk_section(task_config *cfg, config_setting_t *sec, const char *path,
                        task_error *err)
{
    char where[600];
    const char *file = config_setting_source_file(sec);
    snprintf(where, sizeof(where), "%s:%u: ", file ? file : path,
             config_setting_source_line(sec));
    if (config_setting_type(sec) != CONFIG_TYPE_GROUP)
        return task__fail(err, TASK_ECONFIG, "%s%s: expected a section like %s: { ... }", where,
                          config_setting_name(sec), config_setting_name(sec));
    for (int i = 0; i < config_setting_length(sec); i++) {
        config_setting_t *s = config_setting_get_elem(sec, (unsigned)i);
        char full[256];
        snprintf(full, sizeof(full), "%s.%s", config_setting_name(sec), config_setting_name(s));
        snprintf(where, sizeof(where), "%s:%u: ", file ? file : path,
                 config_setting_source_line(s));
        const struct task__opt *o = task__config_opt_find(full);
        if (o == NULL)
            return task__fail(err, TASK_ECONFIG, "%s%s: unknown option", where, full);
        int rc = file_value(cfg, o, s, where, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int task_config_load_file(task_config *cfg, const char *path, task_error *err)
{
    if (access(path, R_OK) != 0)
        return task__fail(err, TASK_EIO, "%s: cannot read: %s", path, strerror(errno));
    config_t lc;
    config_init(&lc);
    int rc = 0;
    if (config_read_file(&lc, path) != CONFIG_TRUE) {
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            rc = task__fail(err, TASK_EIO, "%s: cannot read", path);
        else
            rc = task__fail(err, TASK_ECONFIG, "%s:%d: syntax error: %s",
                            config_error_file(&lc) ? config_error_file(&lc) : path,
                            config_error_line(&lc), config_error_text(&lc));
        goto out;
    }
    config_setting_t *root = config_root_setting(&lc);
    for (int i = 0; rc == 0 && i < config_setting_length(root); i++) {
        config_setting_t *sec = config_setting_get_elem(root, (unsigned)i);
        /* A list of entries no flat option can hold: taskd's scheduler reads and checks it
         * (taskd/beat_entry.c). */
        if (strcmp(config_setting_name(sec), "beat") == 0)
            continue;
        rc = walk_section(cfg, sec, path, err);
    }
out:
    config_destroy(&lc);
    return rc;
}

/* Why `st` (of a file, or of its directory when `dir`) lets someone other than root and us
 * change what we read; NULL if nobody else can. A directory with the sticky bit (/tmp) only
 * lets others add files, not replace ours. */
static const char *untrusted_why(const struct stat *st, bool dir)
{
    if (st->st_uid != 0 && st->st_uid != geteuid())
        return dir ? "its directory is owned by another user" : "owned by another user";
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) == 0)
        return NULL;
    if (dir && (st->st_mode & S_ISVTX))
        return NULL;
    return dir ? "its directory is writable by group or others"
               : "writable by group or others";
}

int task_config_file_trusted(const char *path, task_error *err)
{
    if (path == NULL)
        return task__fail(err, TASK_EINVAL, "task_config_file_trusted: no path");
    struct stat st;
    if (stat(path, &st) != 0)
        return task__fail(err, TASK_EIO, "%s: cannot examine: %s", path, strerror(errno));
    const char *why = untrusted_why(&st, false);
    if (why == NULL) {
        char dir[4096];
        const char *slash = strrchr(path, '/');
        if (slash == NULL)
            snprintf(dir, sizeof(dir), ".");
        else if (slash == path)
            snprintf(dir, sizeof(dir), "/");
        else
            snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
        if (stat(dir, &st) != 0)
            return task__fail(err, TASK_EIO, "%s: cannot examine its directory: %s", path,
                              strerror(errno));
        why = untrusted_why(&st, true);
    }
    if (why != NULL)
        return task__fail(err, TASK_ECONFIG, "%s: refused: %s", path, why);
    return 0;
}

/* The first line of secret file `path` (no line end) into buf. */
static int read_secret(const char *path, char *buf, size_t size, task_error *err)
{
    char why[300];
    if (task__secret_file_check(path, why, sizeof(why)) != 0)
        return task__fail(err, TASK_ECONFIG, "broker.password_file: %s", why);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return task__fail(err, TASK_ECONFIG, "broker.password_file: %s: cannot read: %s", path,
                          strerror(errno));
    char line[512];
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    size_t n = got ? strcspn(line, "\r\n") : 0;
    int rc = 0;
    if (n == 0)
        rc = task__fail(err, TASK_ECONFIG, "broker.password_file: %s: empty first line", path);
    else if (n >= size)
        rc = task__fail(err, TASK_ECONFIG, "broker.password_file: %s: longer than %zu bytes",
                        path, size - 1);
    else
        memcpy(buf, line, n), buf[n] = '\0';
    explicit_bzero(line, sizeof(line));
    return rc;
}

int task__urls_resolve(task_strlist *urls, const char *password_file, task_error *err)
{
    if (password_file == NULL || password_file[0] == '\0')
        return 0;
    char pw[TASK__URL_PASSWORD_MAX];
    int rc = read_secret(password_file, pw, sizeof(pw), err);
    task_strlist out = {0};
    for (int i = 0; rc == 0 && i < urls->n; i++) {
        char url[2048];
        if (task__url_with_password(urls->v[i], pw, url, sizeof(url)) != 0) {
            char shown[300];
            task__url_redact(urls->v[i], shown, sizeof(shown));
            rc = task__fail(err, TASK_ECONFIG, "broker.password_file: cannot use it with %s",
                            shown);
        } else if (task__strlist_add(&out, url, strlen(url)) != 0) {
            rc = task__fail(err, TASK_ENOMEM, "broker.password_file");
        }
        explicit_bzero(url, sizeof(url));
    }
    explicit_bzero(pw, sizeof(pw));
    if (rc != 0) {
        task__strlist_free(&out);
        return rc;
    }
    task__strlist_free(urls);
    *urls = out;
    return 0;
}

int task_config_resolve(task_config *cfg, task_error *err)
{
    if (cfg == NULL)
        return task__fail(err, TASK_EINVAL, "task_config_resolve: no config");
    return task__urls_resolve(&cfg->broker_urls, cfg->broker_password_file, err);
}

int task_config_load_default_ex(task_config *cfg, const char *name, const char *explicit_path,
                                unsigned flags, task_error *err)
{
    char sys[512];
    snprintf(sys, sizeof(sys), "/etc/taskd/%s", name);
    const char *implicit[] = {sys, name};
    int nimplicit = (flags & TASK_CONFIG_NO_CWD) ? 1 : 2;
    bool check = !(flags & TASK_CONFIG_ALLOW_INSECURE);
    for (int i = 0; i < nimplicit; i++) {
        if (access(implicit[i], F_OK) != 0)
            continue;
        int rc = check ? task_config_file_trusted(implicit[i], err) : 0;
        if (rc == 0)
            rc = task_config_load_file(cfg, implicit[i], err);
        if (rc != 0)
            return rc;
    }
    if (explicit_path != NULL) {
        int rc = check && (flags & TASK_CONFIG_CHECK_EXPLICIT)
                     ? task_config_file_trusted(explicit_path, err)
                     : 0;
        if (rc == 0)
            rc = task_config_load_file(cfg, explicit_path, err);
        if (rc != 0)
            return rc;
    }
    int rc = task_config_load_env(cfg, err);
    return rc == 0 ? task_config_resolve(cfg, err) : rc;
}

int task_config_load_default(task_config *cfg, const char *name, const char *explicit_path,
                             task_error *err)
{
    return task_config_load_default_ex(cfg, name, explicit_path, 0, err);
}

static bool same_value(const struct task__opt *o, const task_config *a, const task_config *b)
{
    const void *x = (const char *)a + o->off, *y = (const char *)b + o->off;
    switch (o->type) {
    case OPT_INT: return *(const int *)x == *(const int *)y;
    case OPT_SECONDS: return *(const double *)x == *(const double *)y;
    case OPT_BOOL: return *(const bool *)x == *(const bool *)y;
    case OPT_STRING: return strcmp(*(char *const *)x, *(char *const *)y) == 0;
    case OPT_STRLIST: {
        const task_strlist *l = x, *m = y;
        if (l->n != m->n)
            return false;
        for (int i = 0; i < l->n; i++)
            if (strcmp(l->v[i], m->v[i]) != 0)
                return false;
        return true;
    }
    }
    return false;
}

int task__config_reload(task_config *cur, task_config *next,
                        void (*kept)(const char *path, void *ud), void *ud)
{
    size_t n;
    const struct task__opt *o = task__config_opts(&n);
    int changed = 0;
    for (size_t i = 0; i < n; i++) {
        if (same_value(&o[i], cur, next))
            continue;
        if (!o[i].reload) {
            if (kept != NULL)
                kept(o[i].path, ud);
            continue;
        }
        /* Swap the values: `next` (freed by the caller) takes the old one along. */
        char tmp[sizeof(task_strlist)];
        size_t size = o[i].type == OPT_INT       ? sizeof(int)
                      : o[i].type == OPT_SECONDS ? sizeof(double)
                      : o[i].type == OPT_BOOL    ? sizeof(bool)
                      : o[i].type == OPT_STRING  ? sizeof(char *)
                                                 : sizeof(task_strlist);
        memcpy(tmp, (char *)cur + o[i].off, size);
        memcpy((char *)cur + o[i].off, (char *)next + o[i].off, size);
        memcpy((char *)next + o[i].off, tmp, size);
        changed++;
    }
    return changed;
}

/* The TLS options go with the connection code (tls.h); reading them from a config is here, so
 * that tls.c needs nothing of the config. */
void task__tls_from_config(const task_config *cfg, struct task__tls_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->ca_certs = cfg->ssl_ca_certs;
    o->certfile = cfg->ssl_certfile;
    o->keyfile = cfg->ssl_keyfile;
    o->no_verify = cfg->ssl_cert_reqs != NULL && (strcmp(cfg->ssl_cert_reqs, "none") == 0 ||
                                                  strcmp(cfg->ssl_cert_reqs, "CERT_NONE") == 0);
    o->no_check_hostname = !cfg->ssl_check_hostname;
    o->external = cfg->login_method != NULL && strcmp(cfg->login_method, "EXTERNAL") == 0;
}
