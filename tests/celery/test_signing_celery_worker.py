"""Message signing (issue 19), the other way: taskctl (libtask) signs task messages for a stock
Celery 5.2 worker that requires the `auth` serializer, and verifies the worker's signed results;
a result from a signer libtask does not trust ends the wait as a FAILURE naming why."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import certs  # noqa: E402
from common import BUILD, Checks, broker  # noqa: E402

url = broker()
Q = f"t_sign_py_{os.getpid()}"
tmp = tempfile.mkdtemp(prefix="taskd-sign-py-")
py_key, py_cert = certs.make(tmp, "pyworker")
c_key, c_cert = certs.make(tmp, "cclient", bits=3072)  # another key size: another signature length
x_key, x_cert = certs.make(tmp, "stranger")
py_store = certs.store(os.path.join(tmp, "py-store"), c_cert)
c_store = certs.store(os.path.join(tmp, "c-store"), py_cert)
x_store = certs.store(os.path.join(tmp, "x-store"), x_cert)  # trusts not the Python worker

env = dict(os.environ, PYTASKS_QUEUE=Q, TASKD_CLIENT_DEFAULT_QUEUE=Q,
           PYTASKS_SECURITY_KEY=py_key, PYTASKS_SECURITY_CERTIFICATE=py_cert,
           PYTASKS_SECURITY_CERT_STORE=py_store)
signed = dict(env, TASKD_SECURITY_KEY=c_key, TASKD_SECURITY_CERTIFICATE=c_cert,
              TASKD_SECURITY_CERT_STORE=c_store)
here = os.path.dirname(os.path.abspath(__file__))
logpath = f"/tmp/celery-worker-sign-{os.getpid()}.log"
log = open(logpath, "w")
w = subprocess.Popen(["/usr/bin/python3", "-m", "celery", "-A", "pytasks", "worker", "-Q", Q,
                      "-c", "1", "-P", "solo", "--without-gossip", "--without-mingle",
                      "--without-heartbeat", "-l", "info"], cwd=here, env=env, stdout=log,
                     stderr=subprocess.STDOUT)
t = Checks()
ctl = [f"{BUILD}/taskctl/taskctl", "--broker", url]


def call(e, *args, timeout="10"):
    return subprocess.run(ctl + ["call", *args, "--timeout", timeout], env=e,
                          capture_output=True, text=True)


try:
    deadline = time.time() + 30
    out = None
    while time.time() < deadline:  # the worker needs a few seconds to start consuming
        out = call(signed, "py.add", "--args", "[2, 3]", timeout="3")
        if out.returncode != 2:
            break
    t.check("signed taskctl call py.add prints 5 (Celery verified us, we verified it)",
            out.returncode == 0 and out.stdout.strip() == "5", out.stdout + out.stderr)
    out = call(signed, "py.fail", "--args", '["nope"]')
    t.check("a signed Python FAILURE: exit 1 naming KeyError and the message",
            out.returncode == 1 and "KeyError" in out.stderr and "nope" in out.stderr,
            f"{out.returncode} {out.stderr}")
    # The same signer, a store without the Python worker: its result is refused.
    out = call(dict(signed, TASKD_SECURITY_CERT_STORE=x_store), "py.add", "--args", "[1, 2]")
    t.check("a result from an untrusted signer: exit 1, SecurityError, untrusted-signer",
            out.returncode == 1 and "SecurityError" in out.stderr and
            "untrusted-signer" in out.stderr, f"{out.returncode} {out.stderr}")
    # An unsigned call: the Celery worker refuses it (its log says so); nothing runs.
    out = call(env, "py.add", "--args", "[7, 7]", timeout="3")
    t.check("an unsigned call gets no result from the auth worker", out.returncode != 0,
            f"{out.returncode} {out.stdout}")
    log.flush()
    text = open(logpath).read()
    t.check("and the Celery worker logged it as refused content (ContentDisallowed)",
            "ContentDisallowed" in text or "disallowed" in text.lower(), text[-800:])
    t.check("the worker ran exactly the signed calls (3 'succeeded' or 'raised' lines)",
            text.count("succeeded in") == 2 and text.count("raised unexpected") == 1,
            text[-800:])
finally:
    w.terminate()
    w.wait(timeout=30)
t.finish()
