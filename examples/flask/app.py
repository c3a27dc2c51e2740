"""The seed scenario as a Flask app (docs/celery-interop.md, "The seed scenario"), with a
stock Celery client.

POST /render/<song_id>   sends audio.render and answers 202 with Location: /status/<task_id>
GET  /status/<task_id>   202 with {state, progress} while it runs, 200 with the result when done,
                         500 on failure; from whichever web process gets the request: the state
                         comes from taskd's results stream (`taskctl result`), not from the
                         process that sent the task.
Settings (environment): TASKD_BROKER_URL, RENDER_API_URL (the slow API), TASKCTL (path),
RENDER_QUEUE (default "celery").
"""
import json
import os
import subprocess
import time

from celery import Celery
from flask import Flask, jsonify, url_for

BROKER = os.environ["TASKD_BROKER_URL"].split(",")[0]
celery = Celery("web", broker=BROKER)
celery.conf.task_default_queue = os.environ.get("RENDER_QUEUE", "celery")
app = Flask(__name__)


def uuid7():
    """A time-ordered id (UUIDv7): lookups read the results stream from the id's own time
    instead of from the start of its retention."""
    ms = int(time.time() * 1000)
    rnd = int.from_bytes(os.urandom(10), "big")
    v = (ms << 80) | (0x7 << 76) | ((rnd >> 68) & 0xFFF) << 64 | (0b10 << 62) | (rnd & ((1 << 62) - 1))
    h = f"{v:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@app.get("/healthz")
def healthz():
    return "ok"


@app.post("/render/<song_id>")
def render(song_id):
    r = celery.send_task("audio.render", (song_id, os.environ["RENDER_API_URL"]),
                         {"steps": int(os.environ.get("RENDER_STEPS", "4"))}, task_id=uuid7())
    resp = jsonify(task_id=r.id, state="PENDING")
    resp.status_code = 202
    resp.headers["Location"] = url_for("status", task_id=r.id)
    return resp


@app.get("/status/<task_id>")
def status(task_id):
    out = subprocess.run([os.environ.get("TASKCTL", "taskctl"), "--broker", BROKER, "--json",
                          "result", task_id], capture_output=True, text=True, timeout=30)
    if out.returncode not in (0, 3):
        return jsonify(error=out.stderr.strip()), 502
    doc = json.loads(out.stdout)
    state, result = doc["state"], doc["result"]
    if state == "SUCCESS":
        return jsonify(task_id=task_id, state=state, result=result), 200
    if state in ("FAILURE", "REVOKED"):
        return jsonify(task_id=task_id, state=state, error=result), 500
    return jsonify(task_id=task_id, state=state, progress=result), 202


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
