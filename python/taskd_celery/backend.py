"""ResultsBackend: a Celery 5.2 result backend over taskd's results streams.

    app.conf.result_backend = "taskd_celery.backend:ResultsBackend"

Reads go through libtask's task_lookup() (ctypes: libtask.py); writes append records in taskd's
format (records.py); chord members run by Python workers are counted in taskd's broker-side
barrier (chord.py). The broker is the app's (broker_url). Settings (app.conf):
  taskd_results_max_age  retention of the streams the backend declares (s; default 86400)
  taskd_lookup_timeout   how long a lookup may wait for the broker (s; default 30)
  taskd_record_sent      append a PENDING record when a task is sent (default True): a lookup of
                         a uuid4 id then finds it in the newest window while it waits in a queue,
                         instead of reading the whole retention to answer PENDING
"""
from celery import states
from celery.backends.base import BaseBackend

from . import libtask
from .chord import Barrier
from .records import Writer, record


def _taskd_urls(app):
    """The app's broker URLs as libtask takes them: a comma list of amqp:// URLs."""
    conf = app.conf.broker_url or "amqp://guest:guest@localhost:5672//"
    urls = conf if isinstance(conf, (list, tuple)) else str(conf).split(";")
    out = []
    for u in urls:
        u = u.strip()
        if u.startswith("pyamqp://"):
            u = "amqp://" + u[len("pyamqp://"):]
        if u.endswith("//"):  # kombu's spelling of vhost "/"
            u = u[:-1] + "%2F"
        out.append(u)
    return ",".join(out)


class ResultsBackend(BaseBackend):
    """States live in the results streams; there is nothing to delete or expire by hand (the
    streams' retention does it) and no reply queue to consume."""

    supports_native_join = False
    supports_autoexpire = True
    persistent = True

    def __init__(self, app, url=None, **kwargs):
        super().__init__(app, **kwargs)
        self.url = url
        self.max_age_s = float(app.conf.get("taskd_results_max_age") or 86400)
        self.timeout_s = float(app.conf.get("taskd_lookup_timeout") or 30)
        sent = app.conf.get("taskd_record_sent")
        self.record_sent = True if sent is None else bool(sent)
        self._lib = None
        self._clients = None
        broker = app.connection_for_write().as_uri(include_password=True)
        self._writer = Writer(broker, self.max_age_s)
        self._barrier = Barrier(self, broker, self.max_age_s)

    def _client(self):
        if self._clients is None:
            self._lib = libtask.Libtask()
            self._clients = libtask.Clients(self._lib, _taskd_urls(self.app), self.timeout_s)
        return self._clients.get()

    # --- reads ---------------------------------------------------------------------------
    def _get_task_meta_for(self, task_id):
        try:
            c = self._client()  # first: it loads the library (self._lib) on first use
            state, result = self._lib.lookup(c, task_id)
        except libtask.LibtaskError:
            # A connection that broke since the last lookup (a broker restart): once more on
            # a new one before a status page gets an error.
            self._clients.reset()
            try:
                c = self._client()
                state, result = self._lib.lookup(c, task_id)
            except libtask.LibtaskError:
                self._clients.reset()
                raise
        return {"task_id": task_id, "status": state, "result": result, "traceback": None,
                "children": [], "date_done": None}

    # --- writes (Python workers) ----------------------------------------------------------
    def _store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        children = self.current_task_children(request)
        hostname = getattr(request, "hostname", None) if request is not None else None
        self._writer.append(record(task_id, state, result, traceback, children,
                                   final=state in states.READY_STATES, hostname=hostname))
        return result

    def on_task_call(self, producer, task_id):
        if self.record_sent:
            self._writer.append(record(task_id, states.PENDING, None))
        return {}

    def _forget(self, task_id):
        raise NotImplementedError("results streams are append-only: a result expires with "
                                  "the stream's retention (results.max_age)")

    def _save_group(self, group_id, result):
        return result  # a group's members are looked up one by one (GroupResult.get())

    def _restore_group(self, group_id):
        return None

    def _delete_group(self, group_id):
        pass

    # --- chords ---------------------------------------------------------------------------
    def apply_chord(self, header_result_args, body, **kwargs):
        """The barrier is counted in the broker by whoever runs the members (taskd or a
        Python worker with this backend): nothing is sent here. The members carry the callback
        (Celery puts the same body in each); its chord_size tells the barrier when the last
        member ended, as libtask's task_send_chord() writes it."""
        self.ensure_chords_allowed()
        _, results = header_result_args
        body["chord_size"] = len(results)

    def on_chord_part_return(self, request, state, result, **kwargs):
        self._barrier.part_done(request, state, self.encode_result(result, state)
                                if state in states.EXCEPTION_STATES else result)

    def __reduce__(self, args=(), kwargs=None):
        return super().__reduce__(args, dict(kwargs or {}, url=self.url))
