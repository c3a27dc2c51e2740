/*
 * fuzz_control.c - libFuzzer harness for what a worker does with one message on the
 * celery.pidbox fanout, which anyone with access to the vhost can publish to: the input is the
 * body, handed to control_on_delivery() of a worker whose pool, publisher and broker are stubbed
 * (tests/unit/stub_worker.c). Invariants: control_req_parse() and the handler agree (a refused
 * request is never answered, a reply goes only to a parsed routing key), and every reply is
 * JSON naming this worker. Built and run by tests/fuzz/run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "control_req.h"
#include "log.h"
#include "stub_worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HOST "celery@fuzz"

static void invariant(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct worker *w;
    if (w == NULL) {
        (void)log_set_level("error");
        w = stub_worker_new(HOST);
        invariant(w != NULL, "stub worker");
    }
    struct control_req req;
    enum control_bad why;
    int rc = control_req_parse(data, size, HOST, &req, &why);
    invariant((rc == 0) == (why == CONTROL_BAD_NONE), "parse result and reason agree");
    bool want_reply = rc == 0 && req.for_me && req.reply_rk != NULL;
    char rk[300] = "";
    if (want_reply)
        snprintf(rk, sizeof(rk), "%s", req.reply_rk);
    bool heartbeat = rc == 0 && strcmp(req.method, "heartbeat") == 0;
    control_req_free(&req);

    int before = stub_calls.replies;
    struct task__delivery d = {0};
    d.msg.body = (amqp_bytes_t){.len = size, .bytes = (void *)data};
    control_on_delivery(w, &d);
    int replies = stub_calls.replies - before;
    invariant(replies == (want_reply && !heartbeat ? 1 : 0), "a reply exactly when asked for");
    if (replies == 1) {
        invariant(strcmp(stub_calls.reply_rk, rk) == 0, "reply to the parsed routing key");
        json_object *body = json_tokener_parse(stub_calls.reply_body);
        /* Bodies longer than the recorder's buffer are cut: only whole ones are checked. */
        if (strlen(stub_calls.reply_body) < sizeof(stub_calls.reply_body) - 1) {
            invariant(body != NULL, "reply is JSON");
            invariant(json_object_object_get_ex(body, HOST, NULL), "reply names the worker");
        }
        json_object_put(body);
    }
    /* The revoked set is bounded; keep runs independent of each other. */
    if (w->revoked.count > 1000) {
        task__replies_free(&w->revoked);
        invariant(task__replies_init(&w->revoked) == 0, "revoked set");
    }
    return 0;
}
