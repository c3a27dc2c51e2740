"""A second process for test_backend.py: follows task ids through AsyncResult with the taskd
results backend only (it sent nothing, so nothing is cached here) and prints, per id, one JSON
line: the states it saw in order, the PROGRESS meta (.info), and the outcome of .get()."""
import json
import os
import sys
import time

from celery import Celery

app = Celery("observer", broker=os.environ["TASKD_BROKER_URL"].split(",")[0],
             backend="taskd_celery.backend:ResultsBackend")


def follow(ids, timeout):
    print("ready", flush=True)  # the ids may be sent now
    """Poll every id in turn (they run at the same time) until all are ready."""
    seen = {tid: [] for tid in ids}
    infos = {tid: [] for tid in ids}
    left = set(ids)
    deadline = time.time() + timeout
    while left and time.time() < deadline:
        for tid in list(left):
            r = app.AsyncResult(tid)
            st = r.state
            if not seen[tid] or seen[tid][-1] != st:
                seen[tid].append(st)
            if st == "PROGRESS" and r.info not in infos[tid]:
                infos[tid].append(r.info)
            if st in ("SUCCESS", "FAILURE", "REVOKED"):
                left.discard(tid)
        time.sleep(0.02)
    for tid in ids:
        r = app.AsyncResult(tid)
        try:
            got = {"value": r.get(timeout=5)}
        except Exception as exc:  # the task's own exception, rebuilt by Celery
            got = {"raised": type(exc).__name__, "message": str(exc)}
        print(json.dumps({"id": tid, "states": seen[tid], "progress": infos[tid], "get": got,
                          "result_type": type(r.result).__name__}), flush=True)


follow(sys.argv[2:], float(sys.argv[1]))
