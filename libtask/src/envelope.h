/*
 * envelope.h - the signed envelope of Celery's `auth` serializer (celery/security/
 * serialization.py), without any cryptography: base64 of
 *     signer \x00\x01 signature \x00\x01 content_type \x00\x01 content_encoding \x00\x01 body
 * The signature has no length field: its length is the signer's RSA modulus in bytes, so the
 * parser asks the caller (who holds the trusted certificates) for it. Pure code, no I/O, so it
 * can be fuzzed on its own (tests/fuzz/fuzz_envelope.c).
 */
#ifndef TASK_ENVELOPE_H
#define TASK_ENVELOPE_H

#include <stddef.h>
#include "codec.h"

/* A parsed envelope. `raw` (the decoded bytes) and `signer` are owned; the other pointers point
 * into `raw`. Free with task__envelope_free(). The body is not NUL-terminated by itself: `raw`
 * has one spare byte after it, set to '\0'. */
struct task__envelope {
    unsigned char *raw;
    size_t raw_len;
    char *signer;                   /* "ISSUER VALUES... SERIAL", a C string (no NUL inside) */
    const unsigned char *sig;
    size_t sig_len;
    const char *content_type, *content_encoding, *body;
    size_t ct_len, ce_len, body_len;
};

/* The signature length in bytes of `signer`'s key, or 0 when the signer is not trusted. */
typedef size_t (*task__siglen_fn)(const char *signer, void *ud);

/*
 * task__envelope_parse - decode `b64` (len bytes, borrowed) into *out (zeroed first). Returns 0;
 * TASK_EPROTO with *why TASK_BAD_ENVELOPE (not base64, no separator, short signature, wrong
 * number of fields) or TASK_BAD_UNTRUSTED (siglen returned 0); or TASK_ENOMEM. A one-line
 * reason goes to err. *out is freed on failure, except that out->signer stays set (for the log)
 * when the signer was read.
 */
int task__envelope_parse(const void *b64, size_t len, task__siglen_fn siglen, void *ud,
                         struct task__envelope *out, enum task__bad *why, task_error *err);
void task__envelope_free(struct task__envelope *e);

/* task__envelope_build - the base64 text of an envelope, NUL-terminated, into *out (malloc'd,
 * the caller frees) and its length into *out_len. 0 or TASK_ENOMEM/TASK_EINVAL (a field holds
 * the separator, so the receiver would cut it there). */
int task__envelope_build(const char *signer, const unsigned char *sig, size_t sig_len,
                         const char *content_type, const char *content_encoding,
                         const void *body, size_t body_len, char **out, size_t *out_len);

/* Standard base64 (RFC 4648, padded), as Python's base64.b64encode writes it. Decoding skips
 * ASCII white space and refuses anything else outside the alphabet. Both return malloc'd
 * buffers with a spare NUL byte, or NULL (bad input or out of memory). */
char *task__b64_encode(const void *data, size_t len, size_t *out_len);
unsigned char *task__b64_decode(const char *text, size_t len, size_t *out_len);

#endif
