"""A slow broker does not stall the worker's loop (issue 16): the first countdown of a
connection needs the delay cascade (28 levels of exchanges, queues and bindings). Declared one
round trip at a time when the task arrived, they blocked the loop for ~113 round trips: no
/metrics answer, no time limit, no child reaped meanwhile. Now they leave at connect and the
loop reads their replies as they come.

The same for follow-ups to queues new on the connection: a task linked to NEW_QUEUES new
queues had each declared (three round trips) before its message was sent.

And for chords: each member's end (barrier declare, part, tx.commit, count) took round trips,
and the last one's (lock, a basic.get per member, commit, deletes) CHORD_SIZE + 5 of them.

The worker talks to the broker through a proxy here that delays every byte from the broker by
LATENCY_S. While the first countdown task is parked, and while the links go out, /metrics is
asked every 50 ms and must always answer within half a second; the countdown task still runs
once, when due, and every link lands in its queue once.
"""
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import deque

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "celery"))
from common import BUILD, Checks, Replies, Taskd, amqp_conn, broker, free_port, log_has, wait_for  # noqa: E402

url = broker()
from celery import Celery  # noqa: E402

LATENCY_S = 0.025
NEW_QUEUES = 12
CHORD_SIZE = 40
PID = os.getpid()
t = Checks()


class SlowProxy:
    """TCP proxy to the broker: what the broker sends reaches the client LATENCY_S later (in
    order); what the client sends goes through at once."""

    def __init__(self, target):
        self.target = target
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            c, _ = self.sock.accept()
            b = socket.create_connection(self.target)
            for s in (c, b):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.pipe, args=(c, b, 0), daemon=True).start()
            q, cv = deque(), threading.Condition()
            threading.Thread(target=self.delayed_read, args=(b, q, cv), daemon=True).start()
            threading.Thread(target=self.delayed_write, args=(c, q, cv), daemon=True).start()

    @staticmethod
    def pipe(src, dst, _):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @staticmethod
    def delayed_read(src, q, cv):
        try:
            while True:
                data = src.recv(65536)
                with cv:
                    q.append((time.monotonic() + LATENCY_S, data))
                    cv.notify()
                if not data:
                    break
        except OSError:
            with cv:
                q.append((0, b""))
                cv.notify()

    @staticmethod
    def delayed_write(dst, q, cv):
        while True:
            with cv:
                while not q:
                    cv.wait()
                due, data = q.popleft()
            left = due - time.monotonic()
            if left > 0:
                time.sleep(left)
            if not data:
                try:
                    dst.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            try:
                dst.sendall(data)
            except OSError:
                return


def main():
    u = urllib.parse.urlparse(url)
    proxy = SlowProxy((u.hostname, u.port))
    slow_url = url.replace(f"{u.hostname}:{u.port}", f"127.0.0.1:{proxy.port}", 1)
    q = f"slow_{PID}"
    port = free_port()
    replies = Replies(f"slow_replies_{PID}")
    app = Celery("slow", broker=url)
    w = Taskd(q, "-c", "1", "-l", "debug", "--metrics", f"127.0.0.1:{port}",
              broker_url=slow_url)
    worst = [0.0]
    stop = threading.Event()

    def ask():
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    r.read()
            except OSError:
                pass
            worst[0] = max(worst[0], time.monotonic() - t0)
            time.sleep(0.05)

    try:
        time.sleep(0.5)  # the connect's own round trips are over
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        sent = time.time()
        app.send_task("test.add", args=[2, 3], queue=q, reply_to=replies.name, countdown=3)
        parked = wait_for(lambda: log_has(w.log, "event=task_delayed"), 15, step=0.05)
        t.check("the countdown task is parked in the cascade", parked)
        time.sleep(1.0)
        stop.set()
        asker.join(timeout=15)
        print(f"# slowest /metrics answer around the first countdown: {worst[0] * 1000:.0f} ms "
              f"(broker replies delayed {LATENCY_S * 1000:.0f} ms)")
        t.check("/metrics answers within 0.5 s while the cascade is first used",
                worst[0] < 0.5, f"slowest {worst[0]:.2f} s")
        done = wait_for(lambda: replies.count("SUCCESS") >= 1, 20)
        took = time.time() - sent
        t.check("the countdown task runs once, when due", done and took >= 2.0,
                f"done={done} after {took:.1f} s")
        time.sleep(1)
        t.check("exactly once", replies.count("SUCCESS") == 1, f"{replies.states}")

        worst[0] = 0.0
        stop.clear()
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        targets = [f"slow_new_{PID}_{i}" for i in range(NEW_QUEUES)]
        links = [app.signature("test.add", args=(i,), queue=targets[i]) for i in range(NEW_QUEUES)]
        app.send_task("test.add", args=[1, 1], queue=q, reply_to=replies.name, link=links)
        got = wait_for(lambda: replies.count("SUCCESS") >= 2, 20)
        time.sleep(1.5)
        stop.set()
        asker.join(timeout=15)
        print(f"# slowest /metrics answer while {NEW_QUEUES} links to new queues went out: "
              f"{worst[0] * 1000:.0f} ms")
        t.check("the linked task ran", got)
        t.check("/metrics answers within 0.5 s while follow-up queues are declared",
                worst[0] < 0.5, f"slowest {worst[0]:.2f} s")
        c = amqp_conn()
        ch = c.channel()
        counts = []
        for name in targets:
            try:
                counts.append(ch.queue_declare(name, passive=True).message_count)
            except Exception:
                counts.append(-1)
                ch = c.channel()
        for name in targets:
            try:
                ch.queue_delete(name)
                ch.exchange_delete(name)
            except Exception:
                ch = c.channel()
        c.close()
        t.check("every link is in its new queue once", counts == [1] * NEW_QUEUES, f"{counts}")

        worst[0] = 0.0
        stop.clear()
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        started = time.time()
        p = subprocess.run([f"{BUILD}/tests/integration/lp_chord", str(CHORD_SIZE)],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "TASKD_BROKER_URL": url,
                                "TASKD_CLIENT_DEFAULT_QUEUE": q})
        took = time.time() - started
        stop.set()
        asker.join(timeout=15)
        print(f"# slowest /metrics answer while a chord of {CHORD_SIZE} ended: "
              f"{worst[0] * 1000:.0f} ms (chord done in {took:.1f} s)")
        want = sum(2 * i for i in range(CHORD_SIZE))
        t.check("the chord's callback runs with every member's result",
                p.stdout.strip() == f"SUCCESS {want}", f"{p.stdout.strip()} {p.stderr.strip()}")
        t.check("/metrics answers within 0.5 s while chord members end",
                worst[0] < 0.5, f"slowest {worst[0]:.2f} s")
    finally:
        stop.set()
        w.__exit__(None, None, None)
        replies.delete()
    t.finish()


if __name__ == "__main__":
    main()
