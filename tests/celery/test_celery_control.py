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

# Issue 22: every inspect and control command through the stock `celery` CLI, against a worker
# of one process (so a second task waits in the backlog: inspect reserved).
import json  # noqa: E402
from celery.events.state import State  # noqa: E402
from celery.exceptions import TimeLimitExceeded, SoftTimeLimitExceeded  # noqa: E402, F401
from celery.exceptions import TimeoutError as CeleryTimeout  # noqa: E402

Q2 = f"t_cc2_{os.getpid()}"
QB = f"t_cc2b_{os.getpid()}"
# Longer than the delay cascade takes (199 bytes): every countdown waits in the worker.
QLONG = f"t_cc2long_{os.getpid()}_" + "x" * 200
NODE2 = f"ctl2_{os.getpid()}@interop"
CTL = f"{os.environ.get('TASKD_BUILD_ROOT', 'build')}/taskctl/taskctl"


def cli(kind, *words, json_out=False, timeout=3):
    """`celery -b URL inspect|control WORDS -d NODE2`: (exit code, stdout+stderr, replies)."""
    cmd = ["/usr/bin/python3", "-m", "celery", "-b", url, kind, *words, "-d", NODE2,
           "-t", str(timeout)] + (["--json"] if json_out else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    replies = None
    if json_out and out.returncode == 0:
        data = json.loads(out.stdout.strip().splitlines()[-1])
        # inspect prints {node: reply}, control a list of {node: reply}
        data = {k: v for d in data for k, v in d.items()} if isinstance(data, list) else data
        replies = data.get(NODE2)
    return out.returncode, out.stdout + out.stderr, replies


def answered_ok(text):
    return f"{NODE2}: OK" in text and "ERROR" not in text


def wait_for(pred, seconds=5.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    return pred()


def ctl(*words):
    out = subprocess.run([CTL, "--broker", url, "--json", *words, "--destination", NODE2,
                          "--timeout", "3"], capture_output=True, text=True, timeout=30)
    try:
        return out.returncode, json.loads(out.stdout).get(NODE2)
    except ValueError:
        return out.returncode, out.stdout + out.stderr


api = app.control.inspect(destination=[NODE2], timeout=2)


def api_stats():
    return (api.stats() or {}).get(NODE2, {})


# prefetch = slots x worker.prefetch_multiplier (4) + worker.confirm_window (set here)
WINDOW = 10
with Taskd(Q2, "--hostname", NODE2, "-E", "-c", "1",
           env={"TASKD_WORKER_CONFIRM_WINDOW": str(WINDOW)}) as w2:
    for cmd in ("ping", "stats", "registered", "active", "reserved", "scheduled",
                "active_queues", "revoked", "conf", "clock", "report", "query_task"):
        rc, text, _ = cli("inspect", cmd, *(["nosuch-id"] if cmd == "query_task" else []))
        t.check(f"celery inspect {cmd} answers OK", rc == 0 and answered_ok(text), text[-400:])
    for cmd in ("memdump", "memsample", "objgraph"):
        rc, text, _ = cli("inspect", cmd)
        t.check(f"celery inspect {cmd}: an error reply 'not supported by taskd'",
                f"{NODE2}: ERROR" in text and "not supported by taskd" in text, text[-300:])
    rc, text, _ = cli("control", "election", "id1", "topic1")
    t.check("celery control election: 'not supported by taskd'",
            f"{NODE2}: ERROR" in text and "not supported by taskd" in text, text[-300:])
    unknown = app.control.broadcast("no_such_cmd", destination=[NODE2], reply=True, timeout=2)
    t.check("an unknown command answers Celery's KeyError",
            unknown == [{NODE2: {"error": "KeyError('no_such_cmd')"}}], repr(unknown))

    _, _, st = cli("inspect", "stats", json_out=True)
    st = st or {}
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    t.check("stats: pool of one process, Celery's keys",
            st.get("pool", {}).get("max-concurrency") == 1 and
            len(st["pool"].get("processes", [])) == 1 and
            st["pool"].get("max-tasks-per-child") == "N/A" and
            st.get("prefetch_count") == 4 + WINDOW, repr(st.get("pool")))
    t.check("stats: broker as kombu's Connection.info()",
            st.get("broker", {}).get("port") == port and st["broker"].get("transport") == "amqp"
            and "password" not in json.dumps(st["broker"]), repr(st.get("broker")))
    t.check("stats: rusage of the worker", isinstance(st.get("rusage"), dict) and
            st["rusage"].get("maxrss", 0) > 0 and "utime" in st["rusage"], repr(st.get("rusage")))
    t.check("stats: total is per task name (empty before any task)", st.get("total") == {},
            repr(st.get("total")))
    _, _, qs = cli("inspect", "active_queues", json_out=True)
    t.check("active_queues: the configured queue as kombu's Queue.as_dict()",
            [q["name"] for q in qs or []] == [Q2] and qs[0]["exchange"]["type"] == "direct" and
            qs[0]["routing_key"] == Q2 and qs[0]["durable"] is True, repr(qs))
    _, _, conf = cli("inspect", "conf", json_out=True)
    conf = conf or {}
    t.check("conf: taskd options and Celery names, no password",
            conf.get("worker.queues") == [Q2] and conf.get("worker_concurrency") == 1 and
            conf.get("worker_send_task_events") is True and
            ":guest@" not in json.dumps(conf) and "***" in conf.get("broker_url", ""),
            repr({k: conf.get(k) for k in ("worker.queues", "broker_url", "worker_concurrency")}))
    _, _, clk = cli("inspect", "clock", json_out=True)
    t.check("clock: Celery's {'clock': N}", isinstance((clk or {}).get("clock"), int) and
            clk["clock"] >= 1, repr(clk))
    _, _, rep = cli("inspect", "report", json_out=True)
    t.check("report: {'ok': text naming taskd}", "taskd" in (rep or {}).get("ok", ""), repr(rep))
    rid = str(uuid4())
    hello = (api.hello("someone@else", revoked={rid: time.time()}) or {}).get(NODE2)
    t.check("hello (mingle): our revoked ids and clock, the peer's revoke taken",
            isinstance(hello, dict) and rid in hello.get("revoked", {}) and
            isinstance(hello.get("clock"), int), repr(hello)[:300])
    t.check("  the peer's revoked id is listed by inspect revoked",
            rid in (api.revoked() or {}).get(NODE2, []))

    # active / reserved / query_task, and Celery's event State agrees with the replies
    def load():
        # long enough to outlast the three CLI calls: nothing changes while they ask
        load.sleeper = app.send_task("test.sleep", (8,), queue=Q2)
        time.sleep(0.3)
        load.waiting = [app.send_task("test.add", (i, 1), queue=Q2) for i in range(2)]
        time.sleep(0.7)
        _, _, load.active = cli("inspect", "active", json_out=True)
        _, _, load.reserved = cli("inspect", "reserved", json_out=True)
        _, _, load.query = cli("inspect", "query_task", load.sleeper.id, load.waiting[0].id,
                               json_out=True)
    evs = collect_events(12, load)
    act, res = load.active or [], load.reserved or []
    t.check("inspect active: the running task with its pid and start time",
            [a["id"] for a in act] == [load.sleeper.id] and act[0]["worker_pid"] in
            st["pool"]["processes"] and act[0]["time_start"] > time.time() - 10, repr(act))
    t.check("inspect reserved: the two waiting for the one process, in order, not started",
            [r["id"] for r in res] == [r.id for r in load.waiting] and
            all(r["time_start"] is None and r["worker_pid"] is None and r["name"] == "test.add"
                for r in res), repr(res))
    q = load.query or {}
    t.check("query_task: active and reserved",
            q.get(load.sleeper.id, [None])[0] == "active" and
            q.get(load.waiting[0].id, [None])[0] == "reserved", repr(q)[:300])
    state = State()
    for ev in evs:
        state.event(ev)
    mine = {u: tk for u, tk in state.tasks.items() if tk.worker and tk.worker.hostname == NODE2}
    started = {u for u, tk in mine.items() if tk.state == "STARTED"}
    received = {u for u, tk in mine.items() if tk.state == "RECEIVED"}
    t.check("event State: STARTED tasks are inspect active's",
            started == {a["id"] for a in act}, f"{started} vs {[a['id'] for a in act]}")
    t.check("event State: RECEIVED tasks are inspect reserved's",
            received == {r["id"] for r in res}, f"{received} vs {[r['id'] for r in res]}")
    t.check("the backlog then runs", [r.get(timeout=20) for r in load.waiting] == [1, 2])

    # scheduled: a countdown under a second is held in the worker
    r = app.send_task("test.add", (5, 5), queue=Q2, countdown=0.5)
    sch = wait_for(lambda: (api.scheduled() or {}).get(NODE2), 0.4) or []
    t.check("a task sent with countdown 0.5 s is in inspect scheduled",
            [s["request"]["id"] for s in sch] == [r.id] and sch[0]["eta"].endswith("+00:00")
            and sch[0]["request"]["name"] == "test.add", repr(sch))
    t.check("  and runs when due", r.get(timeout=10) == 10)

    # add_consumer / cancel_consumer
    rc, text, _ = cli("control", "add_consumer", QB)
    t.check("celery control add_consumer answers OK", rc == 0 and answered_ok(text) and
            f"add consumer {QB}" in text, text[-300:])
    _, _, qs = cli("inspect", "active_queues", json_out=True)
    t.check("  active_queues lists it", [q["name"] for q in qs or []] == [Q2, QB], repr(qs))
    t.check("  a task sent to it runs", app.send_task("test.add", (2, 3), queue=QB)
            .get(timeout=10) == 5)
    rc, text, _ = cli("control", "cancel_consumer", QB)
    t.check("celery control cancel_consumer answers OK", rc == 0 and answered_ok(text) and
            f"no longer consuming from {QB}" in text, text[-300:])
    late = app.send_task("test.add", (3, 3), queue=QB)
    try:
        late.get(timeout=2)
        t.check("  after cancel_consumer a task sent to it waits", False, "it ran")
    except CeleryTimeout:
        t.check("  after cancel_consumer a task sent to it waits", True)
    _, _, qs = cli("inspect", "active_queues", json_out=True)
    t.check("  active_queues no longer lists it", [q["name"] for q in qs or []] == [Q2],
            repr(qs))
    cli("control", "add_consumer", QB)
    t.check("  consuming it again runs the waiting task", late.get(timeout=10) == 6)

    # an added queue outlives a reconnect (the broker closes the worker's connection)
    mport = os.environ.get("TASKD_RMQ_MGMT_PORT_1")
    if mport:
        import base64  # noqa: E402
        import urllib.parse  # noqa: E402
        import urllib.request  # noqa: E402
        u = urllib.parse.urlparse(url)
        auth = base64.b64encode(f"{urllib.parse.unquote(u.username or 'guest')}:"
                                f"{urllib.parse.unquote(u.password or 'guest')}".encode()).decode()

        def mgmt(path, method="GET"):
            req = urllib.request.Request(f"http://127.0.0.1:{mport}{path}", method=method)
            req.add_header("Authorization", "Basic " + auth)
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = resp.read()
                return json.loads(body) if body else None
        conns = wait_for(lambda: [c["name"] for c in mgmt("/api/connections") if
                                  c.get("client_properties", {}).get("connection_name") ==
                                  f"taskd worker {NODE2}"], 10) or []
        for c in conns:
            mgmt("/api/connections/" + urllib.parse.quote(c, safe=""), "DELETE")
        back = wait_for(lambda: open(w2.log).read().count("event=broker_connected") >= 2, 20)
        _, _, qs = cli("inspect", "active_queues", json_out=True)
        t.check("after a reconnect the added queue is still consumed",
                len(conns) == 1 and back and [q["name"] for q in qs or []] == [Q2, QB] and
                app.send_task("test.add", (8, 8), queue=QB).get(timeout=15) == 16,
                f"{conns} {back} {[q['name'] for q in qs or []]}")
    else:
        t.check("management API for the reconnect check (start the broker with --management)",
                os.environ.get("TASKD_REQUIRE_MANAGEMENT") != "1")
    cli("control", "cancel_consumer", QB)
    # a queue the broker refuses as taskd declares it (other arguments): an error reply, and
    # the worker goes on
    import kombu  # noqa: E402
    QX = f"t_cc2x_{os.getpid()}"
    with app.connection() as conn:
        kombu.Queue(QX, kombu.Exchange(QX), routing_key=QX,
                    queue_arguments={"x-max-priority": 5})(conn.default_channel).declare()
    rc, text, _ = cli("control", "add_consumer", QX)
    t.check("add_consumer of a queue declared with other arguments: an error reply",
            f"{NODE2}: ERROR" in text and "PRECONDITION_FAILED" in text, text[-300:])
    # Its own dead queue: every message would be quarantined there again, for ever.
    rc, text, _ = cli("control", "add_consumer", "taskd.dead")
    t.check("add_consumer of the dead queue: an error reply", f"{NODE2}: ERROR" in text,
            text[-300:])
    _, _, qs = cli("inspect", "active_queues", json_out=True)
    t.check("  not listed, and the worker goes on", [q["name"] for q in qs or []] == [Q2] and
            app.send_task("test.add", (6, 6), queue=Q2).get(timeout=10) == 12, repr(qs))

    # scheduled through the CLI: a queue too long for the delay cascade holds any countdown
    cli("control", "add_consumer", QLONG)

    def held():
        held.r = app.send_task("test.add", (1, 1), queue=QLONG, countdown=4)
        _, _, held.sch = cli("inspect", "scheduled", json_out=True)
        held.asked = time.time()
        held.result = held.r.get(timeout=15)
    evs = collect_events(20, held)
    r, sch = held.r, held.sch
    t.check("celery inspect scheduled: the held countdown task with eta and request",
            [s["request"]["id"] for s in sch or []] == [r.id] and sch[0]["priority"] == 6 and
            sch[0]["request"]["args"] == [1, 1], repr(sch))
    state = State()
    for ev in evs:
        if ev["timestamp"] <= held.asked:  # what the State knew when the reply came
            state.event(ev)
    tk = state.tasks.get(r.id)
    t.check("  event State: the held task is RECEIVED with its eta",
            tk is not None and tk.state == "RECEIVED" and tk.eta is not None and
            tk.eta[:19] == sch[0]["eta"][:19], repr(tk and (tk.state, tk.eta)))
    t.check("  and it runs when due", held.result == 2)
    mine = [e["type"] for e in evs if e.get("uuid") == r.id]
    t.check("  one task-received for it (at the hold, not again when due), then started",
            mine == ["task-received", "task-started", "task-succeeded"], repr(mine))
    cli("control", "cancel_consumer", QLONG)

    # pool_grow / pool_shrink / pool_restart
    pid0 = api_stats()["pool"]["processes"]
    rc, text, _ = cli("control", "pool_grow", "1")
    t.check("celery control pool_grow 1 answers OK", rc == 0 and answered_ok(text) and
            "pool will grow" in text, text[-300:])
    st = wait_for(lambda: (lambda s: s if len(s["pool"]["processes"]) == 2 else None)(
        api_stats()))
    t.check("  stats shows two processes and max-concurrency 2, prefetch 8 + the window",
            st is not None and st["pool"]["max-concurrency"] == 2 and
            st["prefetch_count"] == 8 + WINDOW, repr(st and st["pool"]))
    two = [app.send_task("test.sleep", (1,), queue=Q2) for _ in range(2)]
    # On the worker's clock (date_done): Celery's client may stall a get() by 1 s (see above).
    vals = [x.get(timeout=10) for x in two]
    apart = abs((two[0].date_done - two[1].date_done).total_seconds())
    t.check("  two sleeps of 1 s run side by side (end within 0.5 s of each other)",
            vals == [1, 1] and apart < 0.5, f"{apart:.2f}s apart")
    rc, text, _ = cli("control", "pool_shrink", "1")
    t.check("celery control pool_shrink 1 answers OK", rc == 0 and answered_ok(text) and
            "pool will shrink" in text, text[-300:])
    st = wait_for(lambda: (lambda s: s if len(s["pool"]["processes"]) == 1 else None)(
        api_stats()))
    t.check("  stats shows one process again", st is not None and
            st["pool"]["max-concurrency"] == 1 and st["prefetch_count"] == 4 + WINDOW,
            repr(st and st["pool"]))
    rc, text, _ = cli("control", "pool_shrink", "1")
    t.check("  shrinking the last process is an error reply", f"{NODE2}: ERROR" in text,
            text[-300:])
    pid1 = api_stats()["pool"]["processes"]
    rc, text, _ = cli("control", "pool_restart")
    t.check("celery control pool_restart answers OK", rc == 0 and answered_ok(text) and
            "reload started" in text, text[-300:])
    pid2 = wait_for(lambda: (lambda p: p if len(p) == 1 and p != pid1 else None)(
        api_stats()["pool"]["processes"]))
    t.check("  the child is replaced by a fresh one", pid2 is not None and pid2 != pid0,
            f"{pid1} -> {pid2}")
    t.check("  and runs tasks", app.send_task("test.add", (4, 4), queue=Q2).get(timeout=10) == 8)

    # time_limit (soft: the task is cancelled; hard: its process is killed)
    rc, text, _ = cli("control", "time_limit", "test.sleep", "0.5")
    t.check("celery control time_limit answers OK", rc == 0 and answered_ok(text) and
            "time limits set successfully" in text, text[-300:])
    t0 = time.time()
    try:
        app.send_task("test.sleep", (5,), queue=Q2).get(timeout=10)
        t.check("  a 5 s sleep ends at the 0.5 s soft limit", False, "it finished")
    except Exception as e:  # noqa: BLE001
        t.check("  a 5 s sleep ends at the 0.5 s soft limit",
                type(e).__name__ == "SoftTimeLimitExceeded" and time.time() - t0 < 3,
                f"{type(e).__name__} {time.time() - t0:.2f}s")
    cli("control", "time_limit", "test.busy", "0", "1")
    t0 = time.time()
    try:
        app.send_task("test.busy", (5,), queue=Q2).get(timeout=10)
        t.check("  a hard limit of 1 s kills a busy task", False, "it finished")
    except Exception as e:  # noqa: BLE001
        t.check("  a hard limit of 1 s kills a busy task",
                type(e).__name__ == "TimeLimitExceeded" and time.time() - t0 < 4,
                f"{type(e).__name__}: {e} {time.time() - t0:.2f}s")
    cli("control", "time_limit", "test.sleep", "0", "0")
    t.check("  time_limit 0 0 restores the default",
            app.send_task("test.sleep", (1,), queue=Q2).get(timeout=10) == 1)
    rc, text, _ = cli("control", "time_limit", "no.such", "1")
    t.check("  time_limit of an unknown task: Celery's 'unknown task' error",
            f"{NODE2}: ERROR" in text and "unknown task" in text, text[-300:])

    # rate_limit: a task waiting for its token is reserved too
    rc, text, _ = cli("control", "rate_limit", "test.echo", "0.5")
    t.check("celery control rate_limit answers OK", rc == 0 and answered_ok(text), text[-300:])
    echo = [app.send_task("test.echo", (i,), queue=Q2) for i in range(3)]
    res = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(
        (api.reserved() or {}).get(NODE2, [])), 1.5) or []
    t.check("  inspect reserved lists the tasks waiting for a token",
            [r["id"] for r in res] == [e.id for e in echo[1:]], repr(res)[:300])
    t.check("  they run, a token each 2 s", [e.get(timeout=15)[0] for e in echo] ==
            [[0], [1], [2]])
    rc, text, _ = cli("control", "rate_limit", "test.echo", "0")
    t.check("  rate_limit 0 answers OK", rc == 0 and answered_ok(text), text[-300:])
    _, _, reg = cli("inspect", "registered", json_out=True)
    t.check("inspect registered shows a task's rate limit as Celery does",
            "test.limited [rate_limit=1/s]" in (reg or []) and "test.add" in reg, repr(reg))

    # events on and off, heartbeat
    rc, text, _ = cli("control", "disable_events")
    t.check("celery control disable_events answers OK",
            answered_ok(text) and "task events disabled" in text, text[-300:])

    def quiet_task():
        quiet_task.r = app.send_task("test.add", (7, 7), queue=Q2)
        quiet_task.r.get(timeout=10)
        time.sleep(2.5)  # one heartbeat period
    evs = collect_events(6, quiet_task)
    t.check("  no task events while disabled, heartbeats go on",
            not [e for e in evs if e.get("uuid") == quiet_task.r.id] and
            [e for e in evs if e.get("hostname") == NODE2 and e["type"] == "worker-heartbeat"],
            repr([e["type"] for e in evs]))
    rc, text, _ = cli("control", "enable_events")
    t.check("celery control enable_events answers OK",
            answered_ok(text) and "task events enabled" in text, text[-300:])
    rc, text, _ = cli("control", "heartbeat")
    t.check("celery control heartbeat answers OK", rc == 0 and answered_ok(text), text[-300:])
    _, _, st = cli("inspect", "stats", json_out=True)
    t.check("stats total counts tasks by name", (st or {}).get("total", {}).get("test.add", 0)
            >= 7 and st["total"].get("test.sleep", 0) >= 3, repr((st or {}).get("total")))

    # revoke and terminate through the CLI
    victim = str(uuid4())
    rc, text, _ = cli("control", "revoke", victim)
    t.check("celery control revoke answers OK", answered_ok(text) and
            f"tasks {victim} flagged as revoked" in text, text[-300:])
    r = app.send_task("test.sleep", (10,), queue=Q2)
    wait_for(lambda: (api.active() or {}).get(NODE2))
    rc, text, _ = cli("control", "terminate", "SIGKILL", r.id)
    t.check("celery control terminate names the running task",
            answered_ok(text) and f"terminate: {r.id}" in text, text[-300:])
    try:
        r.get(timeout=10)
        t.check("  it ends REVOKED", False, "it finished")
    except TaskRevokedError:
        t.check("  it ends REVOKED", True)

    # mingle: a stock Celery worker starting up asks `hello` and takes taskd's revoked ids
    PYNODE = f"py{os.getpid()}@interop"
    pylog = open(f"/tmp/celery-worker-mingle-{os.getpid()}.log", "w")
    py = subprocess.Popen(["/usr/bin/python3", "-m", "celery", "-A", "pytasks", "worker",
                           "-Q", f"t_cc2py_{os.getpid()}", "-c", "1", "-P", "solo", "-n", PYNODE,
                           "--without-gossip", "--without-heartbeat", "-l", "info"],
                          cwd=os.path.dirname(os.path.abspath(__file__)),
                          env=dict(os.environ, PYTASKS_QUEUE=f"t_cc2py_{os.getpid()}"),
                          stdout=pylog, stderr=subprocess.STDOUT)
    try:
        up = wait_for(lambda: app.control.ping(destination=[PYNODE], timeout=0.5), 30)
        pyrev = (app.control.inspect(destination=[PYNODE], timeout=2).revoked() or {})
        t.check("a Celery worker's mingle takes taskd's revoked ids (hello)",
                up and victim in pyrev.get(PYNODE, []) and r.id in pyrev.get(PYNODE, []),
                f"{up} {str(pyrev)[:300]}")
    finally:
        py.terminate()
        py.wait(timeout=30)

    # autoscale
    rc, text, _ = cli("control", "autoscale", "3", "1")
    t.check("celery control autoscale 3 1 answers OK", answered_ok(text) and
            "autoscale now max=3 min=1" in text, text[-300:])
    three = [app.send_task("test.sleep", (2,), queue=Q2) for _ in range(3)]
    st = wait_for(lambda: (lambda s: s if len(s["pool"]["processes"]) == 3 else None)(
        api_stats()), 4)
    t.check("  demand grows the pool to max (stats autoscaler, processes)",
            st is not None and st.get("autoscaler", {}).get("max") == 3 and
            st["pool"]["max-concurrency"] == 3, repr(st and (st["pool"], st.get("autoscaler"))))
    t.check("  the three run", [x.get(timeout=15) for x in three] == [2, 2, 2])
    rc, text, _ = cli("control", "pool_grow", "1")
    t.check("  pool_grow with autoscale on: Celery's error",
            f"{NODE2}: ERROR" in text and "not supported with autoscale" in text, text[-300:])
    t0 = time.time()
    idle = wait_for(lambda: len(api_stats()["pool"]["processes"]) == 1, 40)
    t.check("  idle, it shrinks to min after the 30 s keepalive",
            idle and time.time() - t0 > 20, f"{idle} after {time.time() - t0:.1f}s")
    rc, text, _ = cli("control", "autoscale", "2", "2")
    t.check("  autoscale 2 2 grows it to min at once", answered_ok(text) and wait_for(
        lambda: len(api_stats()["pool"]["processes"]) == 2), text[-300:])
    rc, text, _ = cli("control", "autoscale", "1", "1")
    t.check("  autoscale 1 1 shrinks it back at once", answered_ok(text) and wait_for(
        lambda: len(api_stats()["pool"]["processes"]) == 1), text[-300:])

    # taskctl offers the same set
    rc, out = ctl("inspect", "active_queues")
    t.check("taskctl --json inspect active_queues", rc == 0 and isinstance(out, list) and
            out[0]["name"] == Q2, repr(out)[:300])
    r = app.send_task("test.add", (1, 2), queue=Q2, countdown=0.6)
    rc, out = ctl("inspect", "scheduled")
    t.check("taskctl --json inspect scheduled", rc == 0 and isinstance(out, list) and
            [s["request"]["id"] for s in out] == [r.id], repr(out)[:300])
    rc, out = ctl("control", "add_consumer", QB)
    t.check("taskctl --json control add_consumer", rc == 0 and out == {"ok": f"add consumer {QB}"},
            repr(out))
    rc, out = ctl("control", "rate_limit", "no.such", "1/s")
    t.check("taskctl control: an error reply exits 4", rc == 4 and "error" in out, repr(out))
    rc, out = ctl("inspect", "memdump")
    t.check("taskctl inspect memdump: not supported", rc == 4 and
            "not supported by taskd" in out.get("error", ""), repr(out))

    rc, text, _ = cli("control", "shutdown")
    t.check("celery control shutdown answers OK", answered_ok(text), text[-300:])
    try:
        code = w2.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        code = None
    t.check("  and the worker stops warm", code == 0, str(code))
t.finish()
