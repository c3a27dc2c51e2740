/*
 * test_delay_load.c - 10k tasks with countdown 60 s: they wait in the broker's delay cascade,
 * not in the worker. While they wait, the worker's unacked deliveries (its Prometheus gauge
 * taskd_prefetch_in_use) are 0 and its memory stays flat; when they come due, all 10k run,
 * none early. Also: countdowns of 1-5 s on a quorum task queue arrive within a second of due.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <task/client.h>
#include "conn.h"
#include "itest.h"

enum { N = 10000, SENDERS = 4 };
#define COUNTDOWN_S 60.0

static char queue[64], metrics_at[32];
static struct itest_worker worker;

struct buf {
    char data[1 << 16];
    size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct buf *b = ud;
    size_t k = size * n;
    if (b->len + k >= sizeof(b->data))
        k = sizeof(b->data) - 1 - b->len;
    memcpy(b->data + b->len, p, k);
    b->len += k;
    b->data[b->len] = '\0';
    return size * n;
}

/* The value of metric line `name ` in the worker's /metrics; fails the test if absent. */
static double metric(const char *name)
{
    static struct buf b;
    b.len = 0;
    char url[64];
    snprintf(url, sizeof(url), "http://%s/metrics", metrics_at);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 5L);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_cleanup(h);
    char key[80];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *at = strstr(b.data, key);
    if (at == NULL)
        fail_msg("no %s in /metrics", name);
    return strtod(at + strlen(key), NULL);
}

/* Resident KiB of the worker: the supervisor and its pool children. */
static long worker_rss_kb(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "ps -o rss= -p %d --ppid %d", (int)worker.pid, (int)worker.pid);
    FILE *p = popen(cmd, "r");
    long sum = 0, kb;
    while (p != NULL && fscanf(p, "%ld", &kb) == 1)
        sum += kb;
    if (p != NULL)
        pclose(p);
    return sum;
}

/* Ready messages in the delay cascade and in `q`. */
static long parked(const char *q, long *ready)
{
    task_strlist urls = {.v = (char *[]){(char *)itest_broker()}, .n = 1};
    struct task__conn_opts o = {.urls = &urls, .connect_timeout_s = 5, .name = "itest"};
    struct task__conn *cn;
    assert_int_equal(task__conn_open(&cn, &o, NULL), 0);
    assert_int_equal(task__conn_channel_open(cn, 1), 0);
    long sum = 0;
    for (int level = 0; level <= 28; level++) {
        char name[40];
        if (level < 28)
            snprintf(name, sizeof(name), "taskd.delay.%d", 100 + level);
        amqp_queue_declare_ok_t *ok = amqp_queue_declare(
            task__conn_amqp(cn), 1, amqp_cstring_bytes(level < 28 ? name : q), 1, 0, 0, 0,
            amqp_empty_table);
        long n = ok ? (long)ok->message_count : -1;
        if (level < 28)
            sum += n > 0 ? n : 0;
        else
            *ready = n;
    }
    task__conn_close(cn);
    return sum;
}

static task_id ids[N];
static double due[N]; /* itest_now() from which task i may run */
static task_client *clients[SENDERS];

/* Sender k sends tasks k, k + SENDERS, ...: a confirm round trip per send, so four in parallel
 * keep the run well inside the countdown. */
static void *sender(void *arg)
{
    int k = (int)(intptr_t)arg;
    for (int i = k; i < N; i += SENDERS) {
        json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_int(i));
        json_object_array_add(a, json_object_new_int(1));
        task_send_opts o = {.countdown_s = COUNTDOWN_S};
        due[i] = itest_now() + COUNTDOWN_S;
        int rc = task_send(clients[k], "test.add", a, NULL, &o, &ids[i]);
        json_object_put(a);
        if (rc != 0)
            return (void *)1;
    }
    return NULL;
}

static void ten_thousand_countdown_tasks_wait_in_the_broker(void **state)
{
    (void)state;
    for (int k = 0; k < SENDERS; k++)
        assert_non_null(clients[k] = itest_client(queue, NULL));
    long rss0 = worker_rss_kb();
    double t0 = itest_now();
    pthread_t th[SENDERS];
    for (int k = 0; k < SENDERS; k++)
        assert_int_equal(pthread_create(&th[k], NULL, sender, (void *)(intptr_t)k), 0);
    for (int k = 0; k < SENDERS; k++) {
        void *ret;
        assert_int_equal(pthread_join(th[k], &ret), 0);
        assert_null(ret);
    }
    double sent = itest_now() - t0;
    /* The worker moves each one into the cascade and acks it; then it holds nothing. */
    long cascade = 0, ready = -1;
    double in_use = -1;
    while (itest_now() - t0 < COUNTDOWN_S - 15) {
        cascade = parked(queue, &ready);
        in_use = metric("taskd_prefetch_in_use");
        if (ready == 0 && in_use == 0 && cascade >= N)
            break;
        usleep(250000);
    }
    long rss1 = worker_rss_kb();
    sleep(5); /* and it stays so while they wait */
    double in_use_later = metric("taskd_prefetch_in_use");
    long rss2 = worker_rss_kb();
    print_message("sent %d in %.1f s; in the cascade: %ld, ready: %ld, unacked in the worker: "
                  "%.0f then %.0f; worker RSS %ld -> %ld -> %ld KiB\n", N, sent, cascade, ready,
                  in_use, in_use_later, rss0, rss1, rss2);
    assert_true(sent < COUNTDOWN_S - 20); /* else the checks below race the due time */
    assert_int_equal(ready, 0);
    assert_true(cascade >= N);
    assert_true(in_use == 0 && in_use_later == 0);
#if defined(__SANITIZE_ADDRESS__)
    /* ASan keeps freed memory in its quarantine (up to 256 MB): RSS says nothing there. */
    print_message("RSS not checked under AddressSanitizer\n");
#else
    assert_true(rss2 - rss0 < 4096); /* 10k parked tasks cost the worker nothing */
#endif

    /* Poll every task's state until all are done: a task seen finished at time T although it
     * was due after T ran early. */
    int early = 0, done_n = 0, bad = 0;
    static bool fin[N];
    while (done_n < N && itest_now() - t0 < COUNTDOWN_S + sent + 60) {
        for (int i = 0; i < N; i++) {
            if (fin[i])
                continue;
            task_state st;
            json_object *res = NULL;
            assert_int_equal(task_client_poll(clients[i % SENDERS], ids[i].str, &st, &res), 0);
            if (task_state_is_final(st)) {
                fin[i] = true;
                done_n++;
                early += itest_now() < due[i]; /* seen done before it was due */
                bad += st != TASK_STATE_SUCCESS || json_object_get_int(res) != i + 1;
            }
            json_object_put(res);
        }
        usleep(200000);
    }
    double done = itest_now() - t0;
    print_message("%d of %d done %.1f s after the first send (due from %.0f s); early %d, wrong "
                  "%d\n", done_n, N, done, COUNTDOWN_S, early, bad);
    assert_int_equal(done_n, N);
    assert_int_equal(early, 0);
    assert_int_equal(bad, 0);
    assert_true(done < COUNTDOWN_S + sent + 30);
    for (int k = 0; k < SENDERS; k++)
        task_client_free(clients[k]);
}

/* The cascade is the same for a quorum task queue: it dead-letters back into it on time. */
static void countdown_works_on_a_quorum_queue(void **state)
{
    (void)state;
    char q[80], qargs[160], setting[200];
    snprintf(q, sizeof(q), "%s_quorum", queue);
    snprintf(qargs, sizeof(qargs), "%s x-queue-type=quorum", q);
    snprintf(setting, sizeof(setting), "TASKD_QUEUES_ARGUMENTS=%s", qargs);
    const char *env[] = {setting, NULL};
    struct itest_worker qw;
    assert_int_equal(itest_worker_start(&qw, q, env, NULL), 0);
    char opt[200];
    snprintf(opt, sizeof(opt), "queues.arguments=%s", qargs);
    task_client *c = itest_client(q, (const char *[]){opt, NULL});
    assert_non_null(c);
    enum { M = 5 };
    task_id tids[M];
    double due_at[M];
    for (int i = 0; i < M; i++) {
        json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_int(i));
        json_object_array_add(a, json_object_new_int(100));
        task_send_opts o = {.countdown_s = 1 + i}; /* 1 .. 5 s */
        due_at[i] = itest_now() + o.countdown_s;
        assert_int_equal(task_send(c, "test.add", a, NULL, &o, &tids[i]), 0);
        json_object_put(a);
    }
    for (int i = 0; i < M; i++) {
        task_state st;
        json_object *res = NULL;
        assert_int_equal(task_wait(c, tids[i].str, 15000, &st, &res), 0);
        double late = itest_now() - due_at[i];
        print_message("quorum queue, countdown %d s: arrived %+.2f s from due\n", 1 + i, late);
        assert_int_equal(st, TASK_STATE_SUCCESS);
        assert_int_equal(json_object_get_int(res), i + 100);
        json_object_put(res);
        assert_true(late >= 0 && late < 1.0 + 0.3); /* +1 s, plus a little for the poll */
    }
    assert_true(itest_file_has(qw.log, "event=task_delayed"));
    task_client_free(c);
    assert_int_equal(itest_worker_stop(&qw, SIGTERM, 20), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(queue, sizeof(queue), "t_delayload_%d", (int)getpid());
    snprintf(metrics_at, sizeof(metrics_at), "127.0.0.1:%d", itest_free_port());
    const char *args[] = {"-c", "1", "--metrics", metrics_at, NULL};
    return itest_worker_start(&worker, queue, NULL, args) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return itest_worker_stop(&worker, SIGTERM, 30) == 0 ? 0 : -1;
}

int main(void)
{
    itest_broker();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(countdown_works_on_a_quorum_queue),
        cmocka_unit_test(ten_thousand_countdown_tasks_wait_in_the_broker),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
