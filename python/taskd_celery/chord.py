"""The chord barrier as taskd counts it (taskd/chord.c, docs/architecture.md "the chord
barrier"), for chord members that a Python worker runs, so that taskd workers and Python
workers count the same chord in the same broker queues, with no result database:

  1. append a part {"i", "id", "status", "result"} to the durable queue taskd.chord.<group>
     (x-expires = the results retention) and commit it (the channel is in tx mode);
  2. read the queue's ready count (passive declare, ordered after the commit on the channel);
  3. at the chord's size, take the lock taskd.chord.<group>.lock (an exclusive queue: another
     connection gets 405 and leaves the work to the holder);
  4. the holder gets every part, publishes the callback with the results in header order (or
     fails it with ChordError when a member failed), acks the parts in the same transaction,
     commits, then deletes both queues. Duplicate parts (a member that ran twice) are acked
     away and the distinct ones requeued when fewer than the size are distinct.
"""
import json
import logging

from celery import maybe_signature
from celery.exceptions import ChordError
from kombu import Connection, Producer

log = logging.getLogger(__name__)


def _code(exc):
    return getattr(exc, "code", None) or getattr(exc, "reply_code", None)


class Barrier:
    def __init__(self, backend, url, max_age_s):
        self.backend, self.url, self.max_age_s = backend, url, max_age_s

    def part_done(self, request, state, result):
        """Count a member that ended (`result` encoded as its state record holds it)."""
        chord = request.chord or {}
        size = chord.get("chord_size")
        group, index = request.group, request.group_index
        if not group or index is None or not isinstance(size, int) or not 0 <= index < size:
            log.warning("chord_unsupported task_id=%s reason=\"chord member without group, "
                        "group_index or chord_size\"", request.id)
            return
        queue = f"taskd.chord.{group}"
        with Connection(self.url) as conn:
            ch = conn.channel()
            ch.tx_select()
            ch.queue_declare(queue, durable=True, auto_delete=False,
                             arguments={"x-expires": int(self.max_age_s * 1000)})
            part = {"i": index, "id": request.id, "status": state, "result": result}
            ch.basic_publish(ch.prepare_message(json.dumps(part),
                                                content_type="application/json",
                                                content_encoding="utf-8",
                                                properties={"delivery_mode": 2}),
                             exchange="", routing_key=queue)
            ch.tx_commit()
            if ch.queue_declare(queue, passive=True).message_count < size:
                return
            try:
                ch.queue_declare(f"{queue}.lock", durable=False, exclusive=True, auto_delete=True)
            except Exception as exc:
                if _code(exc) != 405:
                    raise
                log.debug("chord_lock_busy group=%s", group)
                return  # the holder completes the chord
            fired = self._collect(conn, ch, queue, size, chord)
            for _ in range(3):
                if fired or ch.queue_declare(queue, passive=True).message_count < size:
                    break
                fired = self._collect(conn, ch, queue, size, chord)
            if fired:
                ch.queue_delete(queue)
            ch.queue_delete(f"{queue}.lock")

    def _collect(self, conn, ch, queue, size, chord):
        parts, keep, dup, last = [None] * size, [], [], None
        while True:
            m = ch.basic_get(queue, no_ack=False)
            if m is None:
                break
            last = m.delivery_tag
            try:
                part = json.loads(m.body)
                i = part["i"] if isinstance(part, dict) and isinstance(part.get("i"), int) else -1
            except ValueError:
                i = -1
            if 0 <= i < size and parts[i] is None:
                parts[i] = part
                keep.append(m.delivery_tag)
            else:
                dup.append(m.delivery_tag)
        if any(p is None for p in parts):
            for tag in dup:
                ch.basic_ack(tag)
            for tag in keep:
                ch.basic_reject(tag, requeue=True)
            ch.tx_commit()
            log.info("chord_duplicates_dropped queue=%s distinct=%d size=%d duplicates=%d",
                     queue, len(keep), size, len(dup))
            return False
        self._fire(conn, ch, parts, chord)
        ch.basic_ack(last, multiple=True)
        ch.tx_commit()
        return True

    def _fire(self, conn, ch, parts, chord):
        app = self.backend.app
        callback = maybe_signature(dict(chord), app=app)
        failed = next((p for p in parts if p.get("status") != "SUCCESS"), None)
        if failed is None:
            # On the transaction's channel: the callback is sent with the parts' acks or not.
            callback.apply_async(([p.get("result") for p in parts],),
                                 producer=Producer(ch), connection=conn)
            log.info("chord_done size=%d outcome=callback", len(parts))
            return
        exc = self.backend.exception_to_python(failed.get("result"))
        self.backend.chord_error_from_stack(
            callback, ChordError(f"Dependency {failed.get('id')} raised {exc!r}"))
        log.info("chord_done size=%d outcome=ChordError", len(parts))
