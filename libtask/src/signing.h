/*
 * signing.h - message signing compatible with Celery's `auth` serializer: RSA-PSS (MGF1, the
 * longest salt) over the serialized body, with the signer named by its certificate's issuer and
 * serial, and a store of trusted certificates to verify with (celery/security/). Built on
 * OpenSSL's libcrypto. The envelope layout is envelope.c's job.
 *
 * A task__sec is read-only once loaded and may be shared by the threads of one process.
 */
#ifndef TASK_SIGNING_H
#define TASK_SIGNING_H

#include <amqp.h>
#include <stdbool.h>
#include <task/config.h>
#include "codec.h"
#include "envelope.h"

#define TASK__SIGNED_CONTENT_TYPE "application/data"

struct task__sec;

/*
 * task__sec_load - load security.key, security.certificate and security.cert_store from `cfg`.
 * All three unset: *out = NULL and 0 (signing off). Otherwise all three must be set, the key
 * must be an unencrypted PEM RSA key matching the certificate, and the store must hold at least
 * one certificate. Returns 0 or TASK_ECONFIG with "security.OPTION: PATH: why" in err.
 * *expired (may be NULL) counts store certificates that are out of their validity period now:
 * they stay in the store (Celery refuses to start), and messages they signed are refused as
 * cert-expired.
 */
int task__sec_load(const task_config *cfg, struct task__sec **out, int *expired,
                   task_error *err);
void task__sec_free(struct task__sec *s);

/* Our certificate's id as Celery names the signer ("ISSUER VALUES SERIAL"); borrowed. */
const char *task__sec_signer(const struct task__sec *s);

/*
 * task__sec_seal - sign `body` and wrap it with its content type and encoding. *out is the
 * envelope's base64 text (malloc'd, NUL-terminated; the caller frees). 0, TASK_EINVAL,
 * TASK_ENOMEM or TASK_EPROTO (libcrypto failed).
 */
int task__sec_seal(const struct task__sec *s, const char *content_type,
                   const char *content_encoding, const void *body, size_t len, char **out,
                   size_t *out_len, task_error *err);

/*
 * task__sec_open - parse and verify an envelope (the body of an application/data message) into
 * *env (the caller frees it with task__envelope_free(), also on failure). Returns 0 when the
 * signer is trusted, its certificate valid now and the signature good; else TASK_EPROTO with
 * *why ENVELOPE, UNTRUSTED, CERT_EXPIRED or SIGNATURE and a one-line reason in err.
 */
int task__sec_open(const struct task__sec *s, const void *data, size_t len,
                   struct task__envelope *env, enum task__bad *why, task_error *err);

/* Is this an `auth` message (content type application/data)? */
bool task__sec_is_signed(const amqp_basic_properties_t *p);

/*
 * task__sec_unwrap - for a delivery that must be signed: refuse it unless signed (why:
 * UNSIGNED), open it, and give the inner message: *props_out is `in` with the envelope's content
 * type and encoding (pointing into env), *body and *body_len the signed body (pointing into env).
 * 0 or TASK_EPROTO/TASK_ENOMEM; free env either way.
 */
int task__sec_unwrap(const struct task__sec *s, const amqp_basic_properties_t *in,
                     const void *data, size_t len, amqp_basic_properties_t *props_out,
                     const void **body, size_t *body_len, struct task__envelope *env,
                     enum task__bad *why, task_error *err);

/* Replace the body of an encoded task message (or state message) with its signed envelope and
 * its content type with application/data. s NULL: nothing to do. 0 or a TASK_E* code. */
int task__wire_seal(const struct task__sec *s, struct task__wire *w, task_error *err);
int task__result_wire_seal(const struct task__sec *s, struct task__result_wire *w,
                           task_error *err);

#endif
