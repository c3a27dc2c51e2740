"""Message signing (issue 19): a Python Celery 5.2 app with the `auth` serializer calls a taskd
worker that requires signing, and gets signed results; taskctl (libtask) does the same; and every
badly signed message (unsigned, wrong key, untrusted certificate, tampered body, expired
certificate) lands in the worker's dead queue with its reason while its caller gets a FAILURE
naming the reason. Keys and certificates are made here with python3-cryptography."""
import base64
import os
import subprocess
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import certs  # noqa: E402
from common import BUILD, Checks, Taskd, amqp_conn, broker, wait_for  # noqa: E402

url = broker()
from celery import Celery  # noqa: E402
from celery.exceptions import SecurityError  # noqa: E402
from kombu.serialization import dumps  # noqa: E402

Q = f"t_sign_{os.getpid()}"
DEAD = f"t_sign_dead_{os.getpid()}"
tmp = tempfile.mkdtemp(prefix="taskd-sign-")
worker_key, worker_cert = certs.make(tmp, "worker")
client_key, client_cert = certs.make(tmp, "client")
other_key, other_cert = certs.make(tmp, "other")        # trusted by nobody
old_key, old_cert = certs.make(tmp, "old", expired=True)  # trusted by the worker, expired
# The worker trusts the client (and the expired one); every client trusts the worker.
worker_store = certs.store(os.path.join(tmp, "worker-store"), client_cert, old_cert)
client_store = certs.store(os.path.join(tmp, "client-store"), worker_cert)
t = Checks()


def signed_app(name, key, cert):
    app = Celery(name, broker=url, backend="rpc://")
    app.conf.update(security_key=key, security_certificate=cert, security_cert_store=client_store,
                    task_serializer="auth", result_serializer="auth", accept_content=["auth"],
                    task_default_queue=Q)
    app.setup_security()
    return app


def dead_reasons():
    """x-taskd-error of every message in the dead queue, by task id (the queue is drained)."""
    c = amqp_conn()
    ch = c.channel()
    found = {}
    while True:
        m = ch.basic_get(DEAD, no_ack=True)
        if m is None:
            break
        h = m.headers or {}
        found[h.get("id")] = (h.get("x-taskd-error", ""), m.properties.get("content_type"))
    c.close()
    return found


def failure_of(app, task_id):
    """The exception AsyncResult.get() raises (None when it returns)."""
    try:
        app.AsyncResult(task_id).get(timeout=15)
        return None
    except Exception as e:  # noqa: BLE001: the type is what is checked
        return e


env = {"TASKD_SECURITY_KEY": worker_key, "TASKD_SECURITY_CERTIFICATE": worker_cert,
       "TASKD_SECURITY_CERT_STORE": worker_store, "TASKD_WORKER_DEAD_QUEUE": DEAD}
with Taskd(Q, env=env, tag="-sign") as worker:
    log = open(worker.log).read()
    from celery.security.certificate import Certificate
    want = Certificate(open(worker_cert).read()).get_id()
    t.check("taskd logs signing_on with its signer id exactly as Celery spells it",
            "event=signing_on" in log and f'signer="{want}"' in log, f"{want!r} {log[-600:]}")
    t.check("and warns of the expired certificate in its store",
            "event=cert_store_expired count=1" in log, log[-600:])

    app = signed_app("signed", client_key, client_cert)
    r = app.send_task("test.add", (2, 3))
    t.check("Celery auth client: add(2, 3).get() == 5 (signed both ways)", r.get(timeout=15) == 5)
    try:
        app.send_task("test.fail", ("card declined",)).get(timeout=15)
        t.check("test.fail raises", False)
    except ValueError as e:
        t.check("a signed FAILURE reaches AsyncResult.get() as the real ValueError",
                str(e) == "card declined", repr(e))
    chain = app.signature("test.add", (1, 1)) | app.signature("test.add", (2,))
    t.check("a chain: taskd signs the follow-up it publishes", chain.apply_async().get(timeout=15)
            == 4)

    t.check("retries: taskd signs the copies it re-publishes and reads them back",
            app.send_task("test.retry", (2,)).get(timeout=15) == 2)
    t.check("a countdown: the signed message rides the delay cascade unchanged",
            app.send_task("test.add", (4, 4), countdown=1.5).get(timeout=15) == 8)

    # taskctl (libtask) signs too, and verifies taskd's signed result.
    ctl_env = dict(os.environ, TASKD_SECURITY_KEY=client_key,
                   TASKD_SECURITY_CERTIFICATE=client_cert, TASKD_SECURITY_CERT_STORE=client_store,
                   TASKD_CLIENT_DEFAULT_QUEUE=Q)
    ctl = [f"{BUILD}/taskctl/taskctl", "--broker", url]
    out = subprocess.run(ctl + ["call", "test.add", "--args", "[20, 22]", "--timeout", "15"],
                         env=ctl_env, capture_output=True, text=True)
    t.check("taskctl call with security.* signs and prints 42", out.returncode == 0 and
            out.stdout.strip() == "42", out.stdout + out.stderr)

    # Rejections: each lands in the dead queue with its reason, each caller gets a FAILURE.
    plain = Celery("plain", broker=url, backend="rpc://")
    plain.conf.task_default_queue = Q
    ids = {}
    ids["unsigned"] = plain.send_task("test.add", (1, 2)).id
    e = failure_of(plain, ids["unsigned"])
    t.check("unsigned (plain json Celery client): get() raises SecurityError naming 'unsigned'",
            isinstance(e, SecurityError) and "unsigned" in str(e), repr(e))
    out = subprocess.run(ctl + ["call", "test.add", "--args", "[1, 1]", "--timeout", "15"],
                         env=dict(os.environ, TASKD_CLIENT_DEFAULT_QUEUE=Q),
                         capture_output=True, text=True)
    t.check("unsigned taskctl call exits 1 naming SecurityError and 'unsigned'",
            out.returncode == 1 and "SecurityError" in out.stderr and "unsigned" in out.stderr,
            f"{out.returncode} {out.stderr}")

    # The wrong key: the client's certificate, another key.
    wrong = signed_app("wrong", other_key, client_cert)
    ids["bad-signature"] = wrong.send_task("test.add", (1, 2)).id
    e = failure_of(wrong, ids["bad-signature"])
    t.check("wrong key: get() raises SecurityError naming bad-signature",
            isinstance(e, SecurityError) and "bad-signature" in str(e), repr(e))

    stranger = signed_app("stranger", other_key, other_cert)
    ids["untrusted-signer"] = stranger.send_task("test.add", (1, 2)).id
    e = failure_of(stranger, ids["untrusted-signer"])
    t.check("untrusted certificate: get() raises SecurityError naming untrusted-signer",
            isinstance(e, SecurityError) and "untrusted-signer" in str(e), repr(e))

    expired = signed_app("expired", old_key, old_cert)
    ids["cert-expired"] = expired.send_task("test.add", (1, 2)).id
    e = failure_of(expired, ids["cert-expired"])
    t.check("expired certificate: get() raises SecurityError naming cert-expired",
            isinstance(e, SecurityError) and "cert-expired" in str(e), repr(e))

    # Tampered: a correctly signed body with its arguments changed on the way. (kombu keeps one
    # 'auth' serializer per process: the last setup_security() signs, so the client's goes again.)
    app.setup_security()
    tid = str(uuid.uuid4())
    msg = app.amqp.as_task_v2(tid, "test.add", (2, 3), {}, reply_to=app.thread_oid)
    ctype, cenc, data = dumps(msg.body, serializer="auth")
    raw = base64.b64decode(data)
    t.check("the signed envelope holds the JSON body", b"[[2, 3], {}" in raw, repr(raw[-80:]))
    forged = base64.b64encode(raw.replace(b"[[2, 3], {}", b"[[2, 9], {}")).decode()
    with app.producer_or_acquire() as p:
        app.backend.on_task_call(p, tid)
        p.publish(forged, exchange="", routing_key=Q, headers=msg.headers,
                  content_type=ctype, content_encoding=cenc, **msg.properties)
    ids["bad-signature/tampered"] = tid
    e = failure_of(app, tid)
    t.check("tampered body: get() raises SecurityError naming bad-signature",
            isinstance(e, SecurityError) and "bad-signature" in str(e), repr(e))

    found = {}
    wait_for(lambda: (found.update(dead_reasons()) or len(found) >= len(ids)), 10)
    for reason, tid in ids.items():
        slug = reason.split("/")[0]
        got = found.get(tid, ("", ""))
        t.check(f"{reason}: in {DEAD} with x-taskd-error '{slug}: ...'",
                got[0].startswith(slug + ": "), repr(got))
    t.check("quarantined copies keep their content type", found.get(ids["cert-expired"], ("", ""))[1]
            == "application/data", repr(found.get(ids["cert-expired"])))
    log = open(worker.log).read()
    t.check("taskd logged one message_quarantined line per rejection (+ taskctl's unsigned)",
            log.count("event=message_quarantined") == len(ids) + 1,
            str(log.count("message_quar")))
    t.check("no key material in the log", "PRIVATE KEY" not in log)

    after = app.send_task("test.add", (5, 6))
    t.check("the worker goes on: a good call after the rejections", after.get(timeout=15) == 11)

# A worker with half the options set does not start.
bad = subprocess.run([f"{BUILD}/taskd/taskd", "--broker", url, "-Q", Q, "--module",
                      f"{BUILD}/tests/tasks/libtesttasks.so"],
                     env=dict(os.environ, TASKD_SECURITY_KEY=worker_key),
                     capture_output=True, text=True, timeout=30)
t.check("security.key without the rest: taskd exits 2 naming security.certificate",
        bad.returncode == 2 and "security.certificate" in bad.stderr,
        f"{bad.returncode} {bad.stderr[-300:]}")

c = amqp_conn()
for q in (Q, DEAD):
    c.channel().queue_delete(q)
c.close()
t.finish()
