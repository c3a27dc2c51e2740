"""A stock Python Celery 5.2 client (rpc:// results) calls C tasks run by taskd."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, Taskd, broker  # noqa: E402

url = broker()
from celery import Celery  # noqa: E402
from celery.exceptions import TaskRevokedError  # noqa: E402

Q = f"t_celery_client_{os.getpid()}"
app = Celery("interop", broker=url, backend="rpc://")
app.conf.task_default_queue = Q
t = Checks()

with Taskd(Q) as worker:
    t.check("add(2, 3).get() == 5", app.send_task("test.add", (2, 3)).get(timeout=10) == 5)

    try:
        app.send_task("test.fail", ("card declined",)).get(timeout=10)
        t.check("test.fail raises", False, "no exception")
    except ValueError as e:
        t.check("test.fail raises the real ValueError with its message", str(e) == "card declined",
                repr(e))

    big = "x" * 1_000_000
    text = "héllo ☃ 😀 \u0000 end"
    nested = {"a": [1, 2.5, None, True, {"b": "c"}], "é": "ü"}
    v = app.send_task("test.echo", (text, nested), {"big": big}).get(timeout=20)
    t.check("echo round-trips unicode and nested JSON", v[0] == [text, nested], repr(v[0])[:200])
    t.check("echo round-trips a 1 MB argument", v[1] == {"big": big})

    # A process that only polls (a web handler answering GET /status) sees the states through
    # .state/.info; a fresh app has no result consumer yet, so .state polls the reply queue.
    poller = Celery("poller", broker=url, backend="rpc://")
    poller.conf.task_default_queue = Q
    r = poller.send_task("test.progress", (5, 0.2))
    seen = set()
    deadline = time.time() + 10
    while time.time() < deadline:
        st = r.state
        info = r.info  # a second poll: the task may have finished in between
        if st == "PROGRESS" and isinstance(info, dict):
            seen.add((info["current"], info["total"]))
        if st == "SUCCESS":
            break
        time.sleep(0.05)
    t.check("PROGRESS visible through AsyncResult.state/.info", len(seen) >= 2 and
            all(total == 5 for _, total in seen), str(seen))
    t.check("progress task ends with its value", r.get(timeout=10) == 5)
    metas = []
    r = app.send_task("test.progress", (3, 0.1))
    v = r.get(timeout=10, on_message=lambda m: metas.append((m["status"], m["result"])))
    t.check("get(on_message=...) sees each PROGRESS then SUCCESS",
            [m for m in metas if m[0] == "PROGRESS"] ==
            [("PROGRESS", {"current": i, "total": 3}) for i in (1, 2, 3)] and
            metas[-1] == ("SUCCESS", 3) and v == 3, str(metas))

    from uuid import uuid4
    cid = str(uuid4())
    first = app.signature("test.add", (1, 2)).apply_async(
        link=app.signature("test.add", (10,)).set(task_id=cid))
    t.check("link: the task's result", first.get(timeout=10) == 3)
    t.check("link: the callback ran with the result prepended",
            app.AsyncResult(cid).get(timeout=10) == 13)

    chain = (app.signature("test.add", (1, 1)) | app.signature("test.add", (2,)) |
             app.signature("test.echo", ("end",)))
    v = chain.apply_async().get(timeout=15)
    t.check("a 3-step chain of C tasks runs in order", v == [[4, "end"], {}], repr(v))

    eid = str(uuid4())
    app.signature("test.fail", ("x",)).apply_async(
        link_error=app.signature("test.echo", ()).set(task_id=eid))
    ev = app.AsyncResult(eid).get(timeout=10)
    t.check("link_error: the errback got the failed task's id", len(ev[0]) == 1 and
            len(ev[0][0]) == 36, repr(ev))

    t0 = time.time()
    v = app.send_task("test.add", (1, 1), countdown=2).get(timeout=15)
    took = time.time() - t0
    t.check("countdown=2 runs no earlier than 2 s", v == 2 and took >= 1.95, f"{took:.2f}s")

    r = app.send_task("test.add", (1, 1), expires=-1)
    try:
        r.get(timeout=10)
        t.check("expires in the past gives REVOKED", False, "it ran")
    except TaskRevokedError:
        t.check("expires in the past gives REVOKED", r.state == "REVOKED", r.state)

    try:
        app.send_task("no.such.task").get(timeout=10)
        t.check("unknown task fails at once", False, "no exception")
    except Exception as e:
        t.check("unknown task fails at once with NotRegistered", type(e).__name__ == "NotRegistered",
                repr(e))

    from celery import group  # noqa: E402
    gr = group(app.signature("test.add", (i, i)) for i in range(10)).apply_async()
    t.check("group: GroupResult.get() collects C results in order",
            gr.get(timeout=15) == [2 * i for i in range(10)], repr(gr.results[:2]))

    t.check("taskd still alive", worker.proc.poll() is None)

# A message over worker.max_message_size: quarantined unread, and its caller (named in the
# headers) gets a FAILURE at once instead of waiting for ever (outside attack: PENDING forever).
QS = Q + "_small"
with Taskd(QS, env={"TASKD_WORKER_MAX_MESSAGE_SIZE": "4096"}, tag="small") as small:
    t0 = time.time()
    try:
        app.send_task("test.echo", ("x" * 10000,), queue=QS).get(timeout=20)
        t.check("a too-big message fails its caller", False, "no exception")
    except Exception as e:
        t.check("a too-big message fails its caller at once (ContentDisallowed, too-big)",
                type(e).__name__ == "ContentDisallowed" and "too-big" in str(e) and
                time.time() - t0 < 10, f"{type(e).__name__}: {str(e)[:120]} "
                f"after {time.time() - t0:.1f} s")
    t.check("the small worker is still alive", small.proc.poll() is None)

# A priority queue that Celery declares from its task_queues and taskd from its config: the
# declarations must be equivalent (same argument types) or one side gets 406.
from kombu import Exchange, Queue  # noqa: E402
PQ = f"t_celery_prio_{os.getpid()}"
papp = Celery("prio", broker=url, backend="rpc://")
papp.conf.task_queues = [Queue(PQ, Exchange(PQ, type="direct"), routing_key=PQ,
                               queue_arguments={"x-max-priority": 9})]
papp.conf.task_default_queue = PQ
low = [papp.send_task("test.add", (i, 1), priority=1) for i in range(5)]
urgent = papp.send_task("test.add", (100, 1), priority=9)
with Taskd(PQ, "-c", "1", env={"TASKD_QUEUES_ARGUMENTS": f"{PQ} x-max-priority=9",
                               "TASKD_WORKER_PREFETCH_MULTIPLIER": "1"}) as pw:
    t.check("taskd declares Celery's priority queue alike (no 406)", pw.proc.poll() is None)
    t.check("priority 9 task result", urgent.get(timeout=10) == 101)
    t.check("priority 1 task results", [r.get(timeout=10) for r in low] == [1, 2, 3, 4, 5])
    t.check("the priority 9 task ran first (worker clock)",
            all(urgent.date_done <= r.date_done for r in low),
            f"{urgent.date_done} vs {[str(r.date_done) for r in low]}")
t.finish()
