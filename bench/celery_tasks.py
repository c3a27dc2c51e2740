"""The Celery side of bench/run: the same no-op task as test.add, prefork, acks late, rpc results.

Run: celery -A celery_tasks worker -Q QUEUE -c 2 (bench/run sets BENCH_BROKER and BENCH_QUEUE).
"""
import os

from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_BROKER"], backend="rpc://")
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=4, task_serializer="json",
                result_serializer="json", accept_content=["json"],
                task_default_queue=os.environ.get("BENCH_QUEUE", "celery"),
                worker_hijack_root_logger=False, broker_heartbeat=0)


@app.task(name="test.add")
def add(a, b):
    return a + b
