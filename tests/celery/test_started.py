"""STARTED means running (issue 17): a stock Celery client sees STARTED for a task while it runs
on a taskd worker (worker.track_started, on by default), and PENDING, not STARTED, for a task
that waits in the worker's backlog behind it; both end SUCCESS. With track_started off, a
running task stays PENDING until it ends."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import BUILD, Checks, Taskd, broker  # noqa: E402

url = broker()
from celery import Celery  # noqa: E402

PID = os.getpid()
CTL = f"{BUILD}/taskctl/taskctl"
t = Checks()
app = Celery("started", broker=url, backend="rpc://")


def wait_state(r, want, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if r.state == want:
            return True
        time.sleep(0.05)
    return r.state == want


def ctl_result(tid):
    p = subprocess.run([CTL, "--broker", url, "result", tid], capture_output=True, text=True,
                       timeout=60)
    return p.stdout + p.stderr


q = f"started_{PID}"
with Taskd(q, "-c", "1", "--threads", "1"):
    running = app.send_task("test.sleep", args=[3], queue=q)
    queued = app.send_task("test.add", args=[1, 2], queue=q)
    t.check("the running task is STARTED", wait_state(running, "STARTED", 10), running.state)
    time.sleep(0.5)
    t.check("the task waiting behind it is PENDING, not STARTED", queued.state == "PENDING",
            queued.state)
    out = ctl_result(queued.id)
    t.check("taskctl result of the waiting task is not STARTED", "STARTED" not in out, out)
    t.check("taskctl result of the running task says STARTED", "STARTED" in ctl_result(running.id))
    t.check("both end SUCCESS", running.get(timeout=30) == 3 and queued.get(timeout=30) == 3)

q2 = f"started_off_{PID}"
with Taskd(q2, "-c", "1", env={"TASKD_WORKER_TRACK_STARTED": "false"}):
    r = app.send_task("test.sleep", args=[1.5], queue=q2)
    time.sleep(0.8)
    t.check("track_started off: a running task stays PENDING", r.state == "PENDING", r.state)
    t.check("track_started off: it ends SUCCESS", r.get(timeout=30) == 1.5)

t.finish()
