"""Python tasks for the taskd -> Celery direction (run by a stock celery worker)."""
import os

from celery import Celery

app = Celery("pytasks", broker=os.environ["TASKD_BROKER_URL"].split(",")[0], backend="rpc://")
app.conf.update(task_default_queue=os.environ.get("PYTASKS_QUEUE", "celery"),
                worker_hijack_root_logger=False)


@app.task(name="py.add")
def add(a, b):
    return a + b


@app.task(name="py.fail")
def fail(msg):
    raise KeyError(msg)
