"""Periodic tasks with a broker-elected leader (issue 20), against the private broker.

Three `taskd --beat-only` instances and a worker started with `--beat` (a fourth instance)
share one schedule: an entry every 1 s runs test.http_hit, which GETs the local HTTP server at
/delay/0/<its task id>, so the server counts the runs of each tick (a tick's id is
deterministic: its first 48 bits are the tick's Unix milliseconds).

  A. 30 s with all running: one tick a second, each run exactly once, one instance sends.
  B. kill -9 of the leader (its pid from `taskctl beat --json`): another leads within the bound
     (FAILOVER_BOUND_S) and the failover time is printed; no tick runs twice, none is lost (the
     ticks of the window run late).
  C. every instance stopped for 3 s and started again: no tick runs twice (the last one before
     the stop included) and the ticks of the stop run late, not lost. The stored last tick is
     set back by one first (as if the leader died before recording it): the new leader finds
     that tick's result and records it instead of sending it again.
  D. SIGHUP with a second entry added: it fires; `taskctl beat` lists both entries and the leader.
  E. the sent message is an ordinary Celery v2 task message (read with py-amqp, as kombu would).
  G. a frozen leader (SIGSTOP, as a hung host): the broker hands the token on after the
     heartbeat (broker.heartbeat = 4 s here); resumed, the old leader sends nothing (its fence:
     half a heartbeat without an answer from the broker) and no tick runs twice.
  H. a stock Python `celery worker` runs the ticks of an entry (py.add, tests/celery/pytasks.py).
  F. a second message under an id that ended at the worker is dropped, not run (what makes a
     tick sent again by a new leader harmless). BEAT_TEST_ONLY=F runs this part alone, against
     TASKD (default: the built taskd).
"""
import calendar
import json
import re
import shutil
import os
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "celery"))
from common import Checks, amqp_conn, broker, wait_for  # noqa: E402

url = broker()
ROOT = os.environ.get("TASKD_SOURCE_ROOT", ".")
BUILD = os.environ.get("TASKD_BUILD_ROOT", "build")
PID = os.getpid()
TMP = f"/tmp/test-beat-{PID}"
QUEUE = f"beat_q_{PID}"
PYQUEUE = f"beat_py_{PID}"
ENTRY = f"hit{PID}"
FAILOVER_BOUND_S = 5.0
t = Checks()
os.makedirs(TMP, exist_ok=True)
procs = {}


def write_conf(port, extra=""):
    path = f"{TMP}/taskd.conf"
    with open(path + ".new", "w") as f:
        f.write(f"""beat = {{ token_rotate = 3.0; entries = (
  {{ name = "{ENTRY}"; task = "test.http_hit"; args = "[\\"http://127.0.0.1:{port}/delay/0\\"]";
     every = 1.0; queue = "{QUEUE}"; expires = 60.0; }},
  {{ name = "py{PID}"; task = "py.add"; args = "[2, 3]"; kwargs = "{{}}"; every = 5.0;
     queue = "{PYQUEUE}"; priority = 3; }}{extra}
); }};
""")
    os.chmod(path + ".new", 0o600)
    os.replace(path + ".new", path)
    return path


TASKD = os.environ.get("TASKD", f"{BUILD}/taskd/taskd")


def start(name, *args):
    log = f"{TMP}/{name}.log"
    p = subprocess.Popen([TASKD, "--broker", url, "--config", f"{TMP}/taskd.conf",
                          "--hostname", name, *args], stderr=open(log, "a"),
                         env={**os.environ, "TASKD_BROKER_HEARTBEAT": "4"})
    procs[name] = p
    return p


def log_of(name):
    with open(f"{TMP}/{name}.log") as f:
        return f.read()


def hits(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hitkeys", timeout=5) as r:
        return json.loads(r.read())


def tick_of(task_id):
    return int(task_id.replace("-", "")[:12], 16) / 1000.0


def beat_state():
    p = subprocess.run([f"{BUILD}/taskctl/taskctl", "--broker", url, "--json", "beat"],
                       capture_output=True, text=True, timeout=30)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        return p.returncode, {}


def ticks_ok(port, since, until, label):
    """Every tick of [since, until] ran exactly once; returns the ticks seen."""
    want = [float(s) for s in range(int(since) + (since % 1 > 0), int(until) + 1)]

    def window():
        return {k: v for k, v in hits(port).items() if since <= tick_of(k) <= until}
    # A loaded machine (the sanitizer build) may run the last ticks late: wait for them.
    wait_for(lambda: len(window()) >= len(want), 15, 0.25)
    h = window()
    twice = {k: len(v) for k, v in h.items() if len(v) != 1}
    seen = sorted(tick_of(k) for k in h)
    missing = sorted(set(want) - set(seen))
    t.check(f"{label}: no tick ran twice", not twice, f"{twice}")
    t.check(f"{label}: no tick lost ({len(want)} ticks)", not missing, f"missing {missing}")
    return seen


def leading_at(name):
    for line in log_of(name).splitlines():
        if "event=beat_leading" in line:
            return line
    return None


def log_time(line):
    ts = line.split()[0].split("=", 1)[1]  # ts=2026-12-03T13:51:59.938Z
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + ts[19:-1])


def count(name, needle):
    return log_of(name).count(needle)


def frozen_leader():
    """G: SIGSTOP the leader past the broker's heartbeat timeout, then SIGCONT it."""
    rc, st = beat_state()
    name = next((n for n, p in procs.items() if p.pid == st.get("pid")), None)
    if name is None:
        t.check("G: a leader to freeze", False, f"{st}")
        return
    others = [n for n in procs if n != name and procs[n].poll() is None]
    led = {n: count(n, "event=beat_leading") for n in others}
    stop_at = time.time()
    os.kill(procs[name].pid, signal.SIGSTOP)
    took = None
    if wait_for(lambda: any(count(n, "event=beat_leading") > led[n] for n in others), 30, 0.05):
        took = time.time() - stop_at
        print(f"# frozen leader {name}: another leads {took:.1f} s after SIGSTOP "
              f"(broker.heartbeat 4 s)")
    t.check("G: another instance leads while the leader is frozen", took is not None)
    time.sleep(max(0.0, 12 - (time.time() - stop_at)))
    sent = count(name, "event=beat_tick_sent")
    os.kill(procs[name].pid, signal.SIGCONT)
    time.sleep(4)
    t.check("G: the resumed old leader sent nothing", count(name, "event=beat_tick_sent") == sent,
            f"{count(name, 'event=beat_tick_sent') - sent} ticks")
    t.check("G: it noticed it lost the broker", "event=beat_disconnect" in log_of(name))


def python_worker_runs_ticks():
    """H: the ticks waiting in PYQUEUE (and new ones) run on a stock Celery worker."""
    here = os.path.join(ROOT, "tests", "celery")
    log = f"{TMP}/celery-worker.log"
    w = subprocess.Popen(["/usr/bin/python3", "-m", "celery", "-A", "pytasks", "worker", "-Q",
                          PYQUEUE, "-c", "1", "-P", "solo", "--without-gossip", "--without-mingle",
                          "--without-heartbeat", "-l", "info"], cwd=here,
                         env=dict(os.environ, PYTASKS_QUEUE=PYQUEUE),
                         stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        def runs():
            with open(log) as f:
                return re.findall(r"Task py\.add\[([0-9a-f-]{36})\] succeeded in [0-9.e-]+s: 5\b",
                                  f.read())
        ok = wait_for(lambda: len(runs()) >= 3, 40, 0.5)
        ids = runs()
        print(f"# celery worker ran {len(ids)} ticks of py{PID}")
        t.check("H: a stock celery worker ran the ticks (py.add -> 5)", ok, f"see {log}")
        t.check("H: each tick once", len(ids) == len(set(ids)) and
                all(tick_of(i) % 5 == 0 for i in ids), f"{ids}")
    finally:
        w.terminate()
        w.wait(timeout=30)
        c = amqp_conn()
        c.channel().queue_delete(PYQUEUE)
        c.close()


def same_id_twice(port):
    """F: the same tick id sent twice (as beat sends it: parent_id taskd.beat), the second
    after the first ended: one run. A plain message under a reused id runs again, as Celery runs
    it (dropping it left its caller waiting for ever: the bench's load generator hung)."""
    key = f"dup{PID}"
    tid = f"01a23c2c-0000-7000-8000-{PID:012d}"
    from celery import Celery
    app = Celery("beatf", broker=url.replace("amqp://", "pyamqp://"))

    def send(i, parent="taskd.beat", k=None):
        app.send_task("test.http_get", (f"http://127.0.0.1:{port}/delay/0/{k or key}",),
                      task_id=i, queue=QUEUE, parent_id=parent)
        return 0

    def runs(k=None):
        return len(hits(port).get(k or key, []))
    t.check("F: first copy sent", send(tid) == 0)
    t.check("F: first copy ran", wait_for(lambda: runs() == 1, 10))
    wait_for(lambda: "event=task_succeeded" in log_of("worker") and tid in log_of("worker"), 5)
    time.sleep(0.5)
    t.check("F: second copy sent", send(tid) == 0)
    wait_for(lambda: "event=duplicate_dropped" in log_of("worker") or runs() > 1, 5)
    t.check("F: the second copy did not run", runs() == 1, f"{runs()} runs")
    key2, tid2 = f"reuse{PID}", f"01a23c2d-0000-7000-8000-{PID:012d}"
    send(tid2, parent=None, k=key2)
    t.check("F: a plain message ran", wait_for(lambda: runs(key2) == 1, 10))
    wait_for(lambda: tid2 in log_of("worker"), 5)
    time.sleep(0.5)
    send(tid2, parent=None, k=key2)
    t.check("F: a plain message under a reused id runs again", wait_for(lambda: runs(key2) == 2, 10),
            f"{runs(key2)} runs")


http = subprocess.Popen(["/usr/bin/python3", f"{ROOT}/tests/harness/httpserver.py"],
                        stdout=subprocess.PIPE, text=True)
port = int(http.stdout.readline())
write_conf(port)
if os.environ.get("BEAT_TEST_ONLY") == "F":
    with open(f"{TMP}/taskd.conf", "w") as f:
        f.write("# no beat section: an older taskd refuses one\n")
    os.chmod(f"{TMP}/taskd.conf", 0o600)
    try:
        start("worker", "-Q", QUEUE, "-c", "1", "--module",
              os.environ.get("TESTTASKS", f"{BUILD}/tests/tasks/libtesttasks.so"))
        time.sleep(1.5)
        same_id_twice(port)
        c = amqp_conn()
        c.channel().queue_delete(QUEUE)
        c.close()
    finally:
        procs["worker"].terminate()
        procs["worker"].wait(timeout=30)
        http.terminate()
    t.finish()
try:
    for i in (1, 2, 3):
        start(f"beat{i}", "--beat-only")
        time.sleep(0.5)  # the first consumer of the leader queue becomes the active one
    start("worker", "--beat", "-Q", QUEUE, "-c", "2", "--module",
          f"{BUILD}/tests/tasks/libtesttasks.so")
    t.check("one instance leads", wait_for(lambda: beat_state()[0] == 0, 20))

    # A. 30 s, three (four) instances.
    t0 = time.time()
    time.sleep(30)
    t1 = time.time()
    time.sleep(2)  # let the last ticks run
    seen = ticks_ok(port, t0 + 1, t1 - 1, "A 30 s")
    senders = [n for n in procs if "event=beat_tick_sent" in log_of(n)]
    t.check("A: one instance sent every tick", len(senders) == 1, f"senders {senders}")
    t.check("A: about one tick a second", len(seen) >= 28, f"{len(seen)} ticks")
    rotated = sum(log_of(n).count("event=beat_token_rotated") for n in procs)
    t.check("A: the leader replaced its token (beat.token_rotate 3 s)", rotated >= 5,
            f"{rotated} times")

    # B. kill -9 of the leader.
    rc, st = beat_state()
    leader_pid = st.get("pid")
    leader = next((n for n, p in procs.items() if p.pid == leader_pid), None)
    t.check("B: taskctl beat names the leader", leader is not None, f"{st}")
    kill_at = time.time()
    os.kill(leader_pid, signal.SIGKILL)
    procs[leader].wait()
    others = [n for n in procs if n not in (leader, "worker")]
    t.check("B: another instance leads", wait_for(
        lambda: any(leading_at(n) for n in others), FAILOVER_BOUND_S + 5, 0.05))
    time.sleep(10)
    t2 = time.time()
    time.sleep(2)
    new = next((n for n in others if leading_at(n)), None)
    if new is not None:
        took = log_time(leading_at(new)) - kill_at
        first = next((line for line in log_of(new).splitlines()
                      if "event=beat_tick_sent" in line), None)
        late = int(first.split("late_ms=")[1].split()[0]) if first else -1
        print(f"# failover: {new} leads {took * 1000:.0f} ms after kill -9 of {leader}; its "
              f"first tick went {(log_time(first) - kill_at) * 1000:.0f} ms after the kill, "
              f"{late} ms after the tick's time" if first else "# no tick from the new leader")
        t.check(f"B: failover within {FAILOVER_BOUND_S} s", took < FAILOVER_BOUND_S,
                f"{took:.2f} s")
    ticks_ok(port, t0 + 1, t2 - 1, "B across the kill")

    # C. stop every instance (TERM), wait, start them again.
    last_before = max(tick_of(k) for k in hits(port))
    for n, p in list(procs.items()):
        if p.poll() is None:
            p.terminate()
    for p in procs.values():
        p.wait(timeout=30)
    # As if the leader had died after the broker confirmed the last tick's task but before it
    # recorded the tick: the store goes back one tick (x-max-length=1 keeps the newest).
    import amqp
    c = amqp_conn()
    c.channel().basic_publish(amqp.Message(json.dumps(
        {"entry": ENTRY, "tick_ms": int(last_before * 1000) - 1000, "id": "", "by": "test",
         "at": time.time()}), delivery_mode=2), exchange="", routing_key=f"taskd.beat.last.{ENTRY}")
    c.close()
    time.sleep(3)
    for i in (1, 2, 3):
        start(f"beat{i}", "--beat-only")
    start("worker", "--beat", "-Q", QUEUE, "-c", "2", "--module",
          f"{BUILD}/tests/tasks/libtesttasks.so")
    time.sleep(8)
    t3 = time.time()
    time.sleep(2)
    h = hits(port)
    t.check("C: the last tick before the stop ran once",
            [len(v) for k, v in h.items() if tick_of(k) == last_before] == [1])
    ticks_ok(port, t0 + 1, t3 - 1, "C across the restart")
    resent = [n for n in procs if f"tick_ms={int(last_before * 1000)} " in log_of(n).split(
        "event=beat_tick_already_sent")[-1] and "event=beat_tick_already_sent" in log_of(n)]
    t.check("C: the new leader found the unrecorded tick in the results stream, did not resend",
            len(resent) == 1, f"{resent}")

    # D. SIGHUP adds an entry.
    write_conf(port, f""",
  {{ name = "added{PID}"; task = "test.http_hit"; args = "[\\"http://127.0.0.1:{port}/delay/0\\"]";
     cron = "* * * * *"; timezone = "Europe/Berlin"; queue = "{QUEUE}"; }}""")
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGHUP)
    t.check("D: every instance reloaded", wait_for(
        lambda: all("event=beat_reloaded entries=3" in log_of(n) for n in procs), 10))
    rc, st = beat_state()
    names = [e.get("name") for e in st.get("entries", [])]
    t.check("D: taskctl beat lists the added entry", wait_for(
        lambda: f"added{PID}" in [e.get("name") for e in beat_state()[1].get("entries", [])],
        10), f"{names}")
    hp = subprocess.run([f"{BUILD}/taskctl/taskctl", "--broker", url, "beat"],
                        capture_output=True, text=True, timeout=30)
    print("# " + hp.stdout.replace("\n", "\n# "))
    t.check("D: taskctl beat prints the leader and entries",
            hp.returncode == 0 and "leader: " in hp.stdout and ENTRY in hp.stdout, hp.stdout)

    # E. the message as a Python worker would get it.
    c = amqp_conn()
    ch = c.channel()
    m = ch.basic_get(PYQUEUE, no_ack=True)
    t.check("E: a tick waits in its queue", m is not None)
    if m is not None:
        hd = m.headers
        args, kwargs, embed = json.loads(m.body)
        t.check("E: Celery v2 headers", hd.get("task") == "py.add" and hd.get("lang")
                and tick_of(hd.get("id")) % 5 == 0 and hd.get("root_id") == hd.get("id"), f"{hd}")
        t.check("E: body [args, kwargs, embed]", args == [2, 3] and kwargs == {}
                and "callbacks" in embed, f"{m.body}")
        t.check("E: priority and content type", m.properties.get("priority") == 3 and
                m.properties.get("content_type") == "application/json", f"{m.properties}")
    c.close()
    python_worker_runs_ticks()
    frozen_leader()
    ticks_ok(port, t0 + 1, time.time() - 2, "G across the freeze")
    same_id_twice(port)
    c = amqp_conn()
    c.channel().queue_delete(QUEUE)
    c.close()
    bad = [n for n in procs if any(x in log_of(n) for x in
                                    ("ERROR: AddressSanitizer", "runtime error:",
                                     "ERROR: LeakSanitizer"))]
    t.check("no sanitizer report in any log", not bad, f"{bad}")
    dropped = log_of("worker").count("event=duplicate_dropped")
    print(f"# worker dropped {dropped} duplicate(s) by id")
finally:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.terminate()
    for p in procs.values():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    http.terminate()
    try:
        c = amqp_conn()
        ch = c.channel()
        for q in (f"taskd.beat.last.{ENTRY}", f"taskd.beat.last.py{PID}",
                  f"taskd.beat.last.added{PID}"):
            ch.queue_delete(q)
        c.close()
    except Exception:
        pass
if not t.failed:
    shutil.rmtree(TMP, ignore_errors=True)
else:
    print(f"# logs kept in {TMP}")
t.finish()
