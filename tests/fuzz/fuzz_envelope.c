/*
 * fuzz_envelope.c - libFuzzer harness for the signed-envelope parser of Celery's `auth`
 * serializer (libtask/src/envelope.c): what taskd reads from an application/data task message,
 * and libtask from a signed result, before any signature is checked.
 *
 * Input: SEL DATA. SEL bit 0 set: DATA is the decoded envelope, base64-encoded here (so the
 * fuzzer works on the fields rather than on base64); clear: DATA is the message body as sent.
 * A signer "s N" (N decimal) is trusted with a signature of N % 600 bytes; others are not.
 * A parsed envelope must account for every byte, and building it again from its fields must
 * give the same bytes. A refused one must say why. Any broken invariant aborts.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void invariant(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_envelope: invariant failed: %s\n", what);
        abort();
    }
}

static size_t siglen(const char *signer, void *ud)
{
    (void)ud;
    if (strncmp(signer, "s ", 2) != 0 || signer[2] == '\0' || strlen(signer) > 8)
        return 0;
    for (const char *p = signer + 2; *p != '\0'; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return (size_t)atol(signer + 2) % 600;
}

static bool within(const struct task__envelope *e, const void *p, size_t n)
{
    const unsigned char *c = p;
    return c >= e->raw && c + n <= e->raw + e->raw_len;
}

static void check_parsed(const struct task__envelope *e)
{
    size_t sl = strlen(e->signer);
    invariant(sl > 0 && e->sig_len == siglen(e->signer, NULL), "signer and signature length");
    invariant(within(e, e->sig, e->sig_len) && within(e, e->content_type, e->ct_len) &&
                  within(e, e->content_encoding, e->ce_len) && within(e, e->body, e->body_len),
              "fields inside the decoded bytes");
    invariant(sl + e->sig_len + e->ct_len + e->ce_len + e->body_len + 8 == e->raw_len,
              "every byte accounted for");
    invariant(e->body[e->body_len] == '\0' || e->body + e->body_len == (char *)e->raw + e->raw_len,
              "body ends the envelope");
    if (memchr(e->content_type, 0, e->ct_len) != NULL ||
        memchr(e->content_encoding, 0, e->ce_len) != NULL)
        return; /* the builder takes C strings */
    char *ct = strndup(e->content_type, e->ct_len), *ce = strndup(e->content_encoding, e->ce_len);
    char *again = NULL;
    size_t n = 0;
    int rc = task__envelope_build(e->signer, e->sig, e->sig_len, ct, ce, e->body, e->body_len,
                                  &again, &n);
    invariant(rc == 0, "a parsed envelope builds again");
    size_t rl = 0;
    unsigned char *raw = task__b64_decode(again, n, &rl);
    invariant(raw != NULL && rl == e->raw_len && memcmp(raw, e->raw, rl) == 0,
              "built again, the same bytes");
    free(raw);
    free(again);
    free(ct);
    free(ce);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool encode = data[0] & 1;
    char *text = NULL;
    size_t len = size - 1;
    if (encode) {
        text = task__b64_encode(data + 1, size - 1, &len);
        invariant(text != NULL, "base64 encode");
    } else {
        text = malloc(len + 1);
        memcpy(text, data + 1, len);
    }
    struct task__envelope e;
    enum task__bad why = TASK_BAD_NONE;
    task_error err = {0};
    int rc = task__envelope_parse(text, len, siglen, NULL, &e, &why, &err);
    if (rc == 0) {
        check_parsed(&e);
    } else {
        invariant(rc == TASK_EPROTO, "refusals are TASK_EPROTO");
        invariant(why == TASK_BAD_ENVELOPE || why == TASK_BAD_UNTRUSTED, "a refusal's reason");
        invariant(err.msg[0] != '\0' && e.raw == NULL, "a refusal says why and keeps nothing");
    }
    task__envelope_free(&e);
    free(text);
    return 0;
}
