/*
 * lookup.c - task_lookup() and task_watch(): find a task's state from any process by reading the
 * durable results stream that every worker appends each state message to (one of 64, picked
 * by the id: stream.h).
 *
 * The reading is stream_reader.c's (consumer, window, acks, cancel, the end-of-data marker);
 * what is a lookup's is here: the id's stream, the records of the id, the stop at its first
 * final state (SUCCESS, FAILURE, REVOKED), the windows back in time for an id with no time in
 * it, and where the last lookup of an id stopped. A lookup publishes its marker after it starts
 * reading: everything confirmed before the lookup began lies before it. A stream message holds
 * one state record or, as taskd writes them, a JSON array of records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "task_limits.h"
#include "client_impl.h"
#include "stream.h"
#include "stream_reader.h"

/* One lookup's or watch's read of its id's results stream. */
struct lookup_read {
    const char *id;
    char stream[32];        /* the id's results stream */
    char marker[37];        /* "" for task_watch() */
    bool marker_seen;
    bool final_seen;        /* a final state of the id: nothing later can change the answer */
};

/* Where a lookup that found no final state stopped, so that the next lookup of the id in this
 * client reads on from there instead of from the id's own time: a task polled while it waits in
 * a queue or runs for minutes would otherwise cost a read of all those minutes each time. */
#define RESUME_SLOTS 64
struct resume {
    char id[64];            /* "" for a free slot */
    double until;           /* wall clock (ours) just before that lookup's marker was published */
    char *status;           /* the state found then (malloc'd); NULL for PENDING */
    json_object *result;    /* owned */
};

/* What lookups keep in a client from one to the next, made by its first lookup. */
struct task__lookups {
    struct task__stream_reader reader;  /* on CH_STREAM, kept open between reads */
    unsigned conn_gen;                  /* the client's connection the reader's channel is on */
    struct lookup_read *read;           /* the read in progress; NULL: none */
    struct resume resume[RESUME_SLOTS];
    unsigned resume_next;
};

/* Messages in flight on a stream read. A lookup starts small, since most stop after a few
 * messages (at the id's final state, near its start offset), and the broker reads a whole
 * window of chunks before it sends the first (128 chunks took 20-100 ms here). A read that goes
 * on is widened, as a small window keeps the broker from streaming (a read of 1M records did
 * not finish in 30 s at 256). */
static const struct task__stream_window WINDOW = {.start = 16, .wide = 2000, .after = 512};

struct take {
    struct task__replies *replies;
    const char *id;
    bool *final_seen;
    unsigned *rejected;
};

/* Any client or worker can append to a results stream, so a record (an object, as
 * task__stream_body() hands it over) is checked field by field: one that does not fit is
 * skipped, never trusted (a null task_id once crashed lookups). */
static void take_record(json_object *rec, void *ud)
{
    struct take *t = ud;
    const char *tid = task__json_get_str(rec, "task_id");
    const char *status = task__json_get_str(rec, "status");
    if (tid == NULL || status == NULL) {
        ++*t->rejected;
        return;
    }
    if (strcmp(tid, t->id) != 0)
        return;
    json_object *result = NULL;
    json_object_object_get_ex(rec, "result", &result);
    (void)task__replies_put(t->replies, t->id, status, json_object_get(result));
    *t->final_seen |= task_state_is_final(task_state_from_name(status));
}

int task__results_body(const void *body, size_t len, const char *id, const char *marker,
                       struct task__replies *replies, bool *marker_seen, bool *final_seen,
                       unsigned *rejected)
{
    /* Workers write their records in batches, oldest first; the walk is the revoked
     * stream's. */
    struct take t = {replies, id, final_seen, rejected};
    return task__stream_body(body, len, marker != NULL && marker[0] != '\0' ? marker : NULL,
                             take_record, &t, marker_seen, rejected);
}

/* A delivery on CH_STREAM, from client.c's dispatch. */
static void on_stream(task_client *c, const amqp_frame_t *f)
{
    struct task__lookups *l = c->lookups;
    struct task__delivery d;
    if (task__conn_read_delivery(c->conn, f, &d) != 0)
        return;
    struct lookup_read *s = l->read;
    enum task__stream_take t = task__stream_reader_take(&l->reader, &d);
    if (t == TASK__STREAM_END && s != NULL)
        s->marker_seen = true; /* the window's end: what follows was read already */
    /* Only the read's own: an earlier window's consumer streams on past its end until the
     * broker sees its cancel, up to this read's marker. */
    if (t != TASK__STREAM_RECORD || s == NULL)
        goto out;
    /* Most messages hold neither the id nor the marker: skip them without parsing, so a
     * lookup costs about a byte scan per record instead of a JSON parse. */
    const void *raw = d.msg.body.bytes;
    size_t len = d.msg.body.len;
    if (raw == NULL || len == 0) /* an empty message: memmem() must not see NULL */
        goto out;
    if (memmem(raw, len, s->id, strlen(s->id)) == NULL &&
        (s->marker[0] == '\0' || memmem(raw, len, s->marker, strlen(s->marker)) == NULL))
        goto out;
    /* Junk in the stream is skipped and the read goes on: the answer is in the records that
     * fit. */
    unsigned rejected = 0;
    (void)task__results_body(raw, len, s->id, s->marker, &c->replies, &s->marker_seen,
                             &s->final_seen, &rejected);
    /* A lookup stops at its marker or the id's first final state; a watch reads on, its wait
     * decides. */
    if (s->marker[0] != '\0')
        l->reader.done = s->marker_seen || s->final_seen;
out:
    task__delivery_free(&d);
}

/* Drain one frame rabbitmq-c has queued, through the client's dispatch. */
static int pump_queued(void *ud)
{
    return task__client_pump(ud, 0);
}

/* A lookup starts this much before its id was made: the clocks of the host that made the id and
 * the one looking it up may differ by up to this much. */
#define SLACK_S 0.25

/* The offset `back_s` seconds back from the broker's now, or the first record when <= 0. */
static amqp_field_value_t window_offset(double back_s, char buf[32])
{
    return back_s <= 0 ? task__stream_from_first() : task__stream_from_ago(back_s + SLACK_S, buf);
}

/* The stream's first offset to read for `id`: "first", or an interval back from the broker's
 * clock ("Ns"), which unlike a timestamp does not need the broker's clock to agree with ours;
 * either has whole seconds only, so a read starts SLACK_S to SLACK_S + 1 s early. */
static amqp_field_value_t start_offset(const char *id, double since_s, char buf[32])
{
    uint64_t ms;
    if (since_s <= 0 && task__uuid7_time_ms(id, &ms) == 0)
        since_s = (double)ms / 1000.0;
    return since_s <= 0 ? window_offset(0, buf) : window_offset(task__now_wall() - since_s, buf);
}

/* The reader's connection errors become the client's; TASK_ENOTFOUND (no worker has ever
 * published a result to the stream) is an answer, not an error. */
static int from_reader(task_client *c, int rc)
{
    return rc == TASK_ENOTFOUND || rc > 0 ? rc : task__client_from_conn(c, rc);
}

static void free_lookups(struct task__lookups *l);

/* The client's lookup state, made by its first lookup or watch. */
static struct task__lookups *lookups_of(task_client *c)
{
    if (c->lookups == NULL && (c->lookups = calloc(1, sizeof(*c->lookups))) != NULL) {
        task__stream_reader_init(&c->lookups->reader, c->conn, CH_STREAM);
        c->lookups->conn_gen = c->conn_gen;
        c->on_stream = on_stream;
        c->free_lookups = free_lookups;
    }
    return c->lookups;
}

static int stream_open(task_client *c, struct task__lookups *l, struct lookup_read *s,
                       amqp_field_value_t from)
{
    /* A new connection since the last read: the reader's channel went with the old one. */
    if (l->conn_gen != c->conn_gen || l->reader.conn != c->conn) {
        task__stream_reader_reset(&l->reader, c->conn);
        l->conn_gen = c->conn_gen;
    }
    task__results_name(task__results_partition(s->id), s->stream);
    return from_reader(c, task__stream_reader_start(&l->reader, s->stream, from, &WINDOW));
}

/* End a read, keeping the channel for the next (after a failure, closing it). */
static void stream_close(task_client *c, struct task__lookups *l, int rc)
{
    l->read = NULL;
    task__stream_reader_end(&l->reader, rc, pump_queued, c);
}

static int finish(task_client *c, const char *id, task_state *state, json_object **result)
{
    struct task__reply *r = task__replies_find(&c->replies, id);
    if (state != NULL)
        *state = r ? r->state : TASK_STATE_PENDING;
    if (result != NULL)
        *result = r ? json_object_get(r->result) : NULL;
    if (r != NULL)
        task__replies_remove(&c->replies, id);
    return 0;
}

static void resume_clear(struct resume *r)
{
    r->id[0] = '\0';
    free(r->status);
    r->status = NULL;
    json_object_put(r->result);
    r->result = NULL;
}

static void free_lookups(struct task__lookups *l)
{
    for (int i = 0; i < RESUME_SLOTS; i++)
        resume_clear(&l->resume[i]);
    task__stream_reader_free(&l->reader);
    free(l);
}

static struct resume *resume_find(struct task__lookups *l, const char *id)
{
    for (int i = 0; i < RESUME_SLOTS; i++)
        if (strcmp(l->resume[i].id, id) == 0)
            return &l->resume[i];
    return NULL;
}

/* After a read up to its marker: remember where it stopped and what it found, unless the id
 * reached a final state (nothing later can change it) or is too long to keep. */
static void resume_note(task_client *c, struct task__lookups *l, const char *id, double until)
{
    struct resume *r = resume_find(l, id);
    struct task__reply *rep = task__replies_find(&c->replies, id);
    bool final = rep != NULL && task_state_is_final(rep->state);
    if (final || strlen(id) >= sizeof(r->id)) {
        if (r != NULL)
            resume_clear(r);
        return;
    }
    if (r == NULL)
        r = &l->resume[l->resume_next++ % RESUME_SLOTS];
    resume_clear(r);
    snprintf(r->id, sizeof(r->id), "%s", id);
    r->until = until;
    r->status = rep != NULL ? strdup(rep->status) : NULL;
    r->result = rep != NULL ? json_object_get(rep->result) : NULL;
}

/* Windows, in seconds back from now, that a lookup of an id with no time in it (a Celery uuid4)
 * reads one after the other, newest first, until one holds a record of the id: a status poll
 * for a task sent a minute ago then reads a minute or two of its stream, not the retention
 * (1M stored results took 4-39 s to read whole). A wider read stops where the narrower one
 * began. 0: from the stream's first record, the retention's bound. */
static const double WINDOWS_S[] = {5, 60, 240, 900, 3600, 6 * 3600, 0};
#define N_WINDOWS (sizeof(WINDOWS_S) / sizeof(WINDOWS_S[0]))

/* Read on until the marker (or the window's end) or the id's first final state: a task ends
 * once, so a lookup need not read the records written after it. */
static int read_to_end(task_client *c, struct task__lookups *l, double deadline)
{
    int rc = 0;
    while (rc == 0 && !l->reader.done) {
        int left = task__remaining_ms(deadline);
        if (left == 0)
            return task__client_fail(c, TASK_ETIMEDOUT, "lookup %s: results stream did not "
                                     "answer", l->read->id);
        rc = task__client_pump(c, left);
        rc = rc > 0 ? 0 : rc;
        if (rc == 0 && l->reader.widen)
            rc = from_reader(c, task__stream_reader_widen(&l->reader, pump_queued, c));
    }
    return rc;
}

/* The next wider window back_s seconds back, up to where the last read began. 1: there is
 * nothing before it (the last read got nothing), 0 or an error code. */
static int next_window(task_client *c, struct task__lookups *l, struct lookup_read *s,
                       double back_s)
{
    char buf[32];
    l->read = NULL;
    s->marker_seen = false;
    int rc = task__stream_reader_before(&l->reader, window_offset(back_s, buf), pump_queued, c);
    l->read = s;
    return from_reader(c, rc);
}

int task_lookup(task_client *c, const char *id, double since_s, task_state *state,
                json_object **result)
{
    if (c == NULL || id == NULL)
        return TASK_EINVAL;
    task__error_clear(&c->err);
    struct task__lookups *l = lookups_of(c);
    if (l == NULL)
        return task__client_fail(c, TASK_ENOMEM, "lookup");
    struct lookup_read s = {.id = id};
    task__uuid4(s.marker);
    task__replies_remove(&c->replies, id);
    /* An id this client looked up before without a final state: read on from there. */
    struct resume *from = since_s <= 0 ? resume_find(l, id) : NULL;
    if (from != NULL && from->status != NULL)
        (void)task__replies_put(&c->replies, id, from->status, json_object_get(from->result));
    if (from != NULL)
        since_s = from->until;
    uint64_t ms;
    bool timeless = since_s <= 0 && task__uuid7_time_ms(id, &ms) != 0;
    char buf[32];
    int rc = task__client_ensure_conn(c);
    if (rc != 0)
        return rc;
    rc = stream_open(c, l, &s, timeless ? window_offset(WINDOWS_S[0], buf)
                                        : start_offset(id, since_s, buf));
    if (rc == TASK_ENOTFOUND)
        return finish(c, id, state, result);
    double marked = task__now_wall();
    if (rc == 0)
        rc = from_reader(c, task__stream_publish_marker(c->conn, CH, s.stream, s.marker));
    l->read = &s;
    double deadline = task__now_mono() + c->send_timeout_s;
    if (rc == 0)
        rc = read_to_end(c, l, deadline);
    /* Records of one id lie in time order: if a window holds any, it holds the latest. */
    for (size_t w = 1; timeless && rc == 0 && w < N_WINDOWS &&
                       task__replies_find(&c->replies, id) == NULL; w++) {
        rc = next_window(c, l, &s, WINDOWS_S[w]);
        if (rc == 0)
            rc = read_to_end(c, l, deadline);
    }
    rc = rc > 0 ? 0 : rc;
    stream_close(c, l, rc);
    if (rc == 0)
        resume_note(c, l, id, marked);
    return rc != 0 ? rc : finish(c, id, state, result);
}

/* A watch of an id whose results stream is not there yet tries again to read it after this
 * long, doubling up to WATCH_RETRY_MAX_S. A worker declares results streams 1-63 after it is
 * ready, without waiting, and a fresh broker took 0.6 s (idle) to 2-6 s (loaded) to create
 * them: a `taskctl wait` started right after the send found no stream and, before this, waited
 * out its timeout (long_jobs scenario A). A stream that appears late is read from its start,
 * so the retry costs latency, never a state. */
#define WATCH_RETRY_S 0.25
#define WATCH_RETRY_MAX_S 5.0

int task_watch(task_client *c, const char *id, double since_s, int timeout_ms,
               task_state *state, json_object **result, task_state_cb cb, void *userdata)
{
    if (c == NULL || id == NULL)
        return TASK_EINVAL;
    task__error_clear(&c->err);
    struct task__lookups *l = lookups_of(c);
    if (l == NULL)
        return task__client_fail(c, TASK_ENOMEM, "watch");
    struct lookup_read s = {.id = id};
    task__replies_remove(&c->replies, id);
    struct task__wait w = {.id = id, .timeout_ms = timeout_ms, .state = state,
                           .result = result, .cb = cb, .userdata = userdata,
                           .deadline = task__wait_deadline(timeout_ms)};
    int rc = task__client_ensure_conn(c);
    if (rc != 0)
        return rc;
    int64_t last = -1; /* the offset of the last record read, over reopenings */
    double retry_s = WATCH_RETRY_S;
    l->read = &s;
    for (;;) {
        char buf[32];
        /* A reopening (the stream appeared, or a new connection) reads on after the last
         * record read, or from the id's time again: nothing in between is skipped. */
        rc = stream_open(c, l, &s, last >= 0 ? task__stream_from_offset(last + 1)
                                             : start_offset(id, since_s, buf));
        bool reading = rc == 0;
        if (rc == TASK_ENOTFOUND)
            rc = 0; /* no stream yet: a worker creates it; try again in a while */
        if (rc != 0)
            break;
        rc = task__client_wait(c, &w, reading ? -1 : task__now_mono() + retry_s);
        if (rc <= 0)
            break;
        if (l->reader.offset >= 0)
            last = l->reader.offset;
        if (!reading)
            retry_s = retry_s * 2 < WATCH_RETRY_MAX_S ? retry_s * 2 : WATCH_RETRY_MAX_S;
    }
    stream_close(c, l, rc);
    return rc;
}
