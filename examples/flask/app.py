"""The seed scenario as a Flask app (docs/celery-interop.md, "The seed scenario"), with a
stock Celery client and taskd's results backend (python/taskd_celery, docs/celery-backend.md).

POST /render/<song_id>   sends audio.render and answers 202 with Location: /status/<task_id>
GET  /status/<task_id>   202 with {state, progress} while it runs, 200 with the result when done,
                         500 on failure; from whichever web process gets the request: the state
                         comes from taskd's results streams (AsyncResult through the backend),
                         not from the process that sent the task.
Settings (environment): TASKD_BROKER_URL, RENDER_API_URL (the slow API), RENDER_QUEUE (default
"celery"), RENDER_STEPS.
"""
import os

from celery import Celery
from flask import Flask, jsonify, url_for

BROKER = os.environ["TASKD_BROKER_URL"].split(",")[0]
celery = Celery("web", broker=BROKER, backend="taskd_celery.backend:ResultsBackend")
celery.conf.task_default_queue = os.environ.get("RENDER_QUEUE", "celery")
app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return "ok"


@app.post("/render/<song_id>")
def render(song_id):
    # Celery's own ids (uuid4): the backend's lookups read the recent past first.
    r = celery.send_task("audio.render", (song_id, os.environ["RENDER_API_URL"]),
                         {"steps": int(os.environ.get("RENDER_STEPS", "4"))})
    resp = jsonify(task_id=r.id, state="PENDING")
    resp.status_code = 202
    resp.headers["Location"] = url_for("status", task_id=r.id)
    return resp


@app.get("/status/<task_id>")
def status(task_id):
    r = celery.AsyncResult(task_id)
    try:
        state, info = r.state, r.info
    except Exception as exc:  # the broker did not answer: say so, the client polls again
        return jsonify(error=str(exc)), 502
    if state == "SUCCESS":
        return jsonify(task_id=task_id, state=state, result=info), 200
    if state in ("FAILURE", "REVOKED"):
        return jsonify(task_id=task_id, state=state, error=repr(info)), 500
    return jsonify(task_id=task_id, state=state, progress=info), 202


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
