"""libtask through ctypes: task_lookup() reads the results streams, so Python and C share one
reader of the stream format (windows back from now for ids with no time in them, the resume
points of ids polled again, the marker that ends a read).

One task_client per process and thread: a client is not thread-safe, and a forked child must
not use its parent's connection (Celery's prefork pool forks after the backend is made).
"""
import ctypes
import ctypes.util
import json
import os
import threading

FINAL = ("SUCCESS", "FAILURE", "REVOKED")


class LibtaskError(Exception):
    """A libtask call failed; the message is libtask's (it never holds a password)."""


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * 256)]


def _load(path, names):
    for name in ([path] if path else []) + names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise LibtaskError(f"cannot load {' or '.join(([path] if path else []) + names)} "
                       "(install libtask0, or set TASKD_LIBTASK to libtask.so.0's path)")


class Libtask:
    """The few libtask calls the backend makes, with their C types declared."""

    def __init__(self, path=None):
        lib = _load(path or os.environ.get("TASKD_LIBTASK"), ["libtask.so.0"])
        jc = _load(None, [ctypes.util.find_library("json-c") or "libjson-c.so.5",
                          "libjson-c.so.5"])
        p, e = ctypes.c_void_p, ctypes.POINTER(_Error)
        lib.task_config_new.restype = p
        lib.task_config_free.argtypes = [p]
        lib.task_config_set.argtypes = [p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, e]
        lib.task_client_new.argtypes = [p, e]
        lib.task_client_new.restype = p
        lib.task_client_free.argtypes = [p]
        lib.task_client_errmsg.argtypes = [p]
        lib.task_client_errmsg.restype = ctypes.c_char_p
        lib.task_lookup.argtypes = [p, ctypes.c_char_p, ctypes.c_double,
                                    ctypes.POINTER(ctypes.c_int), ctypes.POINTER(p)]
        lib.task_state_name.argtypes = [ctypes.c_int]
        lib.task_state_name.restype = ctypes.c_char_p
        lib.task_strerror.argtypes = [ctypes.c_int]
        lib.task_strerror.restype = ctypes.c_char_p
        jc.json_object_to_json_string_ext.argtypes = [p, ctypes.c_int]
        jc.json_object_to_json_string_ext.restype = ctypes.c_char_p
        jc.json_object_put.argtypes = [p]
        self.lib, self.jc = lib, jc

    def client(self, broker_urls, timeout_s):
        """A new task_client for `broker_urls` (a comma list); free it with close()."""
        cfg = self.lib.task_config_new()
        if not cfg:
            raise LibtaskError("task_config_new: out of memory")
        err = _Error()
        try:
            for key, val in (("broker.urls", broker_urls), ("client.send_timeout", str(timeout_s))):
                if self.lib.task_config_set(cfg, key.encode(), val.encode(), b"celery backend",
                                            ctypes.byref(err)) != 0:
                    raise LibtaskError(err.msg.decode(errors="replace"))
            c = self.lib.task_client_new(cfg, ctypes.byref(err))
            if not c:
                raise LibtaskError(err.msg.decode(errors="replace") or "task_client_new failed")
            return c
        finally:
            self.lib.task_config_free(cfg)

    def close(self, c):
        self.lib.task_client_free(c)

    def lookup(self, c, task_id):
        """(state name, result) of `task_id` from its results stream; ("PENDING", None) when
        no record of it is there."""
        st = ctypes.c_int(0)
        res = ctypes.c_void_p()
        rc = self.lib.task_lookup(c, task_id.encode(), 0.0, ctypes.byref(st), ctypes.byref(res))
        if rc != 0:
            detail = self.lib.task_client_errmsg(c) or self.lib.task_strerror(rc)
            raise LibtaskError(f"task_lookup {task_id}: {detail.decode(errors='replace')}")
        try:
            text = self.jc.json_object_to_json_string_ext(res, 0) if res.value else None
            result = json.loads(text) if text is not None else None
        finally:
            if res.value:
                self.jc.json_object_put(res)
        return self.lib.task_state_name(st.value).decode(), result


class _Owned:
    """One task_client, freed (its connection closed) when nothing refers to it any more: when
    the thread that made it ends, its thread-local slot goes and with it this object. Only the
    process that made it frees it: a forked child must not close its parent's connection."""

    def __init__(self, lib, c):
        self.lib, self.c, self.pid = lib, c, os.getpid()

    def close(self):
        c, self.c = self.c, None
        if c is not None and self.pid == os.getpid():
            self.lib.close(c)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to tell
            pass


class Clients(threading.local):
    """A task_client per thread, made again in a forked child (its parent's is not its own),
    and closed when its thread ends (a thread per request must not leave a connection each)."""

    def __init__(self, lib, urls, timeout_s):
        self.lib, self.urls, self.timeout_s = lib, urls, timeout_s
        self.owned = None

    def get(self):
        if self.owned is None or self.owned.c is None or self.owned.pid != os.getpid():
            # A parent's client is left alone in the child (_Owned checks the pid).
            self.owned = _Owned(self.lib, self.lib.client(self.urls, self.timeout_s))
        return self.owned.c

    def reset(self):
        """Drop this thread's client after a failure: the next call connects again."""
        if self.owned is not None:
            self.owned.close()
        self.owned = None
