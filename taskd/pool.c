/*
 * pool.c - the supervisor's side of the process pool: fork children, hand each job to the
 * least busy one, read outcomes, enforce hard time limits (SIGKILL the child), reap and replace
 * dead children, recycle by task count or memory. Only the supervisor talks to the broker.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "beat.h"
#include "child.h"
#include "ipc_frame.h"
#include "log.h"
#include "metrics_http.h"
#include "pool.h"
#include "ratelimit.h"
#include "revoked.h"
#include "worker.h"

static void send_cancel(struct worker *w, struct pchild *c, const struct job *j);
static void pool_trim(struct pool *p);

static int spawn(struct worker *w, int i)
{
    struct pool *p = &w->pool;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return -e;
    }
    __atomic_store_n(&p->crash[i], 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&p->crash[p->cap + i], 0, __ATOMIC_SEQ_CST);
    if (pid == 0) {
        /* The parent is single-threaded here, so malloc in the child is safe. */
        int *fds = malloc((size_t)(p->n + 3 + MHTTP_MAX_FDS) * sizeof(*fds));
        int n = 0;
        if (fds == NULL)
            _exit(CHILD_EXIT_FATAL);
        /* A child holding a client's socket would keep that connection open after we close it. */
        n += mhttp_fds(w->mhttp, fds + n, MHTTP_MAX_FDS);
        fds[n++] = sv[0];
        fds[n++] = w->sigfd;
        if (w->conn != NULL)
            fds[n++] = task__conn_fd(w->conn);
        for (int k = 0; k < p->n; k++)
            if (p->ch[k].pid > 0)
                fds[n++] = p->ch[k].fd;
        child_main(sv[1], p->threads, fds, n, &p->crash[i], &p->crash[p->cap + i]);
    }
    close(sv[1]);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    struct pchild *c = &p->ch[i];
    ipc_buf_free(&c->in);
    ipc_out_free(&c->out);
    *c = (struct pchild){.pid = pid, .fd = sv[0], .backoff = c->backoff};
    log_event(LV_DEBUG, 0, "child_started", "slot=%d pid=%d threads=%d", i, (int)pid, p->threads);
    return 0;
}

int pool_start(struct worker *w)
{
    struct pool *p = &w->pool;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    p->n = w->cfg->pool_size > 0 ? w->cfg->pool_size : (int)(cores > 0 ? cores : 1);
    p->threads = w->cfg->threads > 0 ? w->cfg->threads : 1;
    p->next_jid = 1;
    /* Room for pool_grow: children share `crash` from their fork on, so it is never moved. */
    p->cap = p->n + POOL_GROW_MAX;
    p->target = p->n;
    p->ch = calloc((size_t)p->cap, sizeof(*p->ch));
    if (p->ch == NULL)
        return -ENOMEM;
    p->crash = mmap(NULL, 2 * (size_t)p->cap * sizeof(*p->crash), PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p->crash == MAP_FAILED) {
        p->crash = NULL;
        return -errno;
    }
    for (int i = 0; i < p->n; i++) {
        int rc = spawn(w, i);
        if (rc != 0) {
            log_event(LV_ERROR, -rc, "fork_failed", "slot=%d", i);
            return rc;
        }
    }
    return 0;
}

/* A task's time limits: its message's, else those set by pidbox time_limit (where 0 means the
 * worker's default, as Celery's None does), else its TASK() options, else the worker's. */
static void job_limits(const struct worker *w, const struct job *job, double *soft, double *hard)
{
    const struct task__msg *m = &job->m;
    double s = job->def->soft_time_limit, h = job->def->time_limit;
    (void)time_limit_get(w, m->task, &s, &h);
    *soft = m->timelimit_soft > 0 ? m->timelimit_soft : s > 0 ? s : w->cfg->soft_time_limit_s;
    *hard = m->timelimit_hard > 0 ? m->timelimit_hard : h > 0 ? h : w->cfg->time_limit_s;
}

static json_object *job_frame(const struct worker *w, const struct job *job)
{
    const struct task__msg *m = &job->m;
    double soft, hard;
    job_limits(w, job, &soft, &hard);
    struct ipc_down d = {
        .kind = IPC_DOWN_JOB,
        .jid = job->jid,
        .task = m->task,
        .id = m->id,
        .args = m->args,
        .kwargs = m->kwargs,
        .retries = m->retries,
        .soft_s = soft,
    };
    return ipc_down_write(&d);
}

static int least_busy(const struct pool *p)
{
    int best = -1;
    for (int i = 0; i < p->n; i++) {
        const struct pchild *c = &p->ch[i];
        /* One whose socket is full is not reading: the job waits for another. */
        if (c->pid <= 0 || c->retiring || c->busy >= p->threads || c->stalled)
            continue;
        if (best < 0 || c->busy < p->ch[best].busy)
            best = i;
    }
    return best;
}

/* Hand `job` to a child. False: no free slot (it waits). A job revoked while it waited (in the
 * backlog, for a rate token) ends here, REVOKED, without running. */
static bool dispatch(struct worker *w, struct job *job)
{
    struct pool *p = &w->pool;
    if (p->stopping)
        return false;
    if (revoked_has(w, job->m.id)) {
        p->hooks.revoked(w, job, "revoked");
        return true;
    }
    int i = least_busy(p);
    if (i < 0)
        return false;
    struct pchild *c = &p->ch[i];
    json_object *frame = job_frame(w, job);
    if (frame == NULL)
        return false; /* out of memory: it waits in the backlog */
    /* Written at the end of the loop turn (pool_flush): one write for every job the turn
     * hands this child. On failure nothing was added. */
    int rc = ipc_queue(&c->out, frame);
    json_object_put(frame);
    if (rc != 0)
        return false;
    double soft, hard;
    job_limits(w, job, &soft, &hard);
    job->child = i;
    job->started = task__now_mono();
    job->hard_deadline = hard > 0 ? job->started + hard : 0;
    job->next = c->running;
    c->running = job;
    c->busy++;
    p->hooks.started(w, job); /* STARTED and task-started: now, not when it joined the backlog */
    return true;
}

void pool_submit(struct worker *w, struct job *job)
{
    struct pool *p = &w->pool;
    job->jid = p->next_jid++;
    job->child = -1;
    job->next = NULL;
    if (p->bl.head == NULL && dispatch(w, job))
        return;
    joblist_push(&p->bl, job);
}

void pool_drain_backlog(struct worker *w)
{
    struct pool *p = &w->pool;
    if (w->blocked)
        return; /* its STARTED could not go out; the broker is not reading */
    while (p->bl.head != NULL) {
        struct job *job = joblist_pop(&p->bl);
        if (!dispatch(w, job)) {
            joblist_push_front(&p->bl, job); /* where it was */
            return;
        }
    }
}

static struct job *take_running(struct pchild *c, int64_t jid)
{
    for (struct job **pp = &c->running; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->jid == jid) {
            struct job *j = *pp;
            *pp = j->next;
            j->next = NULL;
            c->busy--;
            return j;
        }
    }
    return NULL;
}

static struct job *find_running(struct pchild *c, int64_t jid)
{
    for (struct job *j = c->running; j != NULL; j = j->next)
        if (j->jid == jid)
            return j;
    return NULL;
}

static void maybe_retire(struct worker *w, int i)
{
    struct pchild *c = &w->pool.ch[i];
    const task_config *cfg = w->cfg;
    if (!c->retiring && ((cfg->max_tasks_per_child > 0 && c->done_count >= cfg->max_tasks_per_child) ||
                         (cfg->max_memory_per_child_kb > 0 && c->rss_kb > cfg->max_memory_per_child_kb))) {
        c->retiring = true;
        log_event(LV_INFO, 0, "child_recycle", "pid=%d tasks=%d rss_kb=%ld", (int)c->pid,
                  c->done_count, c->rss_kb);
    }
    if (c->retiring && c->busy == 0)
        shutdown(c->fd, SHUT_WR); /* EOF: the child exits once idle */
}

/* One frame from child `i`. False: it is not a frame a child writes (the child is broken). */
static bool on_frame(struct worker *w, int i, json_object *o)
{
    struct pchild *c = &w->pool.ch[i];
    struct ipc_up up;
    char why[160];
    if (ipc_up_read(o, &up, why, sizeof(why)) != 0) {
        log_event(LV_ERROR, 0, "child_protocol_error", "pid=%d detail=\"%s\"", (int)c->pid, why);
        return false;
    }
    if (up.kind == IPC_UP_PROGRESS) {
        struct job *job = find_running(c, up.jid);
        if (job != NULL && !job->orphan && w->conn != NULL && !w->blocked)
            w->pool.hooks.progress(w, job, up.meta);
        return true;
    }
    struct job *job = take_running(c, up.jid);
    if (job == NULL)
        return true; /* it ended already (killed for its time limit, say) */
    c->done_count++;
    c->backoff = 0; /* it works: a later failure starts the delays over */
    if (up.rss_kb >= 0)
        c->rss_kb = up.rss_kb;
    w->pool.hooks.ended(w, job, STASH_DONE, &up);
    maybe_retire(w, i);
    return true;
}

void pool_on_readable(struct worker *w, int i)
{
    struct pchild *c = &w->pool.ch[i];
    for (;;) {
        int rc = ipc_fill(c->fd, &c->in);
        if (rc <= 0)
            break; /* EOF is handled when the child is reaped */
    }
    json_object *o;
    int bad = 0;
    while ((o = ipc_next(&c->in, &bad)) != NULL) {
        if (!on_frame(w, i, o))
            bad = 1;
        json_object_put(o);
    }
    if (bad) {
        log_event(LV_ERROR, 0, "child_protocol_error", "pid=%d action=kill", (int)c->pid);
        kill(c->pid, SIGKILL);
    }
    pool_drain_backlog(w);
}

/* Write what waits for child `c`; what its socket does not take waits for POLLOUT. */
static void flush_child(struct pchild *c)
{
    if (ipc_flush(c->fd, &c->out) != 0) {
        /* It stopped reading for good: reaped when it exits, its jobs lost with it, as a job
         * whose frame was in its socket when it died always was. */
        ipc_out_free(&c->out);
        c->retiring = true;
    }
    c->stalled = ipc_pending(&c->out);
}

void pool_on_writable(struct worker *w, int i)
{
    flush_child(&w->pool.ch[i]);
}

void pool_flush(struct worker *w)
{
    for (int i = 0; i < w->pool.n; i++) {
        struct pchild *c = &w->pool.ch[i];
        if (c->pid > 0 && !c->stalled && ipc_pending(&c->out))
            flush_child(c);
    }
}

int pool_live(const struct worker *w)
{
    int n = 0;
    for (int i = 0; i < w->pool.n; i++)
        n += w->pool.ch[i].pid > 0;
    return n;
}

/* Slot `i` has no child and cannot have one now: try again after a growing delay (0.5 s
 * doubling to 30 s); with no live child left, stop consuming until one runs. */
static void respawn_later(struct worker *w, int i, const char *event, int err)
{
    struct pchild *c = &w->pool.ch[i];
    c->backoff = c->backoff > 0 ? (c->backoff * 2 > 30 ? 30 : c->backoff * 2) : 0.5;
    c->respawn_at = task__now_mono() + c->backoff;
    log_event(LV_ERROR, err, event, "slot=%d action=respawn retry_in_s=%.1f live=%d", i,
              c->backoff, pool_live(w));
    if (pool_live(w) == 0)
        w->pool.hooks.live(w, false);
}

static void respawn_due(struct worker *w, double now)
{
    struct pool *p = &w->pool;
    for (int i = 0; i < p->n && !p->stopping; i++) {
        struct pchild *c = &p->ch[i];
        if (c->pid > 0 || c->respawn_at <= 0 || now < c->respawn_at || i >= p->target)
            continue;
        c->respawn_at = 0;
        int rc = spawn(w, i);
        if (rc != 0)
            respawn_later(w, i, "fork_failed", -rc);
        else
            p->hooks.live(w, true);
    }
}

static void child_died(struct worker *w, int i, int status)
{
    struct pool *p = &w->pool;
    struct pchild *c = &p->ch[i];
    /* Outcomes it wrote before dying still count. */
    pool_on_readable(w, i);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (WIFSIGNALED(status) || c->running != NULL)
        log_event(LV_WARN, 0, "child_lost", "pid=%d %s=%d running=%d", (int)c->pid,
                  WIFSIGNALED(status) ? "signal" : "exit",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), c->busy);
    else
        log_event(LV_DEBUG, 0, "child_exited", "pid=%d", (int)c->pid);
    struct job *job = c->running;
    c->running = NULL;
    c->busy = 0;
    int64_t culprit = __atomic_exchange_n(&p->crash[i], 0, __ATOMIC_SEQ_CST);
    /* Killed by us (the target may have finished just before: its outcome was read above, and
     * it is no longer in the list) or a thread's crash named its task: the others are not to
     * blame. */
    bool blamed = culprit != 0 || c->killed;
    while (job != NULL) {
        struct job *next = job->next;
        job->next = NULL;
        /* A neighbour's crash or kill: no failure is recorded for it, and the run it lost
         * does not count as one of its deliveries. */
        bool neighbour = blamed && job->jid != culprit && !job->timed_out && !job->terminated;
        p->hooks.ended(w, job, neighbour ? STASH_REQUEUE : STASH_LOST, NULL);
        job = next;
    }
    close(c->fd);
    ipc_buf_free(&c->in);
    ipc_out_free(&c->out);
    c->pid = 0;
    c->fd = -1;
    if (p->stopping)
        return;
    if (i >= p->target) {
        pool_trim(p); /* removed by pool_shrink: no replacement */
        return;
    }
    (void)clean;
    if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_EXIT_FATAL) {
        /* Its setup failed (memory, threads): forking it again at once would loop. */
        respawn_later(w, i, "child_fatal", 0);
        return;
    }
    int rc = spawn(w, i);
    if (rc != 0)
        respawn_later(w, i, "fork_failed", -rc);
}

void pool_reap(struct worker *w)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        beat_child_reaped(pid, status); /* --beat: its scheduler's end is logged */
        for (int i = 0; i < w->pool.n; i++) {
            if (w->pool.ch[i].pid == pid) {
                child_died(w, i, status);
                break;
            }
        }
    }
    pool_drain_backlog(w);
}

void pool_check_limits(struct worker *w)
{
    double now = task__now_mono();
    respawn_due(w, now);
    for (int i = 0; i < w->pool.n; i++) {
        struct pchild *c = &w->pool.ch[i];
        for (struct job *j = c->running; j != NULL; j = j->next) {
            if (j->hard_deadline > 0 && now >= j->hard_deadline && !j->timed_out) {
                j->timed_out = true;
                log_event(LV_WARN, 0, "time_limit_exceeded", "task=%s task_id=%s pid=%d "
                          "action=kill", log_v(j->m.task), log_v(j->m.id), (int)c->pid);
                c->killed = true;
                kill(c->pid, SIGKILL);
            }
        }
    }
}

int pool_next_deadline_ms(const struct worker *w)
{
    double first = 0;
    for (int i = 0; i < w->pool.n; i++)
        if (w->pool.ch[i].pid <= 0 && w->pool.ch[i].respawn_at > 0 &&
            (first == 0 || w->pool.ch[i].respawn_at < first))
            first = w->pool.ch[i].respawn_at;
    for (int i = 0; i < w->pool.n; i++)
        for (const struct job *j = w->pool.ch[i].running; j != NULL; j = j->next)
            if (j->hard_deadline > 0 && !j->timed_out && (first == 0 || j->hard_deadline < first))
                first = j->hard_deadline;
    if (first == 0)
        return -1;
    double ms = (first - task__now_mono()) * 1000;
    /* A task's time limit may be 1e300 s: casting that to int is undefined. */
    return ms <= 0 ? 0 : ms >= INT_MAX - 1 ? INT_MAX : (int)ms + 1;
}

int pool_running(const struct worker *w)
{
    int n = 0;
    for (int i = 0; i < w->pool.n; i++)
        n += w->pool.ch[i].busy;
    return n;
}

bool pool_idle(const struct worker *w)
{
    return w->pool.bl.n == 0 && pool_running(w) == 0;
}

/* A cold stop: every running task sees task_cancelled() and gets up to `grace_s` to let go of
 * what it holds (transfers abort); whatever they return, their messages go back to the queue. */
static void cancel_running(struct worker *w, double grace_s)
{
    struct pool *p = &w->pool;
    for (int i = 0; i < p->n; i++)
        for (struct job *j = p->ch[i].running; p->ch[i].pid > 0 && j != NULL; j = j->next)
            send_cancel(w, &p->ch[i], j);
    double until = task__now_mono() + grace_s;
    while (pool_running(w) > 0 && task__now_mono() < until) {
        struct pollfd *pfd = w->pfd;
        int *map = w->pfd_child, n = 0;
        for (int i = 0; i < p->n; i++) {
            if (p->ch[i].pid > 0 && p->ch[i].busy > 0) {
                map[n] = i;
                pfd[n++] = (struct pollfd){.fd = p->ch[i].fd, .events = POLLIN};
            }
        }
        if (n == 0 || poll(pfd, (nfds_t)n, 50) < 0)
            break;
        for (int k = 0; k < n; k++)
            if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
                pool_on_readable(w, map[k]);
    }
}

void pool_stop(struct worker *w, bool cold)
{
    struct pool *p = &w->pool;
    bool first_cold = cold && !p->cold;
    p->stopping = true;
    p->cold = cold;
    if (first_cold)
        cancel_running(w, 1.0);
    for (int i = 0; i < p->n; i++) {
        if (p->ch[i].pid <= 0)
            continue;
        if (cold)
            kill(p->ch[i].pid, SIGKILL);
        else
            shutdown(p->ch[i].fd, SHUT_WR);
    }
}

bool pool_all_exited(const struct worker *w)
{
    for (int i = 0; i < w->pool.n; i++)
        if (w->pool.ch[i].pid > 0)
            return false;
    return true;
}

struct job *pool_take_backlog(struct worker *w, double before)
{
    return joblist_take_before(&w->pool.bl, before);
}

void pool_drop_jobs(struct worker *w)
{
    struct pool *p = &w->pool;
    job_free_chain(joblist_take_before(&p->bl, INFINITY));
    /* A leased job keeps its message in its lease queue: its outcome still counts. */
    for (int i = 0; i < p->n; i++)
        for (struct job *j = p->ch[i].running; j != NULL; j = j->next)
            j->orphan = !j->leased;
}

static void send_cancel(struct worker *w, struct pchild *c, const struct job *j)
{
    struct ipc_down d = {.kind = IPC_DOWN_CANCEL, .jid = j->jid};
    json_object *o = ipc_down_write(&d);
    /* A dying child is reaped as lost either way. */
    if (o != NULL && ipc_queue(&c->out, o) == 0 && !c->stalled)
        flush_child(c);
    json_object_put(o);
    if (w->pool.threads == 1) {
        /* Its one thread is busy running the task: it reads the frame only afterwards. */
        __atomic_store_n(&w->pool.crash[w->pool.cap + (c - w->pool.ch)], j->jid, __ATOMIC_SEQ_CST);
        kill(c->pid, SIGUSR1);
    }
}

void pool_revoke(struct worker *w, const char *id, bool terminate)
{
    for (int i = 0; i < w->pool.n; i++) {
        struct pchild *c = &w->pool.ch[i];
        for (struct job *j = c->running; j != NULL; j = j->next) {
            if (strcmp(j->m.id, id) != 0 || j->terminated)
                continue;
            if (!terminate) {
                if (!j->cancelled)
                    send_cancel(w, c, j);
                j->cancelled = true;
                continue;
            }
            /* Threads cannot be killed one by one: the child goes, and its other jobs are
             * requeued (child_died), not failed. */
            j->terminated = true;
            log_event(LV_INFO, 0, "task_terminate", "task_id=%s pid=%d", log_v(id), (int)c->pid);
            c->killed = true;
            kill(c->pid, SIGKILL);
        }
    }
}

/* Slots past the target that have no child any more leave the pool (from the top only, so
 * slot numbers of the live children never change). */
static void pool_trim(struct pool *p)
{
    while (p->n > p->target && p->ch[p->n - 1].pid <= 0) {
        ipc_buf_free(&p->ch[p->n - 1].in);
        p->ch[p->n - 1] = (struct pchild){.fd = -1};
        p->n--;
    }
}

/* Ask child `i` to exit once its running tasks are done (EOF on its socket). */
static void retire(struct pool *p, int i)
{
    struct pchild *c = &p->ch[i];
    c->retiring = true;
    if (c->pid > 0 && c->busy == 0)
        shutdown(c->fd, SHUT_WR);
}

int pool_grow(struct worker *w, int k)
{
    struct pool *p = &w->pool;
    if (k < 1 || p->stopping)
        return TASK_EINVAL;
    int room = p->cap - p->target;
    int add = k < room ? k : room;
    for (int i = p->target; i < p->target + add; i++) {
        if (i < p->n && p->ch[i].pid > 0)
            continue; /* still retiring from a shrink: child_died replaces it now */
        if (i >= p->n)
            p->n = i + 1;
        int rc = spawn(w, i);
        if (rc != 0)
            respawn_later(w, i, "fork_failed", -rc);
    }
    p->target += add;
    log_event(LV_INFO, 0, "pool_resized", "via=pool_grow asked=%d processes=%d", k, p->target);
    pool_drain_backlog(w);
    return add;
}

int pool_shrink(struct worker *w, int k)
{
    struct pool *p = &w->pool;
    if (k < 1 || p->stopping)
        return TASK_EINVAL;
    /* One process always stays: with none, consuming would pause (consumer_pause). */
    int drop = k < p->target - 1 ? k : p->target - 1;
    for (int i = p->target - drop; i < p->target; i++) {
        if (p->ch[i].pid > 0)
            retire(p, i);
        p->ch[i].respawn_at = 0;
    }
    p->target -= drop;
    pool_trim(p);
    log_event(LV_INFO, 0, "pool_resized", "via=pool_shrink asked=%d processes=%d", k, p->target);
    return drop;
}

int pool_restart(struct worker *w)
{
    struct pool *p = &w->pool;
    if (p->stopping)
        return TASK_EINVAL;
    int n = 0;
    for (int i = 0; i < p->target; i++) {
        if (p->ch[i].pid > 0 && !p->ch[i].retiring) {
            retire(p, i); /* child_died forks its replacement */
            n++;
        }
    }
    log_event(LV_INFO, 0, "pool_restart", "children=%d", n);
    return n;
}
