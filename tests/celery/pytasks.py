"""Python tasks for the taskd -> Celery direction (run by a stock celery worker)."""
import os

from celery import Celery

app = Celery("pytasks", broker=os.environ["TASKD_BROKER_URL"].split(",")[0], backend="rpc://")
app.conf.update(task_default_queue=os.environ.get("PYTASKS_QUEUE", "celery"),
                worker_hijack_root_logger=False)
if os.environ.get("PYTASKS_SECURITY_KEY"):
    # Message signing (test_signing_celery_worker.py): Celery's documented auth setup.
    app.conf.update(security_key=os.environ["PYTASKS_SECURITY_KEY"],
                    security_certificate=os.environ["PYTASKS_SECURITY_CERTIFICATE"],
                    security_cert_store=os.environ["PYTASKS_SECURITY_CERT_STORE"],
                    task_serializer="auth", result_serializer="auth", accept_content=["auth"])
    app.setup_security()


@app.task(name="py.add")
def add(a, b):
    return a + b


@app.task(name="py.fail")
def fail(msg):
    raise KeyError(msg)
