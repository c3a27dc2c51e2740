"""Python tasks run by a stock `celery worker` whose result backend is taskd_celery's
(test_backend.py): their states go to taskd's results streams."""
import os
import time

from celery import Celery

app = Celery("backend_tasks", broker=os.environ["TASKD_BROKER_URL"].split(",")[0],
             backend="taskd_celery.backend:ResultsBackend")
app.conf.update(task_default_queue=os.environ.get("PYTASKS_QUEUE", "celery"),
                task_track_started=True, worker_hijack_root_logger=False)


@app.task(name="py.add")
def add(a, b):
    return a + b


@app.task(name="py.xsum")
def xsum(numbers):
    return sum(numbers)


@app.task(name="py.fail")
def fail(msg):
    raise KeyError(msg)


@app.task(name="py.progress", bind=True)
def progress(self, steps, delay):
    for i in range(steps):
        time.sleep(delay)
        self.update_state(state="PROGRESS", meta={"current": i + 1, "total": steps})
    return steps


@app.task(name="py.retry", bind=True, max_retries=3)
def retry(self, times):
    if self.request.retries < times:
        raise self.retry(countdown=1, exc=ValueError("again"))
    return self.request.retries
