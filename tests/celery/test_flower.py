"""Flower against a taskd worker: the worker page renders from taskd's inspect replies and every
control button Flower has answers (docs/flower.md). Skipped (77) when Flower cannot be imported:
Debian 12 has no package; point FLOWER_PATH at a Flower 2.0 source tree (needs python3-tornado,
python3-humanize, python3-prometheus-client)."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, Taskd, broker  # noqa: E402

url = broker()
pypath = os.pathsep.join(p for p in (os.environ.get("FLOWER_PATH"), os.environ.get("PYTHONPATH"))
                         if p)
probe = subprocess.run(["/usr/bin/python3", "-c", "import flower, tornado"],
                       env=dict(os.environ, PYTHONPATH=pypath), capture_output=True)
if probe.returncode != 0:
    print("Flower is not importable (set FLOWER_PATH): skipped", file=sys.stderr)
    sys.exit(77)

from celery import Celery  # noqa: E402

Q = f"t_flower_{os.getpid()}"
NODE = f"fl{os.getpid()}@interop"
app = Celery("flower_test", broker=url, backend="rpc://")
t = Checks()

# Flower's limit buttons check the task name in Flower's own app: give it one that knows them.
appdir = tempfile.mkdtemp(prefix="taskd-flower-")
with open(os.path.join(appdir, "taskd_names.py"), "w") as f:
    f.write("import os\nfrom celery import Celery\n"
            "app = Celery('taskd_names', broker=os.environ['TASKD_BROKER_URL'].split(',')[0])\n"
            "def _runs_in_taskd(*args, **kwargs):\n    pass\n"
            "for name in ('test.add', 'test.sleep'):\n    app.task(name=name)(_runs_in_taskd)\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()
BASE = f"http://127.0.0.1:{PORT}"


def http(path, method="GET"):
    req = urllib.request.Request(BASE + path, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


with Taskd(Q, "--hostname", NODE, "-E", "-c", "1") as worker:
    flog = open(f"/tmp/flower-{os.getpid()}.log", "w")
    fl = subprocess.Popen(["/usr/bin/python3", "-m", "flower", "-A", "taskd_names", "flower",
                           f"--port={PORT}", "--address=127.0.0.1", "--unauthenticated_api"],
                          env=dict(os.environ, FLOWER_UNAUTHENTICATED_API="true",
                                   PYTHONPATH=os.pathsep.join([pypath, appdir])),
                          stdout=flog, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if http("/workers")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        time.sleep(3)  # heartbeats: Flower lists a worker it has heard from
        sleeper = app.send_task("test.sleep", (4,), queue=Q)
        time.sleep(0.3)
        waiting = app.send_task("test.add", (1, 2), queue=Q)
        held = app.send_task("test.add", (3, 4), queue=Q, countdown=0.9)
        time.sleep(0.2)
        code, body = http(f"/api/workers?refresh=1&workername={NODE}")
        w = json.loads(body).get(NODE, {}) if code == 200 else {}
        t.check("Flower's inspect of the worker has all eight answers",
                all(k in w for k in ("stats", "active_queues", "registered", "scheduled",
                                     "active", "reserved", "revoked", "conf")), sorted(w))
        t.check("  active, reserved and scheduled hold the three tasks",
                [a["id"] for a in w.get("active", [])] == [sleeper.id] and
                [r["id"] for r in w.get("reserved", [])] == [waiting.id] and
                [s["request"]["id"] for s in w.get("scheduled", [])] == [held.id],
                json.dumps({k: w.get(k) for k in ("active", "reserved", "scheduled")})[:400])
        t.check("  queues and pool", [q["name"] for q in w.get("active_queues", [])] == [Q] and
                w.get("stats", {}).get("pool", {}).get("max-concurrency") == 1)
        code, page = http(f"/worker/{NODE}")
        # Pool (Flower humanizes the implementation's name), Queues, Tasks, System tabs
        want = [Q, "test.sleep", "Taskd:prefork threads", "utime", "<td>Max concurrency</td>",
                "<td>Backlog</td>", "Prefetch Count"]
        t.check("the worker page renders (every tab)", code == 200 and
                all(w_ in page for w_ in want), f"{code} {[w_ for w_ in want if w_ not in page]}")
        buttons = [(f"/api/worker/pool/grow/{NODE}?n=1", "Growing"),
                   (f"/api/worker/pool/shrink/{NODE}?n=1", "Shrinking"),
                   (f"/api/worker/queue/add-consumer/{NODE}?queue={Q}b", f"add consumer {Q}b"),
                   (f"/api/worker/queue/cancel-consumer/{NODE}?queue={Q}b",
                    f"no longer consuming from {Q}b"),
                   (f"/api/task/rate-limit/test.add?workername={NODE}&ratelimit=5",
                    "new rate limit set successfully"),
                   (f"/api/task/timeout/test.add?workername={NODE}&soft=5&hard=10",
                    "time limits set successfully"),
                   (f"/api/worker/pool/restart/{NODE}", "Restarting"),
                   (f"/api/worker/pool/autoscale/{NODE}?min=1&max=3", "Autoscaling")]
        for path, want in buttons:
            code, body = http(path, "POST")
            t.check(f"Flower POST {path.split('?')[0].rsplit('/', 1)[0]}: 200",
                    code == 200 and want in body, f"{code} {body[:200]}")
        t.check("the tasks run", [sleeper.get(timeout=15), waiting.get(timeout=15),
                                  held.get(timeout=15)] == [4, 3, 7])
        time.sleep(0.5)
        code, body = http(f"/api/tasks?workername={NODE}")
        states = {k: v["state"] for k, v in json.loads(body).items()} if code == 200 else {}
        t.check("Flower's tasks (from events) ended SUCCESS",
                states == {sleeper.id: "SUCCESS", waiting.id: "SUCCESS", held.id: "SUCCESS"},
                repr(states))
        code, body = http(f"/api/worker/shutdown/{NODE}", "POST")
        t.check("Flower's Shut Down stops the worker warm", code == 200 and
                worker.proc.wait(timeout=15) == 0, f"{code} {body[:200]}")
    finally:
        fl.terminate()
        fl.wait(timeout=20)
t.finish()
