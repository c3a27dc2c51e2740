"""Appending state records to the results streams, as taskd writes them (DESIGN 5,
libtask/src/stream.h and codec_result.c): a JSON array of records {task_id, status, result,
traceback, children[, date_done][, hostname]} published persistent to the default exchange
with the stream's name as routing key, into stream taskd.results.<n>, n the top 6 bits of the
32-bit FNV-1a hash of the id's bytes. libtask has no public call for appending a record, so the
few lines of the format live here too; tests/celery/test_backend.py checks that libtask reads
what this writes and the other way round.

Writes go over a connection of their own in confirm mode: a worker's state is settled only once
the broker has it, as taskd does before its ack.
"""
import datetime
import json
import os
import threading

from kombu import Connection

PARTITION_BITS = 6
PREFIX = "taskd.results."
SEGMENT_BYTES = 1000000


def partition(task_id):
    h = 2166136261
    for b in task_id.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h >> (32 - PARTITION_BITS)


def stream_name(task_id):
    return f"{PREFIX}{partition(task_id)}"


def record(task_id, status, result, traceback=None, children=None, final=False, hostname=None):
    """One record, keys in taskd's order; date_done only on a final state, as taskd."""
    rec = {"task_id": task_id, "status": status, "result": result, "traceback": traceback,
           "children": children or []}
    if final:
        rec["date_done"] = datetime.datetime.utcnow().isoformat(timespec="microseconds")
    if hostname:
        rec["hostname"] = hostname
    return rec


class Writer:
    """A confirm-mode connection per process and thread that appends records. A forked child
    (Celery's prefork pool, a pre-forking web server) makes its own: its parent's socket is not
    its to use, nor to close."""

    def __init__(self, url, max_age_s):
        self.url, self.max_age_s = url, max_age_s
        self.local = threading.local()

    def _channel(self):
        loc = self.local
        if getattr(loc, "conn", None) is None or loc.pid != os.getpid():
            loc.conn = Connection(self.url, transport_options={"confirm_publish": True})
            loc.declared, loc.pid = set(), os.getpid()
        return loc.conn.default_channel

    def _declare(self, ch, name):
        """Make sure the stream exists, so the record is not dropped unrouted. One declared
        before with other arguments (another retention) is used as it is."""
        if name in self.local.declared:
            return ch
        args = {"x-queue-type": "stream", "x-max-age": f"{int(self.max_age_s)}s",
                "x-stream-max-segment-size-bytes": SEGMENT_BYTES}
        try:
            ch.queue_declare(name, durable=True, auto_delete=False, arguments=args)
        except Exception as exc:  # 406: exists with other arguments; the channel is closed
            if getattr(exc, "code", None) != 406:
                raise
            self.local.conn.close()
            self.local.conn = None
            ch = self._channel()
        self.local.declared.add(name)
        return ch

    def append(self, rec):
        name = stream_name(rec["task_id"])
        try:
            self._publish(name, rec)
        except Exception:
            self.reset()  # a broken connection: one more try on a new one
            self._publish(name, rec)

    def _publish(self, name, rec):
        ch = self._declare(self._channel(), name)
        msg = ch.prepare_message(json.dumps([rec]), content_type="application/json",
                                 content_encoding="utf-8", properties={"delivery_mode": 2})
        ch.basic_publish(msg, exchange="", routing_key=name)

    def reset(self):
        conn = getattr(self.local, "conn", None)
        self.local.conn = None
        if conn is not None and self.local.pid == os.getpid():
            try:
                conn.close()
            except Exception:
                pass
