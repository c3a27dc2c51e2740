"""A countdown task whose message carries an x-death header the broker did not write (outside
attack on issue 16): a stock Celery client passes it with send_task(headers=...). RabbitMQ
3.10's at-least-once dead-lettering of the delay levels crashes on a malformed one
([5, "a", null]: function_clause in rabbit_dead_letter) and, restarted, crashes again, so every
countdown behind it in that level waited for ever. The worker parks copies without the broker's
headers: the odd task runs once, and so does every countdown sent after it.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "celery"))
from common import Checks, Replies, Taskd, broker, wait_for  # noqa: E402

url = broker()
from celery import Celery  # noqa: E402

PID = os.getpid()
t = Checks()


def main():
    q = f"delaypoison_{PID}"
    replies = Replies(f"delaypoison_replies_{PID}")
    app = Celery("delaypoison", broker=url)
    with Taskd(q, "-c", "1", "--threads", "4") as w:
        odd = app.send_task("test.add", args=[1, 2], queue=q, countdown=2, reply_to=replies.name,
                            headers={"x-death": [5, "a", None]}).id
        # 2 s and 3 s both pass the 2 s level the odd one waits in.
        ids = [app.send_task("test.add", args=[i, 1], queue=q, countdown=2 + i % 2,
                             reply_to=replies.name).id for i in range(30)]
        done = wait_for(lambda: replies.drain() or
                        all("SUCCESS" in replies.by_id.get(i, []) for i in ids + [odd]), 40,
                        step=0.5)
        missing = [i for i in ids if "SUCCESS" not in replies.by_id.get(i, [])]
        t.check("all 30 countdowns sent after the odd one run", done and not missing,
                f"{len(missing)} missing")
        t.check("the task with the odd x-death header runs once",
                replies.by_id.get(odd, []).count("SUCCESS") == 1, str(replies.by_id.get(odd)))
        t.check("the worker is alive", w.proc.poll() is None)
    replies.delete()
    t.finish()


main()
