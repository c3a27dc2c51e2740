/* msgauth.c - see msgauth.h. */
#include <string.h>
#include "log.h"
#include "msgauth.h"
#include "signing.h"

int msgauth_init(struct worker *w)
{
    task_error err = {0};
    int expired = 0;
    int rc = task__sec_load(w->cfg, &w->sec, &expired, &err);
    if (rc != 0) {
        log_event(LV_ERROR, rc, "config_error", "detail=%s", log_v(err.msg));
        return TASK_ECONFIG;
    }
    if (w->sec == NULL)
        return 0;
    log_event(LV_INFO, 0, "signing_on", "signer=%s digest=%s cert_store=%s",
              log_v(task__sec_signer(w->sec)), log_v(w->cfg->security_digest),
              log_v(w->cfg->security_cert_store));
    if (expired > 0)
        log_event(LV_WARN, 0, "cert_store_expired", "count=%d cert_store=%s action=\"messages "
                  "they signed are quarantined as cert-expired\"", expired,
                  log_v(w->cfg->security_cert_store));
    return 0;
}

void msgauth_free(struct worker *w)
{
    task__sec_free(w->sec);
    w->sec = NULL;
}

int msgauth_decode(const struct worker *w, const struct task__delivery *d, struct task__msg *out,
                   enum task__bad *reason, task_error *err)
{
    const amqp_basic_properties_t *p = &d->msg.properties;
    if (w->sec == NULL)
        return task__msg_decode(p, d->msg.body.bytes, d->msg.body.len, &w->limits, out, reason,
                                err);
    struct task__envelope env;
    amqp_basic_properties_t inner;
    const void *body;
    size_t len;
    int rc = task__sec_unwrap(w->sec, p, d->msg.body.bytes, d->msg.body.len, &inner, &body, &len,
                              &env, reason, err);
    if (rc == 0) {
        rc = task__msg_decode(&inner, body, len, &w->limits, out, reason, err);
    } else {
        /* Decoded only for its address (id, task, reply_to): the outcome is the signature's. */
        enum task__bad ignored;
        task_error e2 = {0};
        (void)task__msg_decode(p, NULL, 0, &w->limits, out, &ignored, &e2);
    }
    task__envelope_free(&env);
    return rc;
}
