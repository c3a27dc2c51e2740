/*
 * lookup.c - task_lookup() latency against the size of the results stream.
 *
 *   lookup SIZES TAIL LOOKUPS [RATE [UUID4_TAIL]]   e.g. lookup 10000,1000000 42000 200 2000 20000
 *
 * Grows the results streams (taskd.results.0-15, each record a message of its own, as workers
 * write them: append() below) to a total of each size in SIZES. At each size, after a 4 s
 * pause, it appends TAIL "recent" records (the last hour's worth at the stream's rate: 1M
 * records a day is about 42k an hour), RATE records a second (0: as fast as it can; 1M a day
 * is 12/s), and times LOOKUPS task_lookup() calls of ids picked evenly from that tail (UUIDv7 ids: the lookup starts
 * reading at the id's time), plus a few lookups of an id that is not in the stream with no
 * time hint (a Celery uuid4: the whole stream is read). The pause keeps the bulk written at
 * bench speed out of the 2 s slack before the tail. A lookup reads from its id's time (less
 * that slack) to the id's final state, so its cost follows the rate the stream is written at,
 * not the stream's size: RATE 0 packs the tail into about a second, the worst case. One JSON
 * object per size on stdout.
 * With UUID4_TAIL, it then appends that many records of uuid4 ids (a stock Celery client's)
 * at RATE (keep it within the last minute), and times LOOKUPS lookups of them ("uuid4_p99_ms"):
 * with no time in the id, task_lookup() reads windows back from now, widening until one holds
 * the id.
 * Records carry a persistent delivery mode and are confirmed, like a worker's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <task/client.h>
#include "conn.h"
#include "internal.h"
#include "stream.h"

#define CH 1

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "lookup: %s: %s\n", what, detail);
    exit(1);
}

/* A record shaped like a worker's SUCCESS record (about 230 bytes). */
static int record(char *buf, size_t size, const char *id)
{
    return snprintf(buf, size,
                    "[{\"task_id\": \"%s\", \"status\": \"SUCCESS\", \"result\": 3, "
                    "\"traceback\": null, \"children\": [], \"date_done\": "
                    "\"2026-12-01T12:00:00.000000\", \"hostname\": \"taskd1@bench\", "
                    "\"delivery_count\": 1}]",
                    id);
}

/* Waits for the broker's confirm of sequence number `last`: a multiple ack, or the single ack
 * of `last` itself (a stream confirms its own messages in order). */
static void wait_confirms(struct task__conn *cn, uint64_t last)
{
    static uint64_t confirmed; /* the highest sequence number known confirmed */
    while (confirmed < last) {
        amqp_frame_t f;
        int rc = task__conn_next_frame(cn, &f, 30000, NULL);
        if (rc < 0)
            die("confirm", task__conn_errmsg(cn));
        if (rc == 0) {
            char why[96];
            snprintf(why, sizeof(why), "none for 30 s (waiting for %llu, confirmed %llu)",
                     (unsigned long long)last, (unsigned long long)confirmed);
            die("confirm", why);
        }
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        if (f.payload.method.id == AMQP_BASIC_NACK_METHOD)
            die("confirm", "the broker nacked a record");
        if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            const amqp_basic_ack_t *a = f.payload.method.decoded;
            if (a->delivery_tag == last || (a->multiple && a->delivery_tag > confirmed))
                confirmed = a->delivery_tag > confirmed ? a->delivery_tag : confirmed;
        }
    }
}

static void publish(struct task__conn *cn, const char *id, uint64_t *seq)
{
    amqp_basic_properties_t p = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG,
        .content_type = amqp_cstring_bytes("application/json"), .delivery_mode = 2};
    char body[512], name[32];
    int len = record(body, sizeof(body), id);
    if (task__conn_publish(cn, CH, "", task__results_name(task__results_partition(id), name), &p,
                           body, (size_t)len, seq) != 0)
        die("publish", task__conn_errmsg(cn));
}

/*
 * Appends n records the way workers write them at a few thousand tasks a second: a loop turn
 * holds one or two records, which seldom share a stream, so each record is a message of its
 * own in its id's stream (a worker at 2.5k tasks/s wrote 1.4 records a message before the
 * streams were split). A stream gets no second message before the first is confirmed, so each
 * message is a chunk of its own too, as a worker's are at that rate: the broker's index holds
 * one entry per chunk, and it reads a chunk at a time. RATE records a second, or (0) in rounds
 * of one message per stream. ids[] (may be NULL) gets the ids.
 */
static void append(struct task__conn *cn, long n, char (*ids)[37], double rate, bool uuid4)
{
    double t0 = task__now_mono();
    bool used[TASK__RESULTS_PARTITIONS] = {false};
    uint64_t last = 0;
    for (long i = 0; i < n;) {
        char id[37];
        if (uuid4)
            task__uuid4(id);
        else
            task__uuid7(id);
        unsigned part = task__results_partition(id);
        if (used[part] && rate <= 0)
            continue; /* the round has this stream: draw another id */
        if (used[part]) {
            wait_confirms(cn, last);
            memset(used, 0, sizeof(used));
        }
        used[part] = true;
        if (ids != NULL)
            memcpy(ids[i], id, 37);
        publish(cn, id, &last);
        i++;
        if (rate <= 0 && i % TASK__RESULTS_PARTITIONS == 0) {
            wait_confirms(cn, last);
            memset(used, 0, sizeof(used));
        }
        double ahead = rate > 0 ? t0 + (double)i / rate - task__now_mono() : 0;
        if (ahead > 0)
            usleep((useconds_t)(ahead * 1e6));
    }
    wait_confirms(cn, last);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double time_lookup(task_client *c, const char *id, task_state want)
{
    task_state st;
    json_object *res = NULL;
    double t0 = task__now_mono();
    if (task_lookup(c, id, 0, &st, &res) != 0)
        die("task_lookup", task_client_errmsg(c));
    double ms = (task__now_mono() - t0) * 1000;
    json_object_put(res);
    if (st != want)
        die("task_lookup", "wrong state");
    return ms;
}

/* Time nlook lookups of ids picked evenly from ids[0..n) into ms[] (sorted). */
static void percentiles(task_client *c, char (*ids)[37], long n, double *ms, int nlook,
                        double *p50, double *p99)
{
    for (int i = 0; i < nlook; i++)
        ms[i] = time_lookup(c, ids[(long)i * (n - 1) / (nlook > 1 ? nlook - 1 : 1)],
                            TASK_STATE_SUCCESS);
    qsort(ms, (size_t)nlook, sizeof(double), cmp);
    int k = (nlook * 99) / 100;
    *p50 = ms[nlook / 2];
    *p99 = ms[k < nlook ? k : nlook - 1];
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6)
        die("usage", "lookup SIZES TAIL LOOKUPS [RATE [UUID4_TAIL]]");
    double rate = argc >= 5 ? strtod(argv[4], NULL) : 0;
    long tail4 = argc == 6 ? strtol(argv[5], NULL, 10) : 0;
    long tail = strtol(argv[2], NULL, 10);
    int nlook = (int)strtol(argv[3], NULL, 10);
    const char *url = getenv("TASKD_BROKER_URL");
    if (url == NULL || tail <= 0 || nlook <= 0)
        die("usage", "needs TASKD_BROKER_URL, TAIL > 0, LOOKUPS > 0");
    char first[512];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(url, ","), url);
    task_strlist urls = {.v = (char *[]){first}, .n = 1};
    struct task__conn_opts o = {.urls = &urls, .connect_timeout_s = 5, .name = "bench lookup"};
    struct task__conn *cn;
    task_error err = {0};
    if (task__conn_open(&cn, &o, &err) != 0)
        die("connect", err.msg);
    int kept = 0;
    bool rest = false;
    if (task__conn_channel_open(cn, CH) || task__results_declare(cn, CH, 86400, &kept, &rest) ||
        (rest && task__results_declare_rest(cn, CH, 86400)) || task__conn_confirm_select(cn, CH))
        die("setup", task__conn_errmsg(cn));
    task_config *cfg = task_config_new();
    if (task_config_set(cfg, "broker.urls", first, "bench", &err) != 0 ||
        task_config_set(cfg, "client.send_timeout", "120", "bench", &err) != 0)
        die("config", err.msg);
    task_client *c = task_client_new(cfg, &err);
    if (c == NULL)
        die("client", err.msg);

    char (*ids)[37] = malloc((size_t)(tail > tail4 ? tail : tail4) * 37);
    double *ms = malloc((size_t)nlook * sizeof(double));
    long size = 0;
    for (char *s = argv[1]; *s != '\0';) {
        long want = strtol(s, &s, 10);
        s += *s == ',';
        if (want > size + tail)
            append(cn, want - size - tail, NULL, 0, false);
        sleep(4);
        append(cn, tail, ids, rate, false);
        size = want > size + tail ? want : size + tail;
        double p50, p99;
        percentiles(c, ids, tail, ms, nlook, &p50, &p99);
        double ms0 = ms[0], msmax = ms[nlook - 1];
        /* An id with no time in it: read from the stream's first record (slow on a big stream:
         * the broker hands out some thousands of messages a second; -1 if it timed out). */
        char unknown[37];
        task__uuid4(unknown);
        task_state st;
        double t0 = task__now_mono(), full = -1;
        if (task_lookup(c, unknown, 0, &st, NULL) == 0 && st == TASK_STATE_PENDING)
            full = (task__now_mono() - t0) * 1000;
        double p50_4 = -1, p99_4 = -1;
        if (tail4 > 0) {
            append(cn, tail4, ids, rate, true);
            size += tail4;
            percentiles(c, ids, tail4, ms, nlook, &p50_4, &p99_4);
        }
        printf("{\"stream_records\": %ld, \"tail_records\": %ld, \"tail_rate\": %.0f, "
               "\"lookups\": %d, \"min_ms\": %.2f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, "
               "\"max_ms\": %.2f, \"uuid4_full_scan_ms\": %.1f, \"uuid4_tail_records\": %ld, "
               "\"uuid4_p50_ms\": %.2f, \"uuid4_p99_ms\": %.2f}\n",
               size, tail, rate, nlook, ms0, p50, p99, msmax, full, tail4, p50_4, p99_4);
        fflush(stdout);
    }
    free(ids);
    free(ms);
    task_client_free(c);
    task_config_free(cfg);
    task__conn_close(cn);
    return 0;
}
