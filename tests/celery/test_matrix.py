"""The task-lifecycle matrix (issue 14), driven by a stock Celery 5.2 client as a user writes it.

{no delay, countdown 2 s, eta 2 s ahead, a retry first} x {plain, retry, link, link_error, chain,
group} x {the `celery` queue, a routed queue `q2` (queue='q2'), queue `q3` bound to a direct exchange
`ex1` with routing key `rk3`, sent with exchange='ex1', routing_key='rk3'} x worker {-c 1 --threads 1, -c 2 --threads 4}.

All cells of a worker configuration are sent at once and then waited for. Each cell must end in
its expected state and result; every link / link_error / chain callback (no explicit task_id)
must run exactly once (counted from the worker's task events: taskd -E, a stock Celery event
receiver), with the finished task as its parent; a countdown/eta task must not start early; and
afterwards the broker holds no queue that the test did not expect (no `rk3`, no
`0.0.0...1.celery`), and no task message is left waiting in the task queues.

The retry row: test.retry(n) asks for a 0.1 s retry (parked in the broker's delay cascade like
any retry backoff; no test task retries later than that), test.flaky autoretries with backoff.
"""
import base64
import json
import subprocess
import os
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from uuid import uuid4

sys.path.insert(0, os.path.dirname(__file__))
from common import BUILD, Checks, Taskd, broker  # noqa: E402

url = broker()
from celery import Celery, chain, group  # noqa: E402
from celery.result import ResultSet  # noqa: E402
from celery.exceptions import TimeoutError as CeleryTimeout  # noqa: E402
from kombu import Exchange, Queue  # noqa: E402

WAIT_S = 30          # each cell's result, counted from the moment all cells were sent
CALLBACK_WAIT_S = 10  # callbacks, after their parents ended
ROUTED = "q2"
DIRECT_Q, DIRECT_X, DIRECT_RK = "q3", "ex1", "rk3"

app = Celery("matrix", broker=url, backend="rpc://")
app.conf.task_default_queue = "celery"
app.conf.task_queues = [
    Queue("celery", Exchange("celery", type="direct"), routing_key="celery"),
    Queue(ROUTED, Exchange(ROUTED, type="direct"), routing_key=ROUTED),
    Queue(DIRECT_Q, Exchange(DIRECT_X, type="direct"), routing_key=DIRECT_RK),
]
t = Checks()
S = app.signature


# ---------------------------------------------------------------------------------------------
# Broker observation: the management API (queue list) and passive declares (exact counts).

def mgmt_queues():
    """Names of every queue on the node, or None without a management port."""
    port = os.environ.get("TASKD_RMQ_MGMT_PORT_1")
    if not port:
        return None
    u = urllib.parse.urlparse(url)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/queues?columns=name")
    auth = f"{urllib.parse.unquote(u.username or 'guest')}:{urllib.parse.unquote(u.password or 'guest')}"
    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return {q["name"] for q in json.load(resp)}


def ready_counts(names):
    """Messages ready in each existing queue of `names` (passive declare; absent ones skipped)."""
    out = {}
    with app.connection_for_write() as conn:
        for n in names:
            ch = conn.channel()
            try:
                out[n] = ch.queue_declare(n, passive=True).message_count
            except Exception:
                pass
            finally:
                try:
                    ch.close()
                except Exception:
                    pass
    return out


DELAY_QUEUES = [f"taskd.delay.{100 + i}" for i in range(28)]
TASK_QUEUES = ["celery", ROUTED, DIRECT_Q]


def is_expected_queue(name):
    """Queues a run of this test may leave: its task queues, taskd's own (taskd.*), reply queues
    (uuids), pidbox and event-receiver queues."""
    if name.startswith("taskd.chord."):  # a barrier is deleted once its callback is out
        return False
    if name in TASK_QUEUES or name.startswith("taskd.") or name.startswith("celeryev."):
        return True
    if name.endswith(".pidbox") or name.endswith("reply.celery.pidbox"):
        return True
    try:
        return str(__import__("uuid").UUID(name)) == name
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Task events (taskd -E) through a stock Celery event receiver.

class Events(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.lock = threading.Lock()
        self.all = []
        self.ready = threading.Event()
        self.recv = None

    def on_event(self, ev):
        with self.lock:
            self.all.append(ev)

    def run(self):
        with app.connection_for_read() as conn:
            self.recv = app.events.Receiver(conn, handlers={"*": self.on_event})
            self.ready.set()
            try:
                self.recv.capture(limit=None, timeout=None, wakeup=False)
            except Exception as e:  # the test reports missing events, not this thread
                print(f"# event receiver stopped: {e!r}")

    def stop(self):
        if self.recv is not None:
            self.recv.should_stop = True
        self.join(timeout=10)

    def snapshot(self):
        with self.lock:
            return list(self.all)

    def wait_for(self, pred, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(pred(e) for e in self.snapshot()):
                return True
            time.sleep(0.05)
        return False


def parse_result(s):
    """taskd's task-succeeded `result` is JSON; a Python worker's is a repr."""
    try:
        return json.loads(s)
    except (TypeError, ValueError):
        return s


# ---------------------------------------------------------------------------------------------
# The matrix.

DELAYS = ["none", "countdown", "eta", "retry"]
SHAPES = ["plain", "retry", "link", "link_error", "chain", "group"]
ROUTES = ["celery", ROUTED, DIRECT_Q]


def delay_opts(delay):
    if delay == "countdown":
        return {"countdown": 2}
    if delay == "eta":
        return {"eta": datetime.now(timezone.utc) + timedelta(seconds=2)}
    return {}


def work(delay, i):
    """A task that ends SUCCESS with a known value; in the retry row it first retries."""
    if delay == "retry":
        return S("test.retry", (i,)), i
    return S("test.add", (i, 100)), i + 100


class Cell:
    def __init__(self, cfg, delay, shape, route):
        self.name = f"{cfg} {delay}/{shape}/{route}"
        self.delay, self.shape, self.route = delay, shape, route
        self.token = f"tok-{uuid4().hex[:12]}"
        self.result = None        # AsyncResult or GroupResult of what the cell waits for
        self.expect_state = "SUCCESS"
        self.expect = None        # value, or an exception type name for FAILURE
        self.callback = None      # ("link"|"link_error"|"chain", expected echo args as a lambda)
        self.delayed_ids = []     # tasks that must not start before sent + 2 s
        self.sent_at = None
        self.problems = []

    def send(self):
        opts = delay_opts(self.delay)
        if self.route == ROUTED:
            opts["queue"] = ROUTED
        elif self.route == DIRECT_Q:
            # Named explicitly: for queue="q3" Celery would publish through the default exchange
            # (routing key "q3"), as it does for any direct-exchange queue it can address so.
            opts["exchange"], opts["routing_key"] = DIRECT_X, DIRECT_RK
        d, tok = self.delay, self.token
        self.sent_at = time.time()
        if self.shape == "plain":
            sig, self.expect = work(d, 1)
            self.result = sig.apply_async(**opts)
            self.delayed_ids = [self.result.id]
        elif self.shape == "retry":
            if d == "retry":
                sig, self.expect = S("test.flaky", (2, "ConnectionError")), 2
            else:
                sig, self.expect = S("test.retry", (2,)), 2
            self.result = sig.apply_async(**opts)
            self.delayed_ids = [self.result.id]
        elif self.shape == "link":
            sig, v = work(d, 2)
            self.expect = v
            self.result = sig.apply_async(link=S("test.echo", (tok,)), **opts)
            self.delayed_ids = [self.result.id]
            self.callback = ("link", lambda parent_id: [v, tok])
        elif self.shape == "link_error":
            if d == "retry":  # autoretried 3 times, then fails with its own exception
                sig, self.expect = S("test.flaky", (9, "TimeoutError")), "TimeoutError"
            else:
                sig, self.expect = S("test.fail", (tok,)), "ValueError"
            self.expect_state = "FAILURE"
            self.result = sig.apply_async(link_error=S("test.echo", (tok,)), **opts)
            self.delayed_ids = [self.result.id]
            self.callback = ("link_error", lambda parent_id: [parent_id, tok])
        elif self.shape == "chain":
            sig, v = work(d, 3)
            self.expect = [[v + 10, tok], {}]
            self.result = chain(sig, S("test.add", (10,)), S("test.echo", (tok,))).apply_async(**opts)
            first = self.result
            while first.parent is not None:
                first = first.parent
            self.delayed_ids = [first.id]
            self.callback = ("chain", None)
        elif self.shape == "group":
            sigs = [work(d, i) for i in (1, 2, 3)]
            self.expect = [v for _, v in sigs]
            self.result = group(s for s, _ in sigs).apply_async(**opts)
            self.delayed_ids = [r.id for r in self.result.results]

    def wait(self, deadline):
        try:
            if self.shape == "group":
                # each member on its own: GroupResult.get() of results already in sits out
                # Celery's 1 s drain timeout
                v = [r.get(timeout=max(0.1, deadline - time.time()), propagate=False)
                     for r in self.result.results]
            else:
                v = self.result.get(timeout=max(0.1, deadline - time.time()), propagate=False)
        except CeleryTimeout:
            states = ([r.state for r in self.result.results] if self.shape == "group"
                      else [self.result.state])
            self.problems.append(f"no result within {WAIT_S} s (state {'/'.join(states)})")
            return False
        if self.shape == "group":
            states = [r.state for r in self.result.results]
            if states != ["SUCCESS"] * 3 or v != self.expect:
                self.problems.append(f"group ended {states} {v!r}, expected {self.expect!r}")
            return True
        st = self.result.state
        if self.expect_state == "FAILURE":
            if st != "FAILURE" or type(v).__name__ != self.expect:
                self.problems.append(f"ended {st} {v!r}, expected FAILURE {self.expect}")
        elif st != "SUCCESS" or v != self.expect:
            self.problems.append(f"ended {st} {v!r}, expected SUCCESS {self.expect!r}")
        return True


def echo_runs(events, token):
    """task-received events of test.echo whose args carry `token`, by uuid."""
    runs = {}
    for e in events:
        if e.get("type") == "task-received" and e.get("name") == "test.echo" and \
                token in str(e.get("args")):
            runs.setdefault(e["uuid"], []).append(e)
    return runs


def check_callbacks(cells, events):
    by_uuid = {}
    for e in events:
        by_uuid.setdefault(e.get("uuid"), []).append(e)
    for c in cells:
        if c.callback is None:
            continue
        kind, make_args = c.callback
        runs = echo_runs(events, c.token)
        if len(runs) != 1:
            c.problems.append(f"{kind} callback ran {len(runs)} times (distinct ids), expected 1")
            continue
        (cb_id, received), = runs.items()
        succeeded = [e for e in by_uuid.get(cb_id, []) if e.get("type") == "task-succeeded"]
        if len(received) != 1 or len(succeeded) != 1:
            c.problems.append(f"{kind} callback {cb_id}: received {len(received)} times, "
                              f"succeeded {len(succeeded)} times, expected 1 and 1")
            continue
        if kind == "chain":
            if cb_id != c.result.id:
                c.problems.append(f"chain's last step ran as {cb_id}, not {c.result.id}")
            continue
        parent = c.result.id
        if received[0].get("parent_id") != parent:
            c.problems.append(f"{kind} callback parent_id {received[0].get('parent_id')}, "
                              f"expected {parent}")
        got = parse_result(succeeded[0].get("result"))
        want = [make_args(parent), {}]
        if got != want:
            c.problems.append(f"{kind} callback result {got!r}, expected {want!r}")


def check_not_early(cells, events):
    started = {}
    for e in events:
        if e.get("type") == "task-started":
            started.setdefault(e["uuid"], e.get("timestamp"))
    for c in cells:
        if c.delay not in ("countdown", "eta"):
            continue
        for tid in c.delayed_ids:
            ts = started.get(tid)
            if ts is not None and ts < c.sent_at + 1.9:
                c.problems.append(f"task {tid} started {ts - c.sent_at:.2f} s after sending, "
                                  "before its 2 s delay")


def delayed_total():
    """Messages parked in the delay cascade (other tests' long countdowns may sit there too)."""
    return sum(ready_counts(DELAY_QUEUES).values())


def quiet(events_thread, timeout, delayed_baseline):
    """Wait until no task message waits in the task queues, the delay cascade holds no more than
    it did before the cells were sent, and no task event came for 0.5 s (nothing more is going to
    run), or `timeout`."""
    deadline = time.time() + timeout
    last_n, last_change = -1, time.time()
    while time.time() < deadline:
        n = len(events_thread.snapshot())
        if n != last_n:
            last_n, last_change = n, time.time()
        if not any(ready_counts(TASK_QUEUES).values()) and \
                delayed_total() <= delayed_baseline and time.time() - last_change >= 0.5:
            return True
        time.sleep(0.1)
    return False


def run_config(cfg, worker_args, before_queues):
    t0 = time.time()
    ev = Events()
    ev.start()
    ev.ready.wait(10)
    node = f"matrix-{cfg}-{os.getpid()}@localhost"
    dead_before = ready_counts(["taskd.dead"]).get("taskd.dead", 0)
    with Taskd("celery,q2,q3", "--hostname", node, "-E", "--loglevel", "debug",
               *worker_args) as worker:
        # The receiver's queue is bound once the worker's first event reaches it.
        if not ev.wait_for(lambda e: e.get("hostname") == node, 15):
            t.check(f"{cfg}: event receiver sees the worker", False)
        cells = [Cell(cfg, d, s, r) for d in DELAYS for s in SHAPES for r in ROUTES]
        delayed_baseline = delayed_total()
        for c in cells:
            c.send()
        # The operator's way (issue 14's first report): taskctl call with a countdown, a retry.
        calls = [(what, subprocess.Popen(
            [f"{BUILD}/taskctl/taskctl", "--broker", url, "call", "test.retry", "--args", "[1]",
             "--countdown", "2", "--timeout", str(WAIT_S), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for what, extra in (("celery", []), (ROUTED, ["--queue", ROUTED]))]
        t_sent = time.time()
        deadline = t_sent + WAIT_S
        pending = ResultSet([r for c in cells for r in
                             (c.result.results if c.shape == "group" else [c.result])])
        try:  # all at once: one get() after another can sit out Celery's 1 s drain timeout
            pending.join_native(timeout=WAIT_S, propagate=False)
        except CeleryTimeout:
            pass
        for c in cells:
            c.wait(deadline)
        for what, p in calls:
            out, err = p.communicate(timeout=WAIT_S + 10)
            t.check(f"{cfg} taskctl call test.retry --args [1] --countdown 2 ({what})",
                    p.returncode == 0 and out.strip() == "1",
                    f"exit {p.returncode}, out {out.strip()!r}, err {err.strip()!r}")
        t_results = time.time()
        # Callbacks: wait for each expected one to have succeeded (or the deadline), then for
        # quiet, so that a second run would have been seen.
        cb_deadline = time.time() + CALLBACK_WAIT_S
        for c in cells:
            if c.callback is not None:
                ev.wait_for(lambda e, tok=c.token: e.get("type") == "task-received" and
                            c.token in str(e.get("args")), max(0, cb_deadline - time.time()))
        t_callbacks = time.time()
        settled = quiet(ev, 10, delayed_baseline)
        print(f"# {cfg}: sent in {t_sent - t0:.1f} s, results {t_results - t_sent:.1f} s, "
              f"callbacks {t_callbacks - t_results:.1f} s, quiet {time.time() - t_callbacks:.1f} s")
        events = ev.snapshot()
        check_callbacks(cells, events)
        check_not_early(cells, events)
        for c in cells:
            t.check(c.name, not c.problems, "; ".join(c.problems))
        t.check(f"{cfg}: no task message left waiting in celery/q2/q3 or the delay cascade",
                settled, f"delay cascade held {delayed_baseline} before, now " +
                str({k: v for k, v in ready_counts(TASK_QUEUES + DELAY_QUEUES).items() if v}))
        dead = ready_counts(["taskd.dead"]).get("taskd.dead", 0) - dead_before
        t.check(f"{cfg}: nothing quarantined (the matrix sends no bad input)", dead == 0,
                f"{dead} new messages in taskd.dead (taskctl dead lists them); log {worker.log}")
        t.check(f"{cfg}: taskd still alive", worker.proc.poll() is None)
    t.check(f"{cfg}: taskd exits 0 on SIGTERM", worker.proc.returncode == 0,
            f"exit {worker.proc.returncode}; log {worker.log}")
    ev.stop()
    after = mgmt_queues()
    if after is not None:
        stray = sorted(q for q in after - before_queues if not is_expected_queue(q))
        t.check(f"{cfg}: the broker holds no unexpected queue", not stray, str(stray))
    fails = sum(1 for c in cells if c.problems)
    print(f"# {cfg}: {len(cells)} cells, {fails} failed, {time.time() - t0:.1f} s")


# Both sides declare q3 alike (durable, no arguments); the client binds it to ex1 with rk3,
# as a Celery app declares its task_queues (taskd -Q q3 adds its own q3 -> q3 binding).
# Whatever an earlier test left in these queues is not ours to run (it could be bad input for
# this worker, or pass for a callback run): start from empty queues.
with app.connection_for_write() as conn:
    for q in app.conf.task_queues:
        q(conn.default_channel).declare()
        conn.default_channel.queue_purge(q.name)
before = mgmt_queues()
if before is None:
    print("# no TASKD_RMQ_MGMT_PORT_1: the stray-queue checks are skipped")
    if os.environ.get("TASKD_REQUIRE_MANAGEMENT") == "1":
        t.check("management API available (TASKD_RMQ_MGMT_PORT_1)", False)
    before = set()
run_config("c1t1", ["-c", "1", "--threads", "1"], before)
run_config("c2t4", ["-c", "2", "--threads", "4"], before)
t.finish()
