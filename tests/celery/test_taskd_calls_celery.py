"""taskctl (libtask) calls Python tasks run by a stock `celery worker`."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import BUILD, Checks, broker  # noqa: E402

url = broker()
Q = f"t_celery_worker_{os.getpid()}"
env = dict(os.environ, PYTASKS_QUEUE=Q, TASKD_CLIENT_DEFAULT_QUEUE=Q)
here = os.path.dirname(os.path.abspath(__file__))
log = open(f"/tmp/celery-worker-{os.getpid()}.log", "w")
w = subprocess.Popen(["/usr/bin/python3", "-m", "celery", "-A", "pytasks", "worker", "-Q", Q,
                      "-c", "1", "-P", "solo", "--without-gossip", "--without-mingle",
                      "--without-heartbeat", "-l", "info"], cwd=here, env=env, stdout=log,
                     stderr=subprocess.STDOUT)
t = Checks()
try:
    ctl = [f"{BUILD}/taskctl/taskctl", "--broker", url]
    deadline = time.time() + 30
    out = None
    while time.time() < deadline:  # the worker needs a few seconds to start consuming
        out = subprocess.run(ctl + ["call", "py.add", "--args", "[2, 3]", "--timeout", "3"],
                             env=env, capture_output=True, text=True)
        if out.returncode != 2:
            break
    t.check("taskctl call py.add prints 5", out.stdout.strip() == "5", out.stdout + out.stderr)
    t.check("and exits 0", out.returncode == 0, str(out.returncode))
    out = subprocess.run(ctl + ["call", "py.fail", "--args", '["nope"]', "--timeout", "10"],
                         env=env, capture_output=True, text=True)
    t.check("a Python exception exits 1", out.returncode == 1, str(out.returncode))
    t.check("stderr names FAILURE, KeyError and the message",
            "FAILURE" in out.stderr and "KeyError" in out.stderr and "nope" in out.stderr,
            out.stderr)
finally:
    w.terminate()
    w.wait(timeout=30)
t.finish()
