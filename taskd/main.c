/* main.c - taskd: parse options, load config and task modules, run the worker. */
#include <dlfcn.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <task/config.h>
#include <task/task.h>
#include "internal.h"
#include "beat.h"
#include "log.h"
#include "supervisor.h"
#include "worker.h"

#define TASKD_EXIT_FATAL 2 /* bad config or module: restarting will not help */
#define TASKD_EXIT_COLD 3  /* stopped cold: running tasks were killed (their messages requeued) */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: taskd [--config FILE] [--broker URL]... [-Q q1,q2] [-c PROCS] [--threads N]\n"
            "             [--module PATH.so]... [--hostname NAME] [--loglevel LEVEL] [-E]\n"
            "             [--metrics [HOST:]PORT] [--allow-insecure-files] [--beat|--beat-only]\n"
            "Runs a worker: consumes the task queues, runs the tasks the modules register and\n"
            "publishes their results. --metrics serves Prometheus metrics at\n"
            "http://HOST:PORT/metrics (HOST defaults to 127.0.0.1).\n"
            "\n"
            "  -f, --config FILE        read FILE after /etc/taskd/taskd.conf\n"
            "  -b, --broker URL         broker URL (repeat for fallbacks); keep the password in\n"
            "                           broker.password_file (TASKD_BROKER_PASSWORD_FILE)\n"
            "  -Q, --queues Q1,Q2       queues to consume (default celery)\n"
            "  -c, --concurrency N      worker processes (default: one per core)\n"
            "  -t, --threads N          task threads per process\n"
            "  -m, --module PATH.so     task module to load (repeatable; a bare name is looked\n"
            "                           up in the working directory, then the library paths)\n"
            "  -n, --hostname NAME      node name (default taskd<pid>@<host>)\n"
            "  -l, --loglevel LEVEL     error, warn, info or debug\n"
            "  -E, --events             send task events (celeryev)\n"
            "  -M, --metrics [HOST:]PORT  serve Prometheus metrics\n"
            "  -I, --allow-insecure-files  load files others than root and us could change\n"
            "  -B, --beat               also run the periodic task scheduler (beat.entries)\n"
            "      --beat-only          run only the scheduler: no worker, no modules\n"
            "  -h, --help               this help;  -V, --version: the version\n"
            "Exit: 0 warm stop, 1 broker refused, 2 bad config or module, 3 cold stop.\n"
            "See taskd(8), taskd.conf(5).\n");
}

struct flags {
    const char *config;
    bool allow_insecure;      /* --allow-insecure-files, or its environment variable */
    int beat;                 /* 1: --beat (scheduler beside the worker), 2: --beat-only */
    char brokers[4096];
    char modules[4096];
    struct {
        const char *path, *origin;
        char value[512];
    } later[16];
    int nlater;
};

static void append(char *list, size_t size, const char *item)
{
    size_t n = strlen(list);
    snprintf(list + n, size - n, "%s%s", n ? "," : "", item);
}

/* Where `name` is loaded from: as written when it holds a '/'; "./name" when the working
 * directory has it (what someone typing --module libx.so next to the file means); else the bare
 * name, which the dynamic linker looks up in the system's library paths (root's). */
static void module_path(const char *name, char *buf, size_t size)
{
    if (strchr(name, '/') == NULL && access(name, F_OK) == 0)
        snprintf(buf, size, "./%s", name);
    else
        snprintf(buf, size, "%s", name);
}

static int load_modules(const task_config *cfg)
{
    for (int i = 0; i < cfg->modules.n; i++) {
        char path[4096];
        module_path(cfg->modules.v[i], path, sizeof(path));
        /* A module runs as taskd: it must be no one else's to change. */
        task_error err = {0};
        if (!cfg->allow_insecure_files && strchr(path, '/') != NULL &&
            task_config_file_trusted(path, &err) != 0) {
            fprintf(stderr, "taskd: module %s (--allow-insecure-files loads it anyway)\n",
                    err.msg);
            return -1;
        }
        int before = task_registry_count();
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL && strchr(path, '/') == NULL) {
            char cwd[4096];
            fprintf(stderr, "taskd: cannot load module %s: not in the working directory %s nor "
                    "in the dynamic linker's paths (LD_LIBRARY_PATH, /etc/ld.so.conf, /lib, "
                    "/usr/lib): %s\n", path, getcwd(cwd, sizeof(cwd)) ? cwd : "(unknown)",
                    dlerror());
            return -1;
        }
        if (h == NULL) {
            fprintf(stderr, "taskd: cannot load module %s: %s\n", path, dlerror());
            return -1;
        }
        log_event(LV_INFO, 0, "module_loaded", "path=%s tasks=%d", path,
                  task_registry_count() - before);
    }
    /* Without a task every message would be quarantined as unknown: refuse to start. */
    if (task_registry_count() == 0) {
        fprintf(stderr, "taskd: no tasks registered: pass --module PATH.so (or set "
                "worker.modules in taskd.conf)\n");
        return -1;
    }
    return 0;
}

/* Files, environment, then flags: used at start and again on SIGHUP. */
static task_config *build_config(const struct flags *fl, task_error *err)
{
    task_config *cfg = task_config_new();
    if (cfg == NULL) {
        err->code = TASK_ENOMEM;
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return NULL;
    }
    unsigned how = TASK_CONFIG_NO_CWD | TASK_CONFIG_CHECK_EXPLICIT;
    if (fl->allow_insecure)
        how |= TASK_CONFIG_ALLOW_INSECURE;
    int rc = task_config_load_default_ex(cfg, "taskd.conf", fl->config, how, err);
    for (int i = 0; rc == 0 && i < fl->nlater; i++)
        rc = task_config_set(cfg, fl->later[i].path, fl->later[i].value, fl->later[i].origin, err);
    if (rc == 0 && fl->brokers[0])
        rc = task_config_set(cfg, "broker.urls", fl->brokers, "--broker", err);
    if (rc == 0 && fl->modules[0]) {
        /* --module adds to the modules named in the config file. */
        char all[8192] = "";
        for (int i = 0; i < cfg->modules.n; i++)
            append(all, sizeof(all), cfg->modules.v[i]);
        append(all, sizeof(all), fl->modules);
        rc = task_config_set(cfg, "worker.modules", all, "--module", err);
    }
    if (rc == 0)
        rc = task_config_resolve(cfg, err); /* again: --broker came after the files */
    if (rc != 0) {
        task_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Config files are checked before they are read, so whether to check them cannot come from
 * one: only the flag or TASKD_WORKER_ALLOW_INSECURE_FILES (parsed as the option would be). */
static int allow_insecure_from_env(struct flags *fl, task_error *err)
{
    const char *v = getenv("TASKD_WORKER_ALLOW_INSECURE_FILES");
    if (v == NULL || fl->allow_insecure)
        return 0;
    task_config *tmp = task_config_new();
    if (tmp == NULL) {
        err->code = TASK_ENOMEM;
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return TASK_ENOMEM;
    }
    int rc = task_config_set(tmp, "worker.allow_insecure_files", v,
                             "TASKD_WORKER_ALLOW_INSECURE_FILES", err);
    if (rc == 0)
        fl->allow_insecure = tmp->allow_insecure_files;
    task_config_free(tmp);
    return rc;
}

static task_config *reload_config(void *ud, task_error *err)
{
    return build_config(ud, err);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'f'},   {"broker", required_argument, NULL, 'b'},
        {"queues", required_argument, NULL, 'Q'},   {"concurrency", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},  {"module", required_argument, NULL, 'm'},
        {"hostname", required_argument, NULL, 'n'}, {"loglevel", required_argument, NULL, 'l'},
        {"events", no_argument, NULL, 'E'},         {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {"metrics", required_argument, NULL, 'M'},
        {"allow-insecure-files", no_argument, NULL, 'I'},
        {"beat", no_argument, NULL, 'B'},           {"beat-only", no_argument, NULL, 'O'},
        {NULL, 0, NULL, 0},
    };
    static struct flags fl;
    int c;
    while ((c = getopt_long(argc, argv, "f:b:Q:c:t:m:n:l:EhVM:IB", opts, NULL)) != -1) {
        const char *path = NULL, *origin = NULL;
        switch (c) {
        case 'f': fl.config = optarg; continue;
        case 'b': append(fl.brokers, sizeof(fl.brokers), optarg); continue;
        case 'm': append(fl.modules, sizeof(fl.modules), optarg); continue;
        case 'B': fl.beat = fl.beat ? fl.beat : 1; continue;
        case 'O': fl.beat = 2; continue;
        case 'Q': path = "worker.queues"; origin = "-Q"; break;
        case 'c': path = "worker.pool_size"; origin = "-c"; break;
        case 't': path = "worker.threads"; origin = "--threads"; break;
        case 'n': path = "worker.hostname"; origin = "--hostname"; break;
        case 'l': path = "worker.log_level"; origin = "--loglevel"; break;
        case 'E': path = "worker.send_events"; origin = "-E"; optarg = (char *)"true"; break;
        case 'M': path = "worker.metrics_listen"; origin = "--metrics"; break;
        case 'I':
            path = "worker.allow_insecure_files";
            origin = "--allow-insecure-files";
            optarg = (char *)"true";
            fl.allow_insecure = true;
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("taskd %s\n", TASKD_VERSION); return 0;
        default: usage(stderr); return TASKD_EXIT_FATAL;
        }
        if (fl.nlater < 16) {
            fl.later[fl.nlater].path = path;
            fl.later[fl.nlater].origin = origin;
            snprintf(fl.later[fl.nlater].value, sizeof(fl.later[0].value), "%s", optarg);
            fl.nlater++;
        }
    }
    /* The URLs are copied: take their passwords out of /proc/PID/cmdline, which anyone on the
     * host can read (ps). broker.password_file keeps them off the command line altogether. */
    for (int i = 1; i < argc; i++)
        task__url_scrub(argv[i]);
    if (optind < argc) {
        fprintf(stderr, "taskd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return TASKD_EXIT_FATAL;
    }

    task_error err = {0};
    int rc_beat;
    if (allow_insecure_from_env(&fl, &err) != 0) {
        fprintf(stderr, "taskd: %s\n", err.msg);
        return TASKD_EXIT_FATAL;
    }
    task_config *cfg = build_config(&fl, &err);
    if (cfg == NULL) {
        fprintf(stderr, "taskd: %s\n", err.msg);
        return TASKD_EXIT_FATAL;
    }
    /* The beat reads its entries from the same files as the config (checked by now). */
    const char *paths[] = {"/etc/taskd/taskd.conf", fl.config, NULL};
    struct beat_opts bo = {.cfg = cfg, .paths = paths, .reload = reload_config, .reload_ud = &fl};
    if (fl.beat == 2) {
        rc_beat = log_set_level(cfg->log_level) != 0 ? TASKD_EXIT_FATAL : beat_run(&bo);
        task_config_free(cfg);
        return rc_beat;
    }
    if (log_set_level(cfg->log_level) != 0 || load_modules(cfg) != 0 ||
        (fl.beat && beat_check(paths) != 0)) {
        task_config_free(cfg);
        return TASKD_EXIT_FATAL;
    }
    /* A worker on its own dead queue would quarantine its messages there again and again. */
    for (int i = 0; i < cfg->queues.n; i++) {
        if (strcmp(cfg->queues.v[i], cfg->dead_queue) == 0) {
            fprintf(stderr, "taskd: worker.queues: %s is the dead queue (worker.dead_queue); "
                    "republish its messages with taskctl dead --republish\n", cfg->dead_queue);
            task_config_free(cfg);
            return TASKD_EXIT_FATAL;
        }
    }

    if (fl.beat && beat_fork(&bo) != 0) {
        fprintf(stderr, "taskd: --beat: cannot fork the scheduler\n");
        task_config_free(cfg);
        return TASKD_EXIT_FATAL;
    }
    struct worker w;
    int rc = worker_init(&w, cfg);
    w.reload = reload_config;
    w.reload_ud = &fl;
    if (rc == 0)
        rc = worker_run(&w);
    /* A drain that ended in time leaves the worker draining; only a cold stop (second signal,
     * grace period over) reaches W_STOPPED. A supervisor (systemd) must tell them apart:
     * killed tasks ran partly. */
    bool cold = rc == 0 && w.state == W_STOPPED;
    worker_free(&w);
    task_config_free(cfg);
    if (rc == TASK_ECONFIG)
        return TASKD_EXIT_FATAL; /* e.g. the metrics address is malformed or taken */
    if (cold)
        return TASKD_EXIT_COLD;
    return rc == 0 ? 0 : 1;
}
