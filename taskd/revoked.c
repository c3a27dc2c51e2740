/*
 * revoked.c - the set of revoked task ids. Celery keeps it in worker memory (and, optionally, in
 * a local file). taskd also appends each revoke to the durable stream taskd.revoked and reads the
 * stream back whenever it connects, so a revoke survives worker restarts and reaches workers that
 * start later, for the stream's retention (results.max_age). `taskctl revoke` appends too, so a
 * revoke sent while no worker runs is not lost.
 */
#include <stdio.h>
#include "log.h"
#include "metrics.h"
#include "publisher.h"
#include "revoked.h"
#include "stream.h"
#include "worker.h"

/* Celery keeps 50000 revoked ids (its LimitedSet); past that the oldest revoke is forgotten,
 * as Celery does, rather than the whole set (a flood of revokes must not un-revoke the rest). */
#define REVOKED_MAX 50000
/* Reading a long stream takes ~3 s per 100k records, oldest first; the newest revokes are read
 * last, so a cap that cut the read short lost exactly those. A minute covers ~2M records. */
#define LOAD_TIMEOUT_MS 60000

void revoked_add(struct worker *w, const char *id)
{
    w->revoked.max = REVOKED_MAX; /* supervisor.c sets the table up with a client's bound */
    int rc = task__replies_put(&w->revoked, id, "REVOKED", NULL);
    if (rc != 0)
        log_event(LV_WARN, rc, "revoked_add_failed", "task_id=%s", log_v(id));
}

bool revoked_has(struct worker *w, const char *id)
{
    return w->revoked.count > 0 && task__replies_find(&w->revoked, id) != NULL;
}

json_object *revoked_list(struct worker *w)
{
    json_object *list = json_object_new_array();
    for (size_t i = 0; i < w->revoked.nbuckets; i++)
        for (struct task__reply *e = w->revoked.buckets[i]; e != NULL; e = e->next)
            json_object_array_add(list, json_object_new_string(e->id));
    return list;
}

struct load {
    struct worker *w;
    unsigned rejected;
};

static void take(json_object *rec, void *ud)
{
    struct load *l = ud;
    const char *id = task__revoked_record_id(rec);
    if (id != NULL)
        revoked_add(l->w, id);
    else
        l->rejected++;
}

int revoked_load(struct worker *w)
{
    /* On CH_CONSUME, before its consumers: see results_declare() in consumer.c. */
    int kept = 0;
    int rc = task__stream_declare(w->conn, CH_CONSUME, TASK__REVOKED_STREAM,
                                  w->cfg->results_max_age_s, &kept);
    if (rc != 0)
        return rc;
    if (kept > 0)
        log_event(LV_WARN, 0, "stream_kept",
                  "streams=%s detail=\"declared before with other arguments; results.max_age "
                  "applies to it through a policy only\"",
                  TASK__REVOKED_STREAM);
    size_t before = w->revoked.count;
    double t0 = task__now_mono();
    struct load l = {.w = w};
    unsigned junk = 0;
    rc = task__stream_replay_counted(w->conn, CH_REVOKED, TASK__REVOKED_STREAM,
                                     task__now_wall() - w->cfg->results_max_age_s,
                                     LOAD_TIMEOUT_MS, take, &l, &junk);
    junk += l.rejected;
    if (junk > 0) {
        /* One line for the lot: a stream full of junk must not flood the log at every start. */
        log_event(LV_WARN, 0, "stream_records_rejected", "stream=%s records=%u",
                  TASK__REVOKED_STREAM, junk);
        metrics_stream_rejected(w->metrics, junk);
    }
    if (rc == TASK_ETIMEDOUT) {
        /* Serve anyway: a slow broker must not keep the worker down. */
        log_event(LV_WARN, rc, "revoked_load_incomplete", "stream=%s", TASK__REVOKED_STREAM);
        rc = 0;
    }
    if (rc == 0)
        log_event(LV_INFO, 0, "revoked_loaded", "ids=%zu new=%zu took_ms=%.0f", w->revoked.count,
                  w->revoked.count - before, (task__now_mono() - t0) * 1000);
    return rc;
}

void revoked_persist(struct worker *w, const char *id)
{
    revoked_add(w, id);
    if (w->conn == NULL)
        return;
    char ts[40];
    task__iso8601_format(task__now_wall(), ts, sizeof(ts));
    json_object *rec = json_object_new_object();
    json_object_object_add(rec, "task_id", json_object_new_string(id));
    json_object_object_add(rec, "revoked_at", json_object_new_string(ts));
    size_t len;
    const char *body = task__json_str(rec, &len);
    amqp_basic_properties_t p = task__record_props();
    int rc = pub_send(w, NULL, "", TASK__REVOKED_STREAM, &p, body, len);
    json_object_put(rec);
    if (rc != 0)
        log_event(LV_WARN, rc, "revoked_persist_failed", "task_id=%s", log_v(id));
}
