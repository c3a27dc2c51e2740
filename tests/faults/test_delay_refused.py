"""The broker refuses the delay cascade (issue 16): one of its queues exists with other
arguments. The declarations now leave without waiting, so the refusal arrives later as a close
of their own channel: it must be logged, the channel reopened, the worker must go on (its other
channels untouched, /metrics answering) and a countdown task must neither be lost nor bounce
between the worker and its queue: it waits in memory while the refusal is waited out and runs
once, when due.
"""
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "celery"))
from common import Checks, Replies, Taskd, amqp_conn, broker, free_port, log_has, wait_for  # noqa: E402

url = broker()
from celery import Celery  # noqa: E402

PID = os.getpid()
LEVEL = "taskd.delay.102"  # level 2 (taskd/delay.h: DELAY_NAME_BASE + 2)
t = Checks()


def redeclare(bad):
    c = amqp_conn()
    ch = c.channel()
    ch.queue_delete(LEVEL)
    if bad:
        ch.queue_declare(LEVEL, durable=True, auto_delete=False,
                         arguments={"x-message-ttl": 1234})
    c.close()


def main():
    q = f"delayref_{PID}"
    port = free_port()
    replies = Replies(f"delayref_replies_{PID}")
    app = Celery("delayref", broker=url)
    redeclare(True)
    w = None
    try:
        w = Taskd(q, "-c", "1", "--metrics", f"127.0.0.1:{port}")
        t.check("the refusal is logged",
                wait_for(lambda: log_has(w.log, "event=delay_setup_failed"), 10))
        sent = time.time()
        # Some while the refusal is waited out, some after: those wait for a new attempt,
        # which is refused again; they go back to their queue once and then wait in memory.
        ids = [app.send_task("test.add", args=[i, 1], queue=q, reply_to=replies.name,
                             countdown=5).id for i in range(3)]
        time.sleep(1.5)
        ids += [app.send_task("test.add", args=[i, 2], queue=q, reply_to=replies.name,
                              countdown=4).id for i in range(3)]
        t0 = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            r.read()
        t.check("/metrics answers", time.monotonic() - t0 < 1.0)
        done = wait_for(lambda: replies.count("SUCCESS") >= len(ids), 30)
        took = time.time() - sent
        t.check("the countdown tasks run, when due", done and took >= 3.0,
                f"done={done} after {took:.1f} s")
        time.sleep(1)
        replies.drain()
        t.check("each once", all(replies.by_id.get(i, []).count("SUCCESS") == 1 for i in ids),
                f"{replies.by_id}")
        with open(w.log) as f:
            log = f.read()
        bounced = log.count("event=delay_failed")
        refused = log.count("event=delay_setup_failed")
        print(f"# delay_failed (a countdown sent back to its queue): {bounced}, "
              f"refusals: {refused}")
        t.check("no countdown bounces between the worker and its queue", bounced <= 6,
                f"{bounced} times")
        t.check("the refused cascade is not declared again and again", refused <= 4,
                f"{refused} times")
        t.check("the worker kept its connection", log.count("event=broker_connected") == 1)
        t.check("the channel is reopened", "event=delay_channel_reopened" in log)
    finally:
        if w is not None:
            w.__exit__(None, None, None)
        redeclare(False)  # the next worker declares it as it should be
        replies.delete()
    t.finish()


if __name__ == "__main__":
    main()
