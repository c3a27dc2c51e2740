"""A broker memory alarm (issue 16): connection.blocked stops the worker's publishing and
connection.unblocked resumes it; nothing is lost and the worker stays responsive meanwhile.

The test sends sleeps (some to wait in the worker's backlog) and one task with a 2 s hard time
limit, then sets the node's memory high watermark so low that the alarm goes off. While the
broker blocks the worker: the log says so, /metrics answers at once with taskd_broker_blocked 1,
the time limit still kills its task, and no outcome reaches the broker (they wait in the
worker). After the alarm is cleared: every task has exactly one final state (SUCCESS for the
sleeps, FAILURE TimeLimitExceeded for the limited one) and /metrics shows the block counted.
"""
import os
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "celery"))
from common import Checks, Replies, Taskd, broker, free_port, log_has, wait_for  # noqa: E402

url = broker()
from celery import Celery  # noqa: E402

ROOT = os.environ.get("TASKD_SOURCE_ROOT", ".")
RMQ = f"{ROOT}/tests/harness/rmq-node"
PID = os.getpid()
t = Checks()


def watermark(value):
    p = subprocess.run([RMQ, "ctl", "1", "set_vm_memory_high_watermark", value],
                       capture_output=True, text=True, timeout=60)
    return p.returncode == 0


def metrics(port):
    t0 = time.time()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body = r.read().decode()
    return body, time.time() - t0


def metric(body, name):
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def main():
    q = f"blocked_{PID}"
    port = free_port()
    replies = Replies(f"blocked_replies_{PID}")
    app = Celery("blocked", broker=url)
    w = Taskd(q, "-c", "2", "--threads", "4", "--metrics", f"127.0.0.1:{port}")
    ids = {}
    try:
        # First, so that it runs at once: its limit passes while the broker blocks the worker.
        r = app.send_task("test.sleep", args=[30], queue=q, reply_to=replies.name,
                          time_limit=4)
        ids[r.id] = "FAILURE"
        limited = r.id
        for i in range(12):  # 8 slots: 5 of these wait in the backlog
            r = app.send_task("test.sleep", args=[3], queue=q, reply_to=replies.name)
            ids[r.id] = "SUCCESS"
        app.pool.force_close_all()  # our own publishing connection must not be blocked
        time.sleep(0.5)
        alarm_at = time.time()
        t.check("the memory alarm is set", watermark("0.0001"))
        blocked = wait_for(lambda: log_has(w.log, "event=broker_blocked"), 20)
        print(f"# worker told it is blocked {time.time() - alarm_at:.2f} s after the alarm")
        t.check("the worker logs broker_blocked", blocked)
        body, took = metrics(port)
        t.check("/metrics answers at once while blocked", took < 1.0, f"{took:.3f} s")
        t.check("/metrics shows taskd_broker_blocked 1", metric(body, "taskd_broker_blocked") == 1,
                str(metric(body, "taskd_broker_blocked")))
        killed = wait_for(lambda: log_has(w.log, f"event=time_limit_exceeded task=test.sleep "
                                                  f"task_id={limited}"), 10)
        t.check("the hard time limit kills its task while blocked", killed)
        time.sleep(5)  # the first sleeps end meanwhile
        t.check("still blocked (no broker_unblocked yet)",
                not log_has(w.log, "event=broker_unblocked"))
        early = replies.count("SUCCESS") + replies.count("FAILURE")
        t.check("no outcome reaches the broker while it blocks the worker", early == 0,
                f"{early} final states")
        body, took = metrics(port)
        t.check("/metrics still answers at once", took < 1.0, f"{took:.3f} s")
    finally:
        cleared = watermark("0.4")
    t.check("the alarm is cleared", cleared)
    t.check("the worker logs broker_unblocked",
            wait_for(lambda: log_has(w.log, "event=broker_unblocked"), 30))
    done = wait_for(lambda: replies.drain() or
                    all(s in replies.by_id.get(i, []) for i, s in ids.items()), 60, step=0.5)
    time.sleep(2)
    replies.drain()
    finals = {i: [s for s in replies.by_id.get(i, []) if s in ("SUCCESS", "FAILURE")]
              for i in ids}
    wrong = {i: f for i, f in finals.items() if f != [ids[i]]}
    t.check(f"all {len(ids)} tasks end with exactly one final state, the right one",
            done and not wrong, str(list(wrong.items())[:4]))
    body, _ = metrics(port)
    t.check("/metrics: unblocked, one block counted",
            metric(body, "taskd_broker_blocked") == 0 and
            metric(body, "taskd_broker_blocked_total") == 1,
            f"{metric(body, 'taskd_broker_blocked')} {metric(body, 'taskd_broker_blocked_total')}")
    w.__exit__(None, None, None)
    log = open(w.log).read()
    t.check("the worker kept its connection", log.count("event=broker_connected") == 1)
    replies.delete()


def leases_across_an_alarm():
    """An alarm that outlasts a lease: the lease cannot be renewed (the broker reads nothing),
    its copy comes back and waits in the worker, the task ends meanwhile. Outside attack: the
    copy then ran a second time after the unblock; now it is dropped."""
    q = f"blocked_lease_{PID}"
    replies = Replies(f"blocked_lease_replies_{PID}")
    app = Celery("blocked_lease", broker=url)
    w = Taskd(q, "-c", "2", env={"TASKD_WORKER_LEASE_AFTER": "1", "TASKD_WORKER_LEASE": "10"},
              tag="lease")
    ids = []
    try:
        with app.connection_for_write() as conn:  # closed before the alarm: not blocked
            for i in range(2):
                ids.append(app.send_task("test.sleep", args=[12], queue=q, connection=conn,
                                         reply_to=replies.name).id)
        leased = wait_for(lambda: open(w.log).read().count("event=task_leased") >= 2, 20)
        t.check("both long tasks are leased", leased)
        t.check("the memory alarm is set", watermark("0.0001"))
        t.check("the worker logs broker_blocked",
                wait_for(lambda: log_has(w.log, "event=broker_blocked"), 20))
        time.sleep(12.5)  # the 10 s leases lapse (their copies come back), the 12 s sleeps end
    finally:
        cleared = watermark("0.4")
    t.check("the alarm is cleared", cleared)
    wait_for(lambda: replies.drain() or all("SUCCESS" in replies.by_id.get(i, []) for i in ids),
             60, step=0.5)
    time.sleep(14)  # a second run of a 12 s sleep would have ended
    replies.drain()
    runs = {i: replies.by_id.get(i, []) for i in ids}
    t.check("each leased task ran once: one STARTED, one SUCCESS",
            all(r.count("STARTED") == 1 and r.count("SUCCESS") == 1 for r in runs.values()),
            str(runs))
    w.__exit__(None, None, None)
    t.check("the worker kept its connection",
            open(w.log).read().count("event=broker_connected") == 1)
    replies.delete()


def warm_stop_while_blocked():
    """SIGTERM while the broker blocks the worker: a warm stop waits for the unblock (within the
    grace period) and publishes its outcomes. Outside attack: the worker's basic.cancel timed
    out, the connection dropped, it exited 0 after 5 s with the outcomes of its running tasks
    lost (they ran again on the next worker)."""
    q = f"blocked_stop_{PID}"
    replies = Replies(f"blocked_stop_replies_{PID}")
    app = Celery("blocked_stop", broker=url)
    w = Taskd(q, "-c", "2", "--threads", "2", tag="stop")
    with app.connection_for_write() as conn:
        ids = [app.send_task("test.sleep", args=[4], queue=q, connection=conn,
                             reply_to=replies.name).id for _ in range(4)]
    try:
        t.check("the four tasks start",
                wait_for(lambda: replies.drain() or
                         sum("STARTED" in replies.by_id.get(i, []) for i in ids) >= 4, 20))
        t.check("the memory alarm is set", watermark("0.0001"))
        t.check("the worker logs broker_blocked",
                wait_for(lambda: log_has(w.log, "event=broker_blocked"), 20))
        w.proc.send_signal(signal.SIGTERM)
        time.sleep(8)  # past the 5 s a call waits for its answer; the sleeps end meanwhile
        t.check("the worker waits for the unblock", w.proc.poll() is None)
    finally:
        cleared = watermark("0.4")
    t.check("the alarm is cleared", cleared)
    try:
        rc = w.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        rc = None
    t.check("it then stops warm (exit 0)", rc == 0, str(rc))
    wait_for(lambda: replies.drain() or all("SUCCESS" in replies.by_id.get(i, []) for i in ids),
             10, step=0.5)
    runs = {i: replies.by_id.get(i, []) for i in ids}
    t.check("each task's outcome was published, once",
            all(r.count("SUCCESS") == 1 for r in runs.values()), str(runs))
    t.check("the worker kept its connection",
            open(w.log).read().count("event=broker_connected") == 1)
    replies.delete()


main()
leases_across_an_alarm()
warm_stop_while_blocked()
t.finish()
