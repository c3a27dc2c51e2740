"""`taskctl dead --republish` of a quarantined message that came through a direct exchange whose
routing key is not its queue's name (issue 14, case D).

A stock Celery client sends test.echo to exchange ex_dr (direct) with routing key rk_dr; the
broker routes it to queue q_dr. The worker on q_dr has no module that registers test.echo, so it
quarantines the message (unknown task) to taskd.dead. Once the cause is fixed (a worker with the
module), the operator re-publishes it: it must be back in q_dr, unchanged (same id, no quarantine
headers), never gone; then the fixed worker runs it and nothing is quarantined again.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import BUILD, Checks, Taskd, broker  # noqa: E402

url = broker()
from celery import Celery  # noqa: E402
from kombu import Exchange, Queue  # noqa: E402

PID = os.getpid()
Q, X, RK = f"q_dr_{PID}", f"ex_dr_{PID}", f"rk_dr_{PID}"
CTL = f"{BUILD}/taskctl/taskctl"
app = Celery("dead", broker=url, backend="rpc://")
app.conf.task_queues = [Queue(Q, Exchange(X, type="direct"), routing_key=RK)]
app.conf.task_default_queue = Q
t = Checks()


def count(queue):
    with app.connection_for_write() as conn:
        ch = conn.channel()
        try:
            return ch.queue_declare(queue, passive=True).message_count
        except Exception:
            return -1
        finally:
            try:
                ch.close()
            except Exception:
                pass


def poll(pred, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def ctl(*args):
    p = subprocess.run([CTL, "--broker", url, *args], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "TASKD_MANAGEMENT_URL": ""})
    return p.returncode, p.stdout, p.stderr


with app.connection_for_write() as conn:
    app.conf.task_queues[0](conn.default_channel).declare()

# 1. A worker on q_dr without test.echo: the message is quarantined.
log1 = f"/tmp/celery-dead-{PID}-1.log"
w1 = subprocess.Popen([f"{BUILD}/taskd/taskd", "--broker", url, "-Q", Q, "--loglevel", "debug",
                       "--module", f"{BUILD}/examples/librender_audio.so"],
                      stderr=open(log1, "w"))
try:
    t.check("worker without the module starts",
            poll(lambda: "event=worker_ready" in open(log1).read(), 20), log1)
    dead_before = count("taskd.dead")
    r = app.send_task("test.echo", ("republish-me",), exchange=X, routing_key=RK)
    try:
        r.get(timeout=10)
        t.check("unknown task fails at once", False, "it ran")
    except Exception as e:
        t.check("unknown task fails at once (NotRegistered)", type(e).__name__ == "NotRegistered",
                repr(e))
    t.check("the message is quarantined in taskd.dead",
            poll(lambda: count("taskd.dead") == dead_before + 1, 10),
            f"taskd.dead {dead_before} -> {count('taskd.dead')}")
    t.check("the quarantine left nothing in the task queue", count(Q) == 0, str(count(Q)))
finally:
    w1.terminate()
    w1.wait(timeout=20)

# 2. The operator lists it and re-publishes it.
# --limit: taskctl dead looks at the first 100 by default; earlier tests may have left more
limit = str(max(count("taskd.dead"), 0) + 10)
rc, out, err = ctl("--json", "dead", "--limit", limit)
entries = json.loads(out) if rc == 0 and out.strip() else []
mine = [e for e in entries if e.get("id") == r.id]
t.check("taskctl dead lists the message", rc == 0 and len(mine) == 1, f"rc {rc} {err.strip()} {out[:300]}")
if mine:
    t.check("the dead entry names the queue it came from (not the routing key)",
            mine[0].get("queue") == Q, repr(mine[0]))
    t.check("the dead entry names the reason", mine[0].get("reason") is not None and
            "unknown" in mine[0].get("reason"), repr(mine[0]))
    rc, out, err = ctl("dead", "--limit", limit, "--republish", str(mine[0]["n"]))
    t.check("taskctl dead --republish N exits 0", rc == 0, f"rc {rc}: {err.strip()} {out.strip()}")
t.check("after re-publish the message is in its queue, not gone",
        poll(lambda: count(Q) == 1, 5), f"{Q} holds {count(Q)}, taskd.dead {count('taskd.dead')}")
t.check("and no longer in taskd.dead", count("taskd.dead") == dead_before,
        f"taskd.dead {count('taskd.dead')}, was {dead_before}")
with app.connection_for_write() as conn:
    ch = conn.channel()
    m = ch.basic_get(Q, no_ack=False)
    if m is None:
        t.check("the re-published message is the original", False, "queue empty")
    else:
        hdr = m.headers or {}
        t.check("the re-published message is the original, without quarantine headers",
                hdr.get("id") == r.id and hdr.get("task") == "test.echo" and
                not any(k.startswith("x-taskd-") for k in hdr) and
                json.loads(m.body)[0] == ["republish-me"], repr(hdr)[:300])
        ch.basic_reject(m.delivery_tag, requeue=True)
    ch.close()

# 3. The fixed worker runs it; nothing goes back to taskd.dead.
with Taskd(Q, "--loglevel", "debug") as w2:
    ran = poll(lambda: f"task_succeeded task=test.echo task_id={r.id}" in open(w2.log).read(), 15)
    t.check("a worker with the module runs the re-published task", ran, w2.log)
    t.check("the queue is drained", poll(lambda: count(Q) == 0, 5), str(count(Q)))
    t.check("nothing quarantined again", count("taskd.dead") == dead_before,
            f"taskd.dead {count('taskd.dead')}, was {dead_before}")

with app.connection_for_write() as conn:
    ch = conn.channel()
    ch.queue_delete(Q)
    ch.exchange_delete(X)
    ch.close()
t.finish()
