/*
 * cmd_top.c - taskctl top: queues (management API or passive declares, qrows.h), workers
 * (pidbox stats) and running tasks (pidbox active), refreshed every second on a full-screen
 * terminal (screen.h) until `q` or Ctrl-C. Not a terminal, --once or --json: one snapshot.
 * In the live view errors are shown in place and the next refresh tries again (a broker restart
 * does not end it); a snapshot that cannot be taken is a one-line error and exit 4.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "common.h"
#include "conn.h"
#include "internal.h"
#include "mgmt.h"
#include "pidbox.h"
#include "qrows.h"
#include "screen.h"

#define SNAPSHOT_WINDOW_S 1.0   /* how long a snapshot waits for workers, as `taskctl workers` */
#define LIVE_WINDOW_S 0.5

struct top {
    task_config *cfg;
    char **queues;              /* QUEUE arguments; none: every queue (or the defaults) */
    int nqueues;
    struct mgmt m;
    bool use_mgmt;
    struct task__conn *c;       /* NULL until (re)connected */
    struct pidbox box;
    char source[800];           /* where the queue figures come from, for the title */
};

/* One refresh worth of data; everything owned. */
struct view {
    json_object *queues, *missing, *stats, *active;
    char queue_err[768], worker_err[768];
};

static void view_clear(struct view *v)
{
    json_object_put(v->queues);
    json_object_put(v->missing);
    json_object_put(v->stats);
    json_object_put(v->active);
    memset(v, 0, sizeof(*v));
}

static bool stop_cb(void *ud)
{
    return *(bool *)ud && screen_quit_requested(0);
}

static void disconnect(struct top *t)
{
    task__conn_close(t->c);
    t->c = NULL;
}

/* (Re)connect with the pidbox on channel 1 and channel 2 for passive declares. */
static int ensure_conn(struct top *t, char *err, size_t errsize)
{
    if (t->c != NULL)
        return 0;
    t->c = ctl_conn_open(t->cfg, err, errsize);
    if (t->c == NULL)
        return -1;
    if (pidbox_open(&t->box, t->c, err, errsize) != 0 || task__conn_channel_open(t->c, 2) != 0) {
        if (err[0] == '\0')
            snprintf(err, errsize, "%s", task__conn_errmsg(t->c));
        disconnect(t);
        return -1;
    }
    return 0;
}

/* Plumbing queues hidden when every queue is listed: pidbox replies and event receivers. */
static bool plumbing(const char *name)
{
    size_t n = strlen(name), k = strlen(".reply.celery.pidbox");
    return strncmp(name, "celeryev.", 9) == 0 || (n > k && strcmp(name + n - k, ".reply.celery.pidbox") == 0);
}

static void collect_queues(struct top *t, struct view *v)
{
    if (t->use_mgmt) {
        json_object *rows = NULL;
        if (mgmt_queue_rows(&t->m, t->nqueues ? t->queues : NULL, t->nqueues, &rows, &v->missing,
                            v->queue_err, sizeof(v->queue_err)) != MGMT_OK)
            return;
        v->queues = json_object_new_array();
        for (size_t i = 0; i < json_object_array_length(rows); i++) {
            json_object *r = json_object_array_get_idx(rows, i);
            if (t->nqueues || !plumbing(json_object_get_string(json_object_object_get(r, "name"))))
                json_object_array_add(v->queues, json_object_get(r));
        }
        json_object_put(rows);
        return;
    }
    if (t->c == NULL)
        return; /* the connection error is shown with the workers */
    char *defaults[] = {t->cfg->default_queue, t->cfg->dead_queue};
    v->queues = t->nqueues ? qrows_peek(t->c, 2, t->queues, t->nqueues, &v->missing)
                           : qrows_peek(t->c, 2, defaults, 2, &v->missing);
}

/* Fill v; returns 1 when the user asked to quit meanwhile. */
static int collect(struct top *t, struct view *v, double window_s, bool live)
{
    memset(v, 0, sizeof(*v));
    bool conn_ok = ensure_conn(t, v->worker_err, sizeof(v->worker_err)) == 0;
    collect_queues(t, v);
    if (!conn_ok)
        return 0;
    struct pidbox_req reqs[2] = {{.method = "stats"}, {.method = "active"}};
    int rc = pidbox_ask(&t->box, reqs, 2, window_s, stop_cb, &live, v->worker_err,
                        sizeof(v->worker_err));
    v->stats = reqs[0].replies;
    v->active = reqs[1].replies;
    if (rc < 0)
        disconnect(t); /* reconnect at the next refresh */
    return rc == 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The node names that answered stats or active, sorted; *n of them (free the array only). */
static const char **nodes_of(const struct view *v, int *n)
{
    size_t cap = (size_t)(json_object_object_length(v->stats) + json_object_object_length(v->active));
    const char **names = calloc(cap + 1, sizeof(*names));
    *n = 0;
    json_object *sources[2] = {v->stats, v->active};
    for (int s = 0; names && s < 2; s++) {
        if (sources[s] == NULL)
            continue;
        json_object_object_foreach(sources[s], node, val)
        {
            (void)val;
            bool seen = false;
            for (int i = 0; i < *n && !seen; i++)
                seen = strcmp(names[i], node) == 0;
            if (!seen)
                names[(*n)++] = node;
        }
    }
    if (names)
        qsort(names, (size_t)*n, sizeof(*names), cmp_str);
    return names;
}

static json_object *path2(json_object *o, const char *a, const char *b)
{
    json_object *x = NULL, *y = NULL;
    if (!json_object_object_get_ex(o, a, &x))
        return NULL;
    if (b == NULL)
        return x;
    return json_object_object_get_ex(x, b, &y) ? y : NULL;
}

static const char *or_dash(json_object *v)
{
    return v ? json_object_get_string(v) : "-";
}

static void fmt_duration(double s, char *buf, size_t size)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(buf, size, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, size, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, size, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

static void render_queues(const struct view *v, struct frame *f)
{
    char line[256];
    qrows_format(NULL, line, sizeof(line));
    frame_add(f, true, "%s", line);
    if (v->queue_err[0])
        frame_add(f, false, "  %s", v->queue_err);
    for (size_t i = 0; v->queues && i < json_object_array_length(v->queues); i++) {
        qrows_format(json_object_array_get_idx(v->queues, i), line, sizeof(line));
        frame_add(f, false, "%s", line);
    }
    for (size_t i = 0; v->missing && i < json_object_array_length(v->missing); i++)
        frame_add(f, false, "%-40s (no such queue)",
                  json_object_get_string(json_object_array_get_idx(v->missing, i)));
}

static void render_workers(const struct view *v, const char **nodes, int n, struct frame *f)
{
    frame_add(f, true, "%-40s %6s %8s %9s %9s %7s %9s", "WORKER", "SLOTS", "RUNNING", "RECEIVED",
              "SUCCEEDED", "FAILED", "UPTIME");
    if (v->worker_err[0])
        frame_add(f, false, "  %s", v->worker_err);
    else if (n == 0)
        frame_add(f, false, "  (no worker answered)");
    for (int i = 0; i < n; i++) {
        json_object *st = NULL, *act = NULL;
        json_object_object_get_ex(v->stats, nodes[i], &st);
        json_object_object_get_ex(v->active, nodes[i], &act);
        char running[16] = "-", uptime[24] = "-";
        if (json_object_is_type(act, json_type_array))
            snprintf(running, sizeof(running), "%zu", json_object_array_length(act));
        json_object *up = path2(st, "uptime", NULL);
        if (up != NULL)
            fmt_duration(json_object_get_double(up), uptime, sizeof(uptime));
        frame_add(f, false, "%-40s %6s %8s %9s %9s %7s %9s", nodes[i],
                  or_dash(path2(st, "pool", "max-concurrency")), running,
                  /* stats "total" is Celery's per-task-name count; taskd's counters are here */
                  or_dash(path2(st, "taskd", "received")), or_dash(path2(st, "taskd", "succeeded")),
                  or_dash(path2(st, "taskd", "failed")), uptime);
    }
}

static void render_tasks(const struct view *v, const char **nodes, int n, struct frame *f)
{
    frame_add(f, true, "%-36s %-24s %-30s %8s  %s", "RUNNING TASK", "NAME", "WORKER", "RUNTIME",
              "ARGS");
    double now = task__now_wall();
    int shown = 0;
    for (int i = 0; i < n; i++) {
        json_object *act = NULL;
        json_object_object_get_ex(v->active, nodes[i], &act);
        for (size_t j = 0; json_object_is_type(act, json_type_array) &&
                           j < json_object_array_length(act); j++) {
            json_object *task = json_object_array_get_idx(act, j);
            json_object *ts = path2(task, "time_start", NULL);
            char runtime[24] = "-";
            if (ts != NULL)
                fmt_duration(now - json_object_get_double(ts), runtime, sizeof(runtime));
            json_object *args = path2(task, "args", NULL);
            frame_add(f, false, "%-36s %-24s %-30s %8s  %s", or_dash(path2(task, "id", NULL)),
                      or_dash(path2(task, "name", NULL)), nodes[i], runtime,
                      args ? json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN) : "");
            shown++;
        }
    }
    if (shown == 0)
        frame_add(f, false, "  (none)");
}

static void render(const struct top *t, const struct view *v, bool live, struct frame *f)
{
    f->n = 0;
    char now[32];
    time_t tt = time(NULL);
    strftime(now, sizeof(now), "%H:%M:%S", localtime(&tt));
    frame_add(f, false, "taskctl top  %s  queues: %s%s", now, t->source,
              live ? "   (q: quit)" : "");
    frame_add(f, false, "%s", "");
    render_queues(v, f);
    frame_add(f, false, "%s", "");
    int n = 0;
    const char **nodes = nodes_of(v, &n);
    render_workers(v, nodes, n, f);
    frame_add(f, false, "%s", "");
    render_tasks(v, nodes, n, f);
    free(nodes);
}

static void print_json(const struct view *v)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "queues", json_object_get(v->queues));
    json_object_object_add(o, "missing_queues",
                           v->missing ? json_object_get(v->missing) : json_object_new_array());
    json_object_object_add(o, "workers", json_object_get(v->stats));
    json_object_object_add(o, "active", json_object_get(v->active));
    ctl_print_json(o);
    json_object_put(o);
}

static int snapshot(const struct globals *g, struct top *t)
{
    static struct frame f;
    struct view v;
    collect(t, &v, SNAPSHOT_WINDOW_S, false);
    int rc = EXIT_OK;
    if (v.queue_err[0] || (v.worker_err[0] && t->c == NULL)) {
        rc = ctl_error("%s", v.queue_err[0] ? v.queue_err : v.worker_err);
    } else if (g->json) {
        print_json(&v);
    } else {
        render(t, &v, false, &f);
        frame_print(&f);
    }
    view_clear(&v);
    return rc;
}

static void live(struct top *t, double interval_s)
{
    static struct frame f;
    screen_enter();
    while (!screen_quit_requested(0)) {
        double next = task__now_mono() + interval_s;
        struct view v;
        double window = interval_s / 2 < LIVE_WINDOW_S ? interval_s / 2 : LIVE_WINDOW_S;
        if (collect(t, &v, window, true) == 0) {
            render(t, &v, true, &f);
            screen_draw(&f);
        }
        view_clear(&v);
        for (double left; (left = next - task__now_mono()) > 0;)
            if (screen_quit_requested(left > 0.05 ? 50 : (int)(left * 1000) + 1))
                break;
    }
    screen_leave();
}

static int parse(int argc, char **argv, bool *once, double *interval)
{
    static const struct option opts[] = {{"once", no_argument, NULL, 'o'},
                                         {"interval", required_argument, NULL, 'i'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'o')
            *once = true;
        else if (c != 'i' || (*interval = ctl_parse_seconds(optarg)) < 0.1)
            return ctl_error("usage: taskctl top [QUEUE...] [--once] [--interval S (>= 0.1)]");
    }
    return 0;
}

int cmd_top(const struct globals *g, int argc, char **argv)
{
    bool once = false;
    double interval = 1.0;
    if (parse(argc, argv, &once, &interval) != 0)
        return EXIT_ERROR;
    struct top t = {.queues = argv + optind, .nqueues = argc - optind};
    if ((t.cfg = ctl_config(g)) == NULL)
        return EXIT_ERROR;
    char err[512];
    int use = mgmt_open(&t.m, t.cfg, err, sizeof(err));
    if (use < 0) {
        task_config_free(t.cfg);
        return ctl_error("%s", err);
    }
    t.use_mgmt = use == 0;
    if (t.use_mgmt)
        snprintf(t.source, sizeof(t.source), "management API %s vhost %s", t.m.base, t.m.vhost);
    else
        snprintf(t.source, sizeof(t.source), "passive declares (no management_url: no rates)");
    int rc = EXIT_OK;
    if (once || g->json || !isatty(STDOUT_FILENO))
        rc = snapshot(g, &t);
    else
        live(&t, interval);
    disconnect(&t);
    if (t.use_mgmt)
        mgmt_close(&t.m);
    task_config_free(t.cfg);
    return rc;
}
