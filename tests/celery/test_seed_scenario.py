"""The seed scenario end to end with real HTTP: a Flask app (a stock Celery client with taskd's
results backend, stock uuid4 ids) answers POST /render with 202 and a status link, a C task calls
a slow local API with libcurl, and GET /status answers 202 with PENDING (while it waits behind
another render on the one-slot worker), STARTED and PROGRESS, then 200 with the result, from a
*different* Flask process. Then the same flow with the libtask-only C client."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from common import BUILD, Checks, broker  # noqa: E402
from backend_env import backend_env  # noqa: E402

url = broker()
ROOT = os.environ.get("TASKD_SOURCE_ROOT", ".")
Q = f"t_seed_{os.getpid()}"
t = Checks()
procs = []


def start(cmd, env=None, **kw):
    p = subprocess.Popen(cmd, env=env, **kw)
    procs.append(p)
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, u):
    req = urllib.request.Request(u, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def wait_http(u):
    for _ in range(200):
        try:
            urllib.request.urlopen(u, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)


try:
    api = start(["/usr/bin/python3", f"{ROOT}/tests/harness/httpserver.py"], stdout=subprocess.PIPE,
                text=True)
    api_port = int(api.stdout.readline())
    api_url = f"http://127.0.0.1:{api_port}/delay/0.5"
    log = f"/tmp/seed-taskd-{os.getpid()}.log"
    start([f"{BUILD}/taskd/taskd", "--broker", url, "-Q", Q, "-c", "1",
           "--module", f"{BUILD}/examples/librender_audio.so"], stderr=open(log, "w"))
    for _ in range(400):
        if "event=worker_ready" in open(log).read():
            break
        time.sleep(0.02)
    else:
        print(open(log).read())
        t.check("taskd with the render module starts", False)
        t.finish()
    env = backend_env(RENDER_API_URL=api_url, RENDER_QUEUE=Q, RENDER_STEPS="4",
                      TASKD_BROKER_URL=url)
    ports = [free_port(), free_port()]
    for port in ports:
        start(["/usr/bin/python3", f"{ROOT}/examples/flask/app.py"], env=dict(env, PORT=str(port)),
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for port in ports:
        wait_http(f"http://127.0.0.1:{port}/healthz")

    t0 = time.time()
    code, headers, body = http("POST", f"http://127.0.0.1:{ports[0]}/render/song-7")
    t.check("POST /render answers 202 at once", code == 202 and time.time() - t0 < 2, str(code))
    loc = headers.get("Location", "")
    t.check("with Location: /status/<task_id>", loc.endswith(f"/status/{body.get('task_id')}"), loc)
    t.check("the id is Celery's own (uuid4)", len(body.get("task_id", "")) == 36 and
            body["task_id"][14] == "4", repr(body))
    # A second render waits behind the first on the one-slot worker: PENDING meanwhile.
    code2, headers2, _ = http("POST", f"http://127.0.0.1:{ports[0]}/render/song-6")
    locs = [loc, headers2.get("Location", "")]
    seen, final = [[], []], [None, None]
    while time.time() - t0 < 40 and None in final:
        for i, lc in enumerate(locs):
            if final[i] is not None or "/status" not in lc:
                continue
            code, _, doc = http("GET", f"http://127.0.0.1:{ports[1]}{lc[lc.index('/status'):]}")
            if code == 200:
                final[i] = doc
            else:
                seen[i].append((code, doc.get("state"), json.dumps(doc.get("progress"))))
        time.sleep(0.1)
    progress = [s for s in seen[0] if s[0] == 202 and s[1] == "PROGRESS"]
    t.check("the other web process answers 202 with progress while it runs", len(progress) >= 2,
            str(seen[0][:6]))
    t.check("then 200 with the result", final[0] is not None and final[0]["result"] ==
            {"song": "song-7", "steps": 4, "statuses": [200, 200, 200, 200]}, repr(final[0]))
    states = [st for code, st, _ in seen[1] if code == 202]
    order = [st for k, st in enumerate(states) if k == 0 or states[k - 1] != st]
    t.check("the queued render: 202 PENDING, then STARTED, then PROGRESS, then 200",
            order[:3] == ["PENDING", "STARTED", "PROGRESS"] and final[1] is not None and
            final[1]["result"]["song"] == "song-6", f"{order} {final[1]!r}")
    t.check("the renders took the API's time (2 x 4 x 0.5 s on one slot)",
            time.time() - t0 >= 4.0)

    out = subprocess.run([f"{BUILD}/examples/render_client", "song-8", api_url, "3"],
                         env=dict(os.environ, TASKD_BROKER_URL=url, TASKD_CLIENT_DEFAULT_QUEUE=Q),
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.strip().splitlines()
    t.check("libtask-only client: 202 then progress then 200",
            out.returncode == 0 and lines[0].startswith("202 Accepted") and
            any("PROGRESS" in line for line in lines) and lines[-1].startswith("200 SUCCESS") and
            '"song":"song-8"' in lines[-1], out.stdout + out.stderr)
finally:
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
t.finish()
