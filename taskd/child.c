/*
 * child.c - a pool child: runs tasks on N threads and reports outcomes to the supervisor.
 *
 * The child never talks to the broker. Its main thread reads job frames and queues them; task
 * threads run them and write outcome frames (serialised by a lock). EOF on the socket means
 * "finish what you have and exit"; the supervisor sends it on recycle and warm shutdown.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include "child.h"
#include "ctx.h"
#include "internal.h"
#include "ipc.h"
#include "ipc_frame.h"
#include "result_check.h"
#include "task_limits.h"

struct cjob {
    struct cjob *next;
    json_object *req;
    struct ipc_down d;      /* read from req (borrows from it) */
};

struct slot {
    int64_t jid;            /* 0: idle */
    task_ctx *ctx;
    void *http;             /* this thread's curl handle, kept across tasks for reuse */
};

struct child {
    int fd;
    int nthreads;
    pthread_mutex_t mu;     /* queue, slots, quit */
    pthread_cond_t cv;
    struct cjob *head, *tail;
    bool quit;
    struct slot *slots;
    pthread_mutex_t wmu;    /* one writer on fd at a time */
};

struct run {
    struct child *c;
    int64_t jid;
};

/* The job the calling thread runs (0: none), for the crash handler. */
static __thread int64_t current_jid;
static int64_t *crash_word;

/* Async-signal-safe: name the crashing job in shared memory, then die of the signal (the
 * handler is one-shot, SA_RESETHAND, so the fault repeats with the default action). */
static void on_crash(int sig)
{
    (void)sig;
    int64_t none = 0;
    if (crash_word != NULL && current_jid != 0)
        __atomic_compare_exchange_n(crash_word, &none, current_jid, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST);
}

/* The job running on a one-thread child's main thread (0: none), and the job the supervisor
 * asks it to cancel (shared memory, written before SIGUSR1). */
static int64_t solo_jid;
static int64_t *cancel_word;
static task_ctx *solo_ctx;

static void on_cancel_signal(int sig)
{
    (void)sig;
    int64_t want = cancel_word != NULL ? __atomic_load_n(cancel_word, __ATOMIC_SEQ_CST) : 0;
    if (want != 0 && solo_ctx != NULL && want == __atomic_load_n(&solo_jid, __ATOMIC_SEQ_CST))
        atomic_store(&solo_ctx->cancelled, true);
}

static void crash_handlers(void)
{
    struct sigaction sc = {.sa_handler = on_cancel_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sc.sa_mask);
    sigaction(SIGUSR1, &sc, NULL);
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    struct sigaction sa = {.sa_handler = on_crash, .sa_flags = SA_RESETHAND | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
}

/* A stack overflow can only be reported from another stack. A thread that has one already
 * (a sanitizer runtime installs its own and unmaps it when the thread ends) keeps it. */
static void alt_stack(void)
{
    stack_t old;
    if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE))
        return;
    stack_t ss = {.ss_size = 64 * 1024};
    ss.ss_sp = malloc(ss.ss_size);
    if (ss.ss_sp != NULL && sigaltstack(&ss, NULL) != 0)
        free(ss.ss_sp);
}

static void send_frame(struct child *c, json_object *o)
{
    pthread_mutex_lock(&c->wmu);
    int rc = ipc_send(c->fd, o);
    pthread_mutex_unlock(&c->wmu);
    if (rc != 0)
        _exit(0); /* supervisor gone: PDEATHSIG would follow anyway */
}

static int child_progress(task_ctx *ctx, json_object *meta)
{
    struct run *r = ctx->rt;
    struct ipc_up up = {.kind = IPC_UP_PROGRESS, .jid = r->jid, .meta = meta};
    json_object *o = ipc_up_write(&up);
    if (o == NULL)
        return TASK_ENOMEM;
    send_frame(r->c, o);
    json_object_put(o);
    return 0;
}

static const struct task_ctx_ops child_ops = {.progress = child_progress};

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void run_job(struct child *c, int slot, const struct ipc_down *d)
{
    int64_t jid = d->jid;
    const char *name = d->task;
    double soft = d->soft_s;
    struct run r = {.c = c, .jid = jid};
    /* A one-thread child runs its task on the main thread, which cannot read a cancel frame
     * meanwhile: the supervisor signals it instead (on_cancel_signal), and the ctx lives in
     * static storage so that a late signal never writes to a dead stack frame. */
    static task_ctx solo;
    task_ctx stack_ctx;
    task_ctx *ctx = c->nthreads == 1 ? &solo : &stack_ctx;
    task__ctx_init(ctx, &child_ops, &r, d->id, d->retries,
                   soft > 0 ? task__now_mono() + soft : 0);
    /* Connections (and the handle's setup cost) carry over from the thread's last task. */
    ctx->http = c->slots[slot].http;
    pthread_mutex_lock(&c->mu);
    c->slots[slot].jid = jid;
    c->slots[slot].ctx = ctx;
    bool cancel_now = d->cancelled;
    pthread_mutex_unlock(&c->mu);
    if (cancel_now)
        atomic_store(&ctx->cancelled, true);

    const task_def *def = task_registry_find(name);
    json_object *result = NULL;
    double t0 = task__now_mono();
    current_jid = jid;
    if (ctx == &solo)
        solo_ctx = ctx, __atomic_store_n(&solo_jid, jid, __ATOMIC_SEQ_CST);
    int outcome = def ? def->fn(ctx, d->args, d->kwargs, &result)
                      : task_fail(ctx, "NotRegistered", "%s", name);
    current_jid = 0;
    __atomic_store_n(&solo_jid, 0, __ATOMIC_SEQ_CST);
    double runtime = task__now_mono() - t0;
    /* The frame up must stay readable (the supervisor parses at TASK__IPC_MAX_DEPTH): a deeper
     * result is refused here, as the supervisor would refuse it. */
    char why[160];
    if (outcome == TASK_OK && ipc_json_depth(result, TASK__RESULT_MAX_DEPTH) > TASK__RESULT_MAX_DEPTH)
        outcome = task_fail(ctx, "EncodeError", "%s",
                            result_unstorable(result, 0, why, sizeof(why)));
    /* Past the soft limit when it returned: reported as SoftTimeLimitExceeded, as Celery does
     * for a task that does not stop in time. */
    bool soft_expired = ctx->soft_deadline > 0 && task__now_mono() >= ctx->soft_deadline;

    pthread_mutex_lock(&c->mu);
    c->slots[slot].jid = 0;
    c->slots[slot].ctx = NULL;
    pthread_mutex_unlock(&c->mu);

    struct ipc_up up = {
        .kind = IPC_UP_DONE,
        .jid = jid,
        .outcome = outcome,
        .result = outcome == TASK_OK ? result : NULL,
        .exc_type = ctx->exc_type,
        .exc_message = ctx->exc_message,
        .retry_in_s = ctx->retry_in_s,
        .runtime_s = runtime,
        .cancelled = atomic_load(&ctx->cancelled),
        .soft_expired = soft_expired,
        .rss_kb = rss_kb(),
    };
    json_object *o = ipc_up_write(&up);
    json_object_put(result); /* the frame holds its own reference */
    if (o == NULL)
        _exit(CHILD_EXIT_FATAL); /* the supervisor sees the child lost: WorkerLostError */
    c->slots[slot].http = ctx->http;
    ctx->http = NULL;
    task__ctx_release(ctx);
    send_frame(c, o);
    json_object_put(o);
}

struct thread_arg {
    struct child *c;
    int slot;
};

static void *task_thread(void *p)
{
    struct thread_arg *a = p;
    struct child *c = a->c;
    alt_stack();
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (c->head == NULL && !c->quit)
            pthread_cond_wait(&c->cv, &c->mu);
        struct cjob *j = c->head;
        if (j == NULL) { /* quit and nothing left */
            pthread_mutex_unlock(&c->mu);
            task_ctx last = {.http = c->slots[a->slot].http};
            task__ctx_release(&last);
            return NULL;
        }
        c->head = j->next;
        if (c->head == NULL)
            c->tail = NULL;
        pthread_mutex_unlock(&c->mu);
        run_job(c, a->slot, &j->d);
        json_object_put(j->req);
        free(j);
    }
}

/* Cancel (revoke --terminate, soft limit from outside) the job `jid` if it runs here. */
static void cancel_job(struct child *c, int64_t jid)
{
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->nthreads; i++) {
        if (c->slots[i].jid == jid && c->slots[i].ctx != NULL)
            task__ctx_cancel(c->slots[i].ctx);
    }
    pthread_mutex_unlock(&c->mu);
}

/* The next request frame, reading as much as the socket has (fewer read() calls). */
static json_object *next_request(int fd, struct ipc_buf *in)
{
    for (;;) {
        int bad = 0;
        json_object *o = ipc_next(in, &bad);
        if (o != NULL)
            return o;
        if (bad)
            _exit(CHILD_EXIT_FATAL);
        int rc = ipc_fill(fd, in);
        if (rc == 0 || (rc < 0 && rc != -EAGAIN))
            return NULL;
    }
}

static void child_setup(const int *close_fds, int nclose)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_UNBLOCK, &all, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_IGN); /* Ctrl-C in a terminal is the supervisor's to handle */
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < nclose; i++) {
        if (close_fds[i] >= 0)
            close(close_fds[i]);
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        _exit(CHILD_EXIT_FATAL);
}

void child_main(int fd, int nthreads, const int *close_fds, int nclose, int64_t *crash_jid,
                int64_t *cancel_jid)
{
    pid_t parent = getppid();
    child_setup(close_fds, nclose);
    crash_word = crash_jid;
    cancel_word = cancel_jid;
    alt_stack();
    crash_handlers();
    if (getppid() != parent)
        _exit(0); /* the supervisor died before PDEATHSIG was armed */
    struct child c = {.fd = fd, .nthreads = nthreads};
    pthread_mutex_init(&c.mu, NULL);
    pthread_mutex_init(&c.wmu, NULL);
    pthread_cond_init(&c.cv, NULL);
    c.slots = calloc((size_t)nthreads, sizeof(*c.slots));
    pthread_t *tids = calloc((size_t)nthreads, sizeof(*tids));
    struct thread_arg *args = calloc((size_t)nthreads, sizeof(*args));
    if (c.slots == NULL || tids == NULL || args == NULL)
        _exit(CHILD_EXIT_FATAL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* Many threads are for I/O-bound tasks: keep their address space modest. */
    if (nthreads > 64)
        pthread_attr_setstacksize(&attr, 512 * 1024);
    int started = nthreads > 1 ? nthreads : 0;
    for (int i = 0; i < started; i++) {
        args[i] = (struct thread_arg){&c, i};
        if (pthread_create(&tids[i], &attr, task_thread, &args[i]) != 0)
            _exit(CHILD_EXIT_FATAL);
    }
    pthread_attr_destroy(&attr);

    struct ipc_buf in = {0};
    json_object *req;
    while ((req = next_request(fd, &in)) != NULL) {
        struct ipc_down d;
        char why[160];
        if (ipc_down_read(req, &d, why, sizeof(why)) != 0) {
            /* Only the supervisor writes here: a frame it did not mean is a bug. */
            fprintf(stderr, "taskd child: bad frame from the supervisor: %s\n", why);
            _exit(CHILD_EXIT_FATAL);
        }
        if (d.kind == IPC_DOWN_CANCEL) {
            cancel_job(&c, d.jid);
            json_object_put(req);
            continue;
        }
        if (nthreads == 1) {
            /* One slot: run it here, with no hand-off to a thread (two context switches fewer
             * per task). Cancels are read between tasks; a running task still sees its soft
             * deadline, and the supervisor enforces the hard limit. */
            run_job(&c, 0, &d);
            json_object_put(req);
            continue;
        }
        struct cjob *j = malloc(sizeof(*j));
        if (j == NULL)
            _exit(CHILD_EXIT_FATAL);
        j->next = NULL;
        j->req = req;
        j->d = d;
        pthread_mutex_lock(&c.mu);
        if (c.tail != NULL)
            c.tail->next = j;
        else
            c.head = j;
        c.tail = j;
        pthread_cond_signal(&c.cv);
        pthread_mutex_unlock(&c.mu);
    }
    pthread_mutex_lock(&c.mu);
    c.quit = true;
    pthread_cond_broadcast(&c.cv);
    pthread_mutex_unlock(&c.mu);
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    if (started == 0) {
        task_ctx last = {.http = c.slots[0].http};
        task__ctx_release(&last);
    }
    ipc_buf_free(&in);
    free(c.slots);
    free(tids);
    free(args);
    _exit(0);
}
