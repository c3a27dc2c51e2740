/*
 * fuzz_metrics.c - libFuzzer harness for the /metrics request-head parser (taskd/metrics_http.c,
 * mhttp_parse_head()): anyone who can reach the port sends these bytes. The server parses the
 * head again each time more bytes arrive, so the harness does too, at split points taken from
 * the input, and checks that the verdicts agree with what the server then does.
 *
 * Input: SEL BYTES. SEL picks the head limit (4096, the server's, or 16..271 to reach 431 with
 * short inputs) and where the bytes are cut into arrivals.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "metrics_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void invariant(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_metrics: invariant failed: %s\n", what);
        abort();
    }
}

static int verdict(const uint8_t *p, size_t n, size_t max, bool *head)
{
    /* An exact-size copy: ASan catches a read one byte past what arrived. */
    char *copy = malloc(n ? n : 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, p, n);
    struct mhttp_req rq;
    int rc = mhttp_parse_head(copy, n, max, &rq);
    free(copy);
    invariant(rq.status == rc, "status returned and stored agree");
    invariant(rc == 0 || rc == 200 || rc == 400 || rc == 404 || rc == 405 || rc == 431,
              "a known status");
    invariant(rc != 0 || n < max, "a full buffer always gets an answer");
    invariant(!rq.head || rc == 200 || rc == 404, "HEAD only for a well-formed GET/HEAD line");
    if (rc == 200)
        invariant(memmem(p, n, "/metrics", 8) != NULL && memmem(p, n, "HTTP/1.", 7) != NULL,
                  "200 only for /metrics over HTTP/1.x");
    *head = rq.head;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++, size--;
    size_t max = (sel & 1) ? 16 + (sel >> 1) * 2u : 4096;
    if (size > max)
        size = max; /* the server never holds more than `max` bytes */
    /* The server stops at the first answer: the verdict on every shorter prefix is 0. */
    bool head;
    int final = verdict(data, size, max, &head);
    if (final < 0)
        return 0;
    size_t cut = size ? (size_t)(sel >> 3) % (size + 1) : 0;
    bool cut_head;
    int early = verdict(data, cut, max, &cut_head);
    /* Answered at the cut: the server reads no more, so more bytes must not change the answer
     * (a complete head, junk and a NUL are all decided by what came first). */
    if (early > 0)
        invariant(final == early && head == cut_head, "a verdict does not depend on later bytes");
    return 0;
}
