"""Celery's remote-control tools see taskd workers (pidbox): ping, inspect, revoke."""
import os
import subprocess
import sys
import time
from uuid import uuid4

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, Taskd, broker  # noqa: E402

url = broker()
from celery import Celery  # noqa: E402
from celery.exceptions import TaskRevokedError  # noqa: E402

Q = f"t_celery_control_{os.getpid()}"
NODE = f"ctl{os.getpid()}@interop"
app = Celery("control", broker=url, backend="rpc://")
app.conf.task_default_queue = Q
t = Checks()

RECEIVER = """
import json, sys
from celery import Celery
app = Celery("rx", broker=sys.argv[1])
def show(ev):
    print(json.dumps(ev), flush=True)
with app.connection() as conn:
    try:
        app.events.Receiver(conn, handlers={"*": show}).capture(limit=None, timeout=float(sys.argv[2]))
    except Exception:
        pass
"""


def collect_events(seconds, action):
    """Run `action` while a stock Celery event receiver (another process) listens."""
    import json
    rx = subprocess.Popen(["/usr/bin/python3", "-c", RECEIVER, url, str(seconds)],
                          stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    action()
    time.sleep(0.5)
    rx.terminate()  # capture() returns only after `timeout` s of silence, heartbeats go on
    out, _ = rx.communicate(timeout=10)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


with Taskd(Q, "--hostname", NODE, "-E") as worker:
    def run_one():
        r = app.send_task("test.add", (20, 22))
        r.get(timeout=10)
        run_one.id = r.id
        time.sleep(2.5)  # one heartbeat period
    evs = collect_events(5, run_one)
    mine = [e for e in evs if e.get("hostname") == NODE]
    types = {e["type"] for e in mine}
    t.check("event receiver sees worker-heartbeat", "worker-heartbeat" in types, str(types))
    got = {e["type"]: e for e in mine if e.get("uuid") == getattr(run_one, "id", None)}
    t.check("task-received with name and args", got.get("task-received", {}).get("name") ==
            "test.add", repr(got.get("task-received")))
    t.check("task-succeeded with result and runtime", got.get("task-succeeded", {}).get("result")
            == "42" and got["task-succeeded"].get("runtime", -1) >= 0, repr(got.get("task-succeeded")))

    pongs = app.control.ping(destination=[NODE], timeout=2)
    t.check("control.ping answers pong", pongs == [{NODE: {"ok": "pong"}}], repr(pongs))
    out = subprocess.run(["/usr/bin/python3", "-m", "celery", "-b", url, "inspect", "ping",
                          "-d", NODE, "-t", "2"], capture_output=True, text=True)
    t.check("`celery inspect ping` finds the taskd node", out.returncode == 0 and NODE in out.stdout
            and "pong" in out.stdout, out.stdout + out.stderr)
    i = app.control.inspect(destination=[NODE], timeout=2)
    reg = i.registered() or {}
    t.check("inspect registered lists the C tasks", "test.add" in reg.get(NODE, []) and
            reg[NODE] == sorted(reg[NODE]), repr(reg))
    r = app.send_task("test.sleep", (5,))
    time.sleep(0.5)
    act = (i.active() or {}).get(NODE, [])
    t.check("inspect active shows the running task", [a["id"] for a in act] == [r.id] and
            act[0]["name"] == "test.sleep" and act[0]["args"] == [5], repr(act))
    st = (i.stats() or {}).get(NODE, {})
    t.check("inspect stats has pool and totals", st.get("pool", {}).get("running") == 1 and
            "total" in st, repr(st))
    t0 = time.time()
    app.control.revoke(r.id, terminate=True)
    try:
        r.get(timeout=10)
        t.check("revoke --terminate stops a running task", False, "it finished")
    except TaskRevokedError as e:
        t.check("revoke --terminate stops a running task", "terminated" in str(e) and
                time.time() - t0 < 3, repr(e))
    rid = str(uuid4())
    app.control.revoke(rid)
    time.sleep(0.3)
    t.check("inspect revoked lists a revoked id", rid in (i.revoked() or {}).get(NODE, []))
    try:
        app.send_task("test.add", (1, 2), task_id=rid).get(timeout=10)
        t.check("a revoked id never runs", False, "it ran")
    except TaskRevokedError:
        t.check("a revoked id never runs", True)
    t.check("add still works after terminate", app.send_task("test.add", (2, 2)).get(timeout=10) == 4)

    rl = app.control.rate_limit("test.add", "10/s", destination=[NODE], reply=True, timeout=2)
    t.check("control.rate_limit is acknowledged",
            rl == [{NODE: {"ok": "new rate limit set successfully"}}], repr(rl))
    t0 = time.time()
    rs = [app.send_task("test.add", (i, i)) for i in range(20)]
    vals = [r.get(timeout=20) for r in rs]
    took = time.time() - t0
    t.check("20 calls at 10/s take about 2 s (per-worker token bucket)",
            vals == [2 * i for i in range(20)] and 1.8 <= took < 4, f"{took:.2f}s")
    lim = [r.date_done for r in rs]
    t.check("results carry date_done", all(d is not None for d in lim), repr(lim[:2]))
    t.check("the limited calls finished over about 2 s (worker clock)",
            (max(lim) - min(lim)).total_seconds() >= 1.7, str(max(lim) - min(lim)))
    for junk in ("nan/s", "inf", "1e-300/s"):
        rl = app.control.rate_limit("test.add", junk, destination=[NODE], reply=True, timeout=2)
        t.check(f"rate_limit {junk!r} is refused", "error" in (rl or [{}])[0].get(NODE, {}),
                repr(rl))
    rl = app.control.rate_limit("test.add", "0", destination=[NODE], reply=True, timeout=2)
    t.check("rate_limit 0 is acknowledged",
            rl == [{NODE: {"ok": "new rate limit set successfully"}}], repr(rl))
    rs = [app.send_task("test.add", (i, i)) for i in range(20)]
    vals = [r.get(timeout=20) for r in rs]
    # Measured on the worker's clock (date_done): Celery's own client can add a 1 s stall per
    # get() when replies arrive in a burst (its drain loop, not the worker), see README.
    done = [r.date_done for r in rs]
    spread = (max(done) - min(done)).total_seconds()
    t.check("rate_limit 0 lifts it (20 calls finish within 0.5 s)",
            vals == [2 * i for i in range(20)] and spread < 0.5, f"{spread:.3f}s")
    app.control.shutdown(destination=[NODE])
    try:
        code = worker.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        code = None
    t.check("control.shutdown stops the worker warm (exit 0)", code == 0, str(code))
t.finish()
