"""taskd_celery - a Celery 5.2 result backend over taskd's results streams (docs/celery-backend.md).

    app.conf.result_backend = "taskd_celery.backend:ResultsBackend"

AsyncResult(id).state/.info/.result/.get() then work from any process for tasks run by taskd
and by Python workers alike, and Python workers write their states to the same streams.
"""
