"""The taskd results backend for Celery (issue 21, python/taskd_celery): a stock Celery 5.2 app
with result_backend = "taskd_celery.backend:ResultsBackend" sends tasks with stock (uuid4) ids to
a taskd worker and to a Python `celery worker` using the same backend; a second process, which
sent nothing, follows them with AsyncResult (state, info, result, get). The record format is
checked both ways: taskctl (libtask) reads what the Python worker wrote. Then chords of 20
members across both kinds of workers, with the callback on either kind."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BUILD, Checks, Taskd, broker  # noqa: E402
from backend_env import backend_env  # noqa: E402

url = broker()
env = backend_env()
os.environ.update({k: env[k] for k in ("TASKD_LIBTASK", "PYTHONPATH")})
sys.path.insert(0, env["PYTHONPATH"].split(os.pathsep)[0])
if "LD_PRELOAD" in env:
    # this process loads libtask too (the chord's result): run again with the runtimes loaded
    if os.environ.get("LD_PRELOAD") != env["LD_PRELOAD"]:
        os.execve(sys.executable, [sys.executable] + sys.argv, env)

from celery import Celery, chain, chord, group  # noqa: E402
from celery.utils import uuid  # noqa: E402

PID = os.getpid()
QC, QP = f"backend_taskd_{PID}", f"backend_py_{PID}"
here = os.path.dirname(os.path.abspath(__file__))
CTL = [f"{BUILD}/taskctl/taskctl", "--broker", url, "--json"]
t = Checks()
app = Celery("sender", broker=url, backend="taskd_celery.backend:ResultsBackend")


class Observer:
    """A second process following `ids` (started before they are sent, so that it sees every
    state); done() -> {id: its JSON line}."""

    def __init__(self, ids, timeout=60):
        self.p = subprocess.Popen(["/usr/bin/python3", f"{here}/backend_observer.py",
                                   str(timeout), *ids], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.timeout = timeout
        line = self.p.stdout.readline()
        if line.strip() != "ready":
            print(line, self.p.stderr.read())

    def done(self):
        out, err = self.p.communicate(timeout=self.timeout + 60)
        if self.p.returncode != 0:
            print(err)
        return {d["id"]: d for d in map(json.loads, out.splitlines())}


def observe(ids, timeout=60):
    return Observer(ids, timeout).done()


def ctl_result(tid):
    p = subprocess.run(CTL + ["result", tid], capture_output=True, text=True, timeout=60)
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {"raw": p.stdout + p.stderr}


log = open(f"/tmp/backend-worker-{PID}.log", "w")
worker = subprocess.Popen(["/usr/bin/python3", "-m", "celery", "-A", "backend_tasks", "worker",
                           "-Q", QP, "-c", "4", "-P", "threads", "--without-gossip",
                           "--without-mingle", "--without-heartbeat", "-l", "info"],
                          cwd=here, env=dict(env, PYTASKS_QUEUE=QP), stdout=log,
                          stderr=subprocess.STDOUT)
try:
    with Taskd(QC, "-c", "2"):
        t0 = time.time()
        ready = app.send_task("py.add", (0, 0), queue=QP)
        first = ready.get(timeout=60)  # the worker takes a few seconds to start
        t.check("the Python worker answers through the backend", first == 0, repr(first))
        calls = {
            "c_add": ("test.add", (2, 3), QC),
            "c_progress": ("test.progress", (6, 0.3), QC),
            "c_fail": ("test.fail", ("boom",), QC),
            "py_add": ("py.add", (2, 3), QP),
            "py_progress": ("py.progress", (5, 0.3), QP),
            "py_retry": ("py.retry", (1,), QP),
            "py_fail": ("py.fail", ("nope",), QP),
        }
        ids = {k: uuid() for k in calls}  # Celery's own ids (uuid4), known before sending
        obs = Observer(list(ids.values()))
        sent = {k: app.send_task(name, args, queue=q, task_id=ids[k])
                for k, (name, args, q) in calls.items()}
        t.check("ids are Celery's own uuid4", all(r.id[14] == "4" for r in sent.values()),
                str([r.id for r in sent.values()]))
        seen = obs.done()
        o = {k: seen.get(r.id, {}) for k, r in sent.items()}
        t.check("taskd task: the second process gets 5", o["c_add"].get("get") == {"value": 5},
                repr(o["c_add"]))
        t.check("taskd task: PROGRESS with its meta, then SUCCESS",
                "PROGRESS" in o["c_progress"].get("states", []) and
                {"current": 3, "total": 6} in o["c_progress"].get("progress", []) and
                o["c_progress"]["states"][-1] == "SUCCESS" and
                o["c_progress"]["get"] == {"value": 6}, repr(o["c_progress"]))
        t.check("taskd failure: FAILURE, .result a ValueError, get() raises it",
                o["c_fail"].get("states", [""])[-1] == "FAILURE" and
                o["c_fail"].get("result_type") == "ValueError" and
                o["c_fail"].get("get", {}).get("raised") == "ValueError", repr(o["c_fail"]))
        t.check("Python worker task: the second process gets 5",
                o["py_add"].get("get") == {"value": 5}, repr(o["py_add"]))
        states = o["py_progress"].get("states", [])
        t.check("Python worker: STARTED, PROGRESS with its meta, then SUCCESS",
                "STARTED" in states and "PROGRESS" in states and states[-1] == "SUCCESS" and
                states.index("STARTED") < states.index("PROGRESS") and
                {"current": 2, "total": 5} in o["py_progress"]["progress"] and
                o["py_progress"]["get"] == {"value": 5}, repr(o["py_progress"]))
        t.check("Python worker: RETRY, then SUCCESS",
                "RETRY" in o["py_retry"].get("states", []) and
                o["py_retry"].get("get") == {"value": 1}, repr(o["py_retry"]))
        t.check("Python failure: FAILURE, get() raises KeyError",
                o["py_fail"].get("get", {}).get("raised") == "KeyError", repr(o["py_fail"]))
        # One record format: libtask reads what the Python worker wrote.
        r = ctl_result(sent["py_add"].id)
        t.check("taskctl result reads the Python worker's SUCCESS record",
                r.get("state") == "SUCCESS" and r.get("result") == 5, repr(r))
        r = ctl_result(sent["py_fail"].id)
        t.check("taskctl result reads the Python worker's FAILURE record (KeyError)",
                r.get("state") == "FAILURE" and
                (r.get("result") or {}).get("exc_type") == "KeyError", repr(r))
        r = ctl_result(app.send_task("py.add", (0, 1), queue="nowhere_" + str(PID)).id)
        t.check("a task sent and not run yet: PENDING (the sender's record)",
                r.get("state") == "PENDING", repr(r))

        # Chords of 20 members, half on taskd and half on the Python worker.
        def header(n):
            return group([app.signature("test.add", (i, i), queue=QC) if i % 2 == 0 else
                          app.signature("py.add", (i, i), queue=QP) for i in range(n)])
        want = sum(2 * i for i in range(20))
        c1 = chord(header(20))(app.signature("test.xsum", queue=QC))
        c2 = chord(header(20))(app.signature("py.xsum", queue=QP))
        c3 = chord([app.signature("py.add", (1, 1), queue=QP),
                    app.signature("test.fail", ("member",), queue=QC)])(
            app.signature("py.xsum", queue=QP))
        # A header member that is a chain whose first step runs on taskd: Celery puts the chord
        # on the chain's last step, which taskd sends on (outside attack: it was dropped, and
        # the chord never fired).
        c4 = chord([chain(app.signature("test.add", (2, 2), queue=QC),
                          app.signature("py.add", (100,), queue=QP)),
                    chain(app.signature("test.add", (1, 1), queue=QC),
                          app.signature("test.add", (10,), queue=QC)),
                    app.signature("py.add", (3, 3), queue=QP)])(
            app.signature("py.xsum", queue=QP))
        o = observe([c1.id, c2.id, c3.id, c4.id])
        t.check("chord of 20 (taskd and Python members) -> taskd callback: the sum",
                o.get(c1.id, {}).get("get") == {"value": want}, repr(o.get(c1.id)))
        t.check("chord of 20 (taskd and Python members) -> Python callback: the sum",
                o.get(c2.id, {}).get("get") == {"value": want}, repr(o.get(c2.id)))
        t.check("chord with a failing member: the callback fails with ChordError",
                o.get(c3.id, {}).get("get", {}).get("raised") == "ChordError",
                repr(o.get(c3.id)))
        t.check("the sender's own AsyncResult.get() of the chord", c1.get(timeout=30) == want)
        t.check("chord whose members are chains started on taskd: the callback gets every last "
                "step's result", o.get(c4.id, {}).get("get") == {"value": 104 + 12 + 6},
                repr(o.get(c4.id)))
        # A thread per request (a threaded web server): each thread's client is closed when the
        # thread ends (outside attack: 800 threads left 800 connections open).
        import gc
        import threading

        def open_fds():
            return len(os.listdir("/proc/self/fd"))

        done_id = c1.id
        app.AsyncResult(done_id).state  # this thread's own client, made before counting
        before = open_fds()
        for _ in range(4):
            ths = [threading.Thread(target=lambda: app.AsyncResult(done_id).state)
                   for _ in range(10)]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
        gc.collect()
        after = open_fds()
        t.check("40 short-lived polling threads leave no connection behind",
                after - before < 5, f"fds {before} -> {after}")
        # Lookups of uuid4 ids read windows back from now (5 s, then 1 min, ...): records older
        # than the first window, with newer records of other ids after them in the same stream,
        # are found by the wider window, and the latest of two wins.
        from taskd_celery.records import partition
        old = uuid()
        app.backend.store_result(old, None, "STARTED")
        app.backend.store_result(old, {"n": 1}, "SUCCESS")
        pending = uuid()
        time.sleep(8)
        for _ in range(3):
            other = uuid()
            while partition(other) != partition(old):
                other = uuid()
            app.backend.store_result(other, 0, "SUCCESS")
        r = ctl_result(old)
        t.check("taskctl result of a uuid4 id 8 s old (past the first window): the latest record",
                r.get("state") == "SUCCESS" and r.get("result") == {"n": 1}, repr(r))
        o = observe([old], timeout=10)
        t.check("AsyncResult of it from a second process: SUCCESS {'n': 1}",
                o.get(old, {}).get("get") == {"value": {"n": 1}}, repr(o.get(old)))
        r = ctl_result(pending)
        t.check("an id with no record: PENDING (every window read)", r.get("state") == "PENDING",
                repr(r))
        print(f"# whole run {time.time() - t0:.1f} s")
finally:
    worker.terminate()
    worker.wait(timeout=30)
t.finish()
