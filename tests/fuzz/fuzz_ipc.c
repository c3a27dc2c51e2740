/*
 * fuzz_ipc.c - libFuzzer harness for the supervisor <-> child frames: taskd/ipc.c's framing
 * (ipc_next over a receive buffer) and taskd/ipc_frame.c's validation of each frame, both the
 * supervisor's reading (ipc_up_read) and a child's (ipc_down_read). A child runs task code, so
 * what it writes is not to be trusted more than the code it runs.
 *
 * Input: SEL BYTES. SEL bit 0 set: BYTES is the raw stream (4-byte big-endian lengths and
 * payloads, as on the socket); clear: BYTES is split at NUL bytes into frame payloads that the
 * harness frames correctly, so the fuzzer reaches the JSON and the field checks at once.
 */
#include <arpa/inet.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <task/task.h>
#include "ipc.h"
#include "ipc_frame.h"
#include "task_limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void invariant(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_ipc: invariant failed: %s\n", what);
        abort();
    }
}

static void check_frame(json_object *o)
{
    invariant(ipc_json_depth(o, TASK__IPC_MAX_DEPTH + 1) <= TASK__IPC_MAX_DEPTH,
              "a frame that parsed is within the IPC depth");
    char why[256];
    struct ipc_up u;
    why[0] = '\0';
    if (ipc_up_read(o, &u, why, sizeof(why)) == 0) {
        invariant(u.jid > 0, "up: jid > 0");
        invariant(u.kind == IPC_UP_DONE || u.kind == IPC_UP_PROGRESS, "up: kind");
        if (u.kind == IPC_UP_DONE) {
            invariant(u.exc_type != NULL && u.exc_message != NULL, "up: strings set");
            invariant(isfinite(u.retry_in_s) && isfinite(u.runtime_s), "up: finite numbers");
            invariant(u.runtime_s >= 0 && u.rss_kb >= -1, "up: ranges");
            /* What the runner does with a result: serialise it. */
            if (u.result != NULL)
                invariant(json_object_to_json_string(u.result) != NULL, "result serialises");
        }
    } else {
        invariant(why[0] != '\0' && strchr(why, '\n') == NULL, "up: one-line reason");
    }
    struct ipc_down d;
    why[0] = '\0';
    if (ipc_down_read(o, &d, why, sizeof(why)) == 0) {
        invariant(d.jid > 0, "down: jid > 0");
        if (d.kind == IPC_DOWN_JOB) {
            invariant(d.task != NULL && d.task[0] != '\0', "down: task");
            invariant(d.id != NULL && d.id[0] != '\0', "down: id");
            invariant(json_object_is_type(d.args, json_type_array), "down: args");
            invariant(json_object_is_type(d.kwargs, json_type_object), "down: kwargs");
            invariant(d.retries >= 0 && d.soft_s >= 0 && isfinite(d.soft_s), "down: ranges");
        }
    } else {
        invariant(why[0] != '\0' && strchr(why, '\n') == NULL, "down: one-line reason");
    }
}

static void append(struct ipc_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->len + n;
        char *q = realloc(b->p, cap ? cap : 1);
        if (q == NULL)
            abort();
        b->p = q;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++, size--;
    struct ipc_buf b = {0};
    if (sel & 1) {
        append(&b, data, size);
    } else {
        const uint8_t *p = data, *end = data + size;
        while (p <= end) {
            const uint8_t *z = memchr(p, 0, (size_t)(end - p));
            size_t n = z ? (size_t)(z - p) : (size_t)(end - p);
            uint32_t hdr = htonl((uint32_t)n);
            append(&b, &hdr, 4);
            append(&b, p, n);
            if (z == NULL)
                break;
            p = z + 1;
        }
    }
    size_t before = b.len;
    int bad = 0;
    json_object *o;
    while ((o = ipc_next(&b, &bad)) != NULL) {
        invariant(bad == 0, "a frame and bad together");
        invariant(b.len < before, "each frame consumes bytes");
        before = b.len;
        check_frame(o);
        json_object_put(o);
    }
    /* Left over: a partial frame (wait for more), or bad (the peer is broken). */
    if (!bad && b.len >= 4) {
        uint32_t n;
        memcpy(&n, b.p, 4);
        n = ntohl(n);
        invariant(n <= IPC_MAX_FRAME && b.len < 4 + (size_t)n, "only an incomplete frame waits");
    }
    ipc_buf_free(&b);
    return 0;
}
