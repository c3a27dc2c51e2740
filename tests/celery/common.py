"""Shared by the Celery interop tests: broker check, a taskd subprocess, ok/not-ok counting."""
import os
import subprocess
import sys
import time

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

    def __init__(self, queue, *args, env=None, tag=""):
        self.log = f"/tmp/celery-interop-{os.getpid()}-{queue}{tag}.log"
        self.proc = subprocess.Popen(
            [f"{BUILD}/taskd/taskd", "--broker", broker(), "-Q", queue,
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
