"""Shared by the Celery interop tests: broker check, a taskd subprocess, ok/not-ok counting."""
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

BUILD = os.environ.get("TASKD_BUILD_ROOT", "build")


def broker():
    url = os.environ.get("TASKD_BROKER_URL", "").split(",")[0]
    if not url:
        print("no TASKD_BROKER_URL: run under tests/harness/with-broker", file=sys.stderr)
        sys.exit(1 if os.environ.get("TASKD_REQUIRE_BROKER") == "1" else 77)
    return url


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print(f"ok - {name}")
        else:
            self.failed += 1
            print(f"not ok - {name} {detail}")

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


class Taskd:
    """taskd with the test-task module on `queue`; stopped (warm) on exit."""

    def __init__(self, queue, *args, env=None, tag="", broker_url=None):
        self.log = f"/tmp/celery-interop-{os.getpid()}-{queue}{tag}.log"
        self.proc = subprocess.Popen(
            [f"{BUILD}/taskd/taskd", "--broker", broker_url or broker(), "-Q", queue,
             "--module", f"{BUILD}/tests/tasks/libtesttasks.so", *args],
            stderr=open(self.log, "w"), env={**os.environ, **(env or {})})
        deadline = time.time() + 20
        while time.time() < deadline:
            if "event=worker_ready" in open(self.log).read():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"taskd did not start; see {self.log}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=20)


def amqp_conn():
    """A py-amqp connection to the test broker (the first URL)."""
    import amqp
    url = broker()
    m = re.match(r"amqp://([^:]*):([^@]*)@([^/]*)/(.*)", url)
    vhost = urllib.parse.unquote(m.group(4)) or "/"
    c = amqp.Connection(host=m.group(3), userid=m.group(1), password=m.group(2),
                        virtual_host=vhost, connect_timeout=5)
    c.connect()
    return c


def free_port():
    """A TCP port free on 127.0.0.1 now (for a worker's --metrics or a proxy)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def log_has(path, needle):
    try:
        with open(path) as f:
            return needle in f.read()
    except OSError:
        return False


class Replies:
    """A durable queue the tests name as reply_to: every state message taskd publishes for the
    task lands there, so final states can be counted (and it survives a broker restart)."""

    def __init__(self, name):
        self.name = name
        self.states = []
        self.by_id = {}
        c = amqp_conn()
        ch = c.channel()
        ch.queue_declare(name, durable=True, auto_delete=False)
        c.close()

    def drain(self):
        try:
            c = amqp_conn()
        except Exception:
            return  # the broker is restarting
        try:
            ch = c.channel()
            while True:
                m = ch.basic_get(self.name, no_ack=True)
                if m is None:
                    break
                body = json.loads(m.body)
                self.states.append(body["status"])
                self.by_id.setdefault(body["task_id"], []).append(body["status"])
        except Exception:
            pass
        finally:
            try:
                c.close()
            except Exception:
                pass

    def count(self, status):
        self.drain()
        return self.states.count(status)

    def delete(self):
        c = amqp_conn()
        c.channel().queue_delete(self.name)
        c.close()
