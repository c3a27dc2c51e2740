/*
 * msgauth.h - taskd's side of message signing (Celery's auth serializer; libtask/src/signing.c
 * does the cryptography): load the key, certificate and trusted store at start, and open each
 * delivered task message before it is decoded. Publishing seals through task__wire_seal() and
 * task__result_wire_seal() with w->sec.
 */
#ifndef TASKD_MSGAUTH_H
#define TASKD_MSGAUTH_H

#include "worker.h"

/* Load security.* into w->sec (NULL when signing is off) and log what was loaded. 0 or
 * TASK_ECONFIG (logged: taskd exits 2). */
int msgauth_init(struct worker *w);
void msgauth_free(struct worker *w);

/*
 * msgauth_decode - task__msg_decode() for a delivery, through the signature check when signing
 * is on: an unsigned or badly signed message fails with its reason (unsigned, bad-envelope,
 * untrusted-signer, cert-expired, bad-signature) and *out still holds the id, task and reply_to
 * read from the (unsigned) headers, so that the caller can be told. Same contract as
 * task__msg_decode() otherwise.
 */
int msgauth_decode(const struct worker *w, const struct task__delivery *d, struct task__msg *out,
                   enum task__bad *reason, task_error *err);

#endif
